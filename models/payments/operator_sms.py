"""Read operators' forwarded confirmation texts with the patterns of `operators/operator_sms.toml`."""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from models.schemes.amounts import AmountError

DEFAULT_PATTERNS_FILE = Path(__file__).resolve().parents[2] / "operators" / "operator_sms.toml"


class PatternFileError(ValueError):
    """The operator patterns file is invalid; the message names the entry."""


@dataclass(frozen=True)
class Operator:
    """One operator's allowed senders, default currency and text patterns."""

    code: str
    senders: frozenset[str]
    currency: str
    patterns: tuple[re.Pattern[str], ...]
    ignore: tuple[re.Pattern[str], ...]
    timezone: str = "UTC"
    datetime_format: str = ""


@dataclass(frozen=True)
class OperatorPatterns:
    """Every operator's patterns and the currency words operators write."""

    operators: tuple[Operator, ...]
    currency_words: dict[str, str]


@dataclass(frozen=True)
class ParsedText:
    """What a confirmation text says: the operator's transaction, amount as written, payer."""

    operator: str
    txn_id: str
    amount_text: str
    currency: str
    payer: str | None
    payer_name: str | None
    reference: str | None
    paid_at: datetime | None


@dataclass(frozen=True)
class TextVerdict:
    """The outcome of reading one forwarded text: a payment, or why it is kept for review."""

    parsed: ParsedText | None
    reason: str
    not_a_payment: bool = False


def normalise_text(text: str) -> str:
    """Return the text without accents and with whitespace collapsed (operators drop accents anyway)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", stripped).strip()


def _sender_key(sender: str) -> str:
    return re.sub(r"[\s\-_]", "", sender).casefold()


def load_patterns(path: str | Path = DEFAULT_PATTERNS_FILE) -> OperatorPatterns:
    """Return the operator patterns of a TOML file, refusing a bad regular expression or missing field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PatternFileError(f"{path.name}: {exc}") from exc
    words = {str(k).upper(): str(v) for k, v in data.get("currency_words", {}).items()}
    operators = []
    for code, raw in data.get("operators", {}).items():
        operators.append(_operator(path.name, code, raw))
    if not operators:
        raise PatternFileError(f"{path.name}: no [operators.*] table")
    return OperatorPatterns(tuple(operators), words)


def _operator(filename: str, code: str, raw: dict[str, Any]) -> Operator:
    where = f"{filename}: operators.{code}"
    senders = raw.get("senders")
    if not senders or not all(isinstance(s, str) for s in senders):
        raise PatternFileError(f"{where}.senders: must list sender names")
    if not isinstance(raw.get("currency"), str):
        raise PatternFileError(f"{where}.currency: required")

    def compile_all(name: str) -> tuple[re.Pattern[str], ...]:
        compiled = []
        for index, source in enumerate(raw.get(name, [])):
            try:
                compiled.append(re.compile(source, re.IGNORECASE))
            except re.error as exc:
                raise PatternFileError(f"{where}.{name}[{index}]: {exc}") from exc
        return tuple(compiled)

    patterns = compile_all("patterns")
    for index, pattern in enumerate(patterns):
        missing = {"txn_id", "amount"} - set(pattern.groupindex)
        if missing:
            raise PatternFileError(f"{where}.patterns[{index}]: needs the groups {', '.join(sorted(missing))}")
    return Operator(
        code=code,
        senders=frozenset(_sender_key(s) for s in senders),
        currency=raw["currency"],
        patterns=patterns,
        ignore=compile_all("ignore"),
        timezone=raw.get("timezone", "UTC"),
        datetime_format=raw.get("datetime_format", ""),
    )


@functools.cache
def default_patterns() -> OperatorPatterns:
    """Return the shipped operator patterns (read once per process)."""
    return load_patterns(DEFAULT_PATTERNS_FILE)


def read_text(
    patterns: OperatorPatterns, sender: str, text: str, allowed_senders: list[str] | None = None
) -> TextVerdict:
    """Return the payment a forwarded text reports, or the reason it is kept for review.

    A text counts only when its sender is one of the matching operator's senders (and, when the device lists the
    senders it forwards, one of those).
    """
    clean = normalise_text(text)
    key = _sender_key(sender)
    for operator in patterns.operators:
        for pattern in operator.patterns:
            match = pattern.search(clean)
            if match is None:
                continue
            if key not in operator.senders:
                return TextVerdict(None, f"reads as {operator.code} but sender {sender!r} is not one of its senders")
            if allowed_senders and key not in {_sender_key(s) for s in allowed_senders}:
                return TextVerdict(None, f"sender {sender!r} is not registered on this device")
            try:
                return TextVerdict(_parsed(patterns, operator, match), "parsed")
            except (AmountError, ValueError) as exc:
                return TextVerdict(None, f"reads as {operator.code} but {exc}")
    for operator in patterns.operators:
        if key in operator.senders and any(p.search(clean) for p in operator.ignore):
            return TextVerdict(None, f"not a payment ({operator.code} notice)", not_a_payment=True)
    return TextVerdict(None, "no operator pattern matched")


def _parsed(patterns: OperatorPatterns, operator: Operator, match: re.Match[str]) -> ParsedText:
    groups = {k: (v.strip() if isinstance(v, str) else v) for k, v in match.groupdict().items()}
    currency = operator.currency
    if groups.get("currency"):
        word = groups["currency"].upper()
        if word not in patterns.currency_words:
            raise ValueError(f"unknown currency word {groups['currency']!r}")
        currency = patterns.currency_words[word]
    payer = re.sub(r"[\s\-]", "", groups["payer"]) if groups.get("payer") else None
    paid_at = None
    if groups.get("date") and groups.get("time") and operator.datetime_format:
        local = datetime.strptime(f"{groups['date']} {groups['time'].upper()}", operator.datetime_format)
        paid_at = local.replace(tzinfo=ZoneInfo(operator.timezone)).astimezone(UTC).replace(tzinfo=None)
    return ParsedText(
        operator=operator.code,
        txn_id=groups["txn_id"].upper(),
        amount_text=groups["amount"].replace(" ", ""),
        currency=currency,
        payer=payer,
        payer_name=groups.get("payer_name") or None,
        reference=groups.get("reference") or None,
        paid_at=paid_at,
    )
