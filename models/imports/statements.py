"""Operators' statements: read an export with its provider's column mapping, store it, report the breaks.

Statements are the ground truth (docs/operations.md, "Statement import"). Importing one:
- reads the file with a column mapping kept as data (`operators/statement_formats.toml`); a bad file, header or cell
  raises `StatementError` naming the line, before anything is written;
- is idempotent: the same bytes for the same provider (unique sha256) answer "already imported" and write nothing;
- stores the import and every line (debits, fees and failed lines too, with Core inserts);
- brings each credit line to payment intake as a `statement` report: a known, confirmed, consistent payment gets its
  evidence row in bulk; anything else goes through `record_report` (creates the payments no notification brought,
  confirms PROVISIONAL ones, turns different amounts into CONFLICT);
- records the breaks (`BreakKind`) and the credits per day and currency, statement vs system, as they stood.
Days are UTC days of `paid_at`. The caller commits, then enqueues `reconcile` for `ImportResult.needs_reconcile`.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import itertools
import json
import logging
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from logs import mask_phone
from models.base import EvidenceSource, utcnow
from models.db import begin_write
from models.imports.member_rows import Progress  # stage, done, total (None: not known yet)
from models.payments.intake import (
    IntakeOutcome,
    Report,
    clean_account,
    clean_phone,
    clean_reference,
    differences,
    fields_hash,
    record_report,
    sha256_text,
    single_mutuelle,
)
from models.payments.operator_sms import normalise_text
from models.payments.payment import Payment, PaymentEvidence, ReconciliationEvent
from models.payments.statement import BreakKind, LineKind, StatementBreak, StatementImport, StatementLine
from models.schemes.amounts import AmountError, currency_exponent, parse_amount
from models.schemes.mutuelle import ReportedAccount, mutuelles_of_account

log = logging.getLogger(__name__)

DEFAULT_FORMATS_FILE = Path(__file__).resolve().parents[2] / "operators" / "statement_formats.toml"
HEADER_SEARCH_LINES = 20  # exports may put a title or the account name above the header
MAX_REPORTED_ERRORS = 20
PROGRESS_EVERY = 10_000
WRITE_BATCH = 5_000  # lines read, stored and brought through intake at a time in pass 2
_READ_CHUNK = 1 << 20
# What an import writes (payments through intake, with their evidence and events): analysed once committed.
MODELS_WRITTEN = (StatementImport, StatementLine, StatementBreak, Payment, PaymentEvidence, ReconciliationEvent)
_IN_CHUNK = 2_000  # ids per IN (…) query: well under SQLite's and PostgreSQL's parameter limits
_COLUMN_KEYS = (
    "txn_id",
    "date",
    "time",
    "amount",
    "paid_in",
    "withdrawn",
    "currency",
    "payer",
    "reference",
    "account",
)
_FORMAT_KEYS = frozenset(
    {
        *_COLUMN_KEYS,
        "providers",
        "delimiter",
        "date_format",
        "timezone",
        "fixed_currency",
        "payer_pattern",
        "reference_pattern",
        "type",
        "credit_types",
        "status",
        "ok_statuses",
    }
)
_ZERO = re.compile(r"^[0.,' ]*$")

Source = bytes | BinaryIO


class StatementError(ValueError):
    """A statement that cannot be imported; the message names the line. Nothing is written."""


class FormatFileError(ValueError):
    """The statement formats file is invalid; the message names the format and key."""


@functools.lru_cache(maxsize=4096)  # headers, types and statuses repeat on every line
def header_key(text: str) -> str:
    """Return a header or type cell as compared: accents removed, whitespace collapsed, case folded."""
    return normalise_text(text).casefold()


@dataclass(frozen=True)
class StatementFormat:
    """One export layout: which providers use it and which column holds what."""

    name: str
    providers: frozenset[str]
    txn_id: str
    date: str
    date_format: str = "iso"
    timezone: str = "UTC"
    time: str | None = None
    amount: str | None = None
    paid_in: str | None = None
    withdrawn: str | None = None
    currency: str | None = None
    fixed_currency: str | None = None
    payer: str | None = None
    payer_pattern: re.Pattern[str] | None = None
    reference: str | None = None
    reference_pattern: re.Pattern[str] | None = None
    account: str | None = None  # the account each line was paid to (a union's statement of several accounts)
    type: str | None = None
    credit_types: frozenset[str] = frozenset()
    status: str | None = None
    ok_statuses: frozenset[str] = frozenset()
    delimiter: str = ","

    def columns(self) -> list[str]:
        """Return the headers this format reads, as written in the formats file."""
        names = [getattr(self, key) for key in _COLUMN_KEYS] + [self.type, self.status]
        return [name for name in names if name]


def _format_from(name: str, entry: Any) -> StatementFormat:
    where = f"formats.{name}"
    if not isinstance(entry, dict):
        raise FormatFileError(f"{where} must be a table")
    unknown = sorted(set(entry) - _FORMAT_KEYS)
    if unknown:
        raise FormatFileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in ("providers", "txn_id", "date"):
        if not entry.get(key):
            raise FormatFileError(f"{where}: `{key}` is required")
    if bool(entry.get("amount")) == bool(entry.get("paid_in")):
        raise FormatFileError(f"{where}: give either `amount` or `paid_in` (+ `withdrawn`)")
    if bool(entry.get("currency")) == bool(entry.get("fixed_currency")):
        raise FormatFileError(f"{where}: give either `currency` or `fixed_currency`")
    if entry.get("type") and not entry.get("credit_types"):
        raise FormatFileError(f"{where}: `type` needs `credit_types`")
    if entry.get("status") and not entry.get("ok_statuses"):
        raise FormatFileError(f"{where}: `status` needs `ok_statuses`")
    try:
        ZoneInfo(str(entry.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FormatFileError(f"{where}: unknown timezone {entry.get('timezone')!r}") from exc
    patterns: dict[str, re.Pattern[str] | None] = {}
    for key in ("payer_pattern", "reference_pattern"):
        source = entry.get(key)
        if not source:
            patterns[key] = None
            continue
        try:
            pattern = re.compile(str(source), re.IGNORECASE)
        except re.error as exc:
            raise FormatFileError(f"{where}.{key}: {exc}") from exc
        if "value" not in pattern.groupindex:
            raise FormatFileError(f"{where}.{key}: needs a group named `value`")
        patterns[key] = pattern
    delimiter = str(entry.get("delimiter", ","))
    if len(delimiter) != 1:
        raise FormatFileError(f"{where}.delimiter must be one character")
    return StatementFormat(
        name=name,
        providers=frozenset(str(p).strip().lower() for p in entry["providers"]),
        txn_id=str(entry["txn_id"]),
        date=str(entry["date"]),
        date_format=str(entry.get("date_format", "iso")),
        timezone=str(entry.get("timezone", "UTC")),
        time=entry.get("time") or None,
        amount=entry.get("amount") or None,
        paid_in=entry.get("paid_in") or None,
        withdrawn=entry.get("withdrawn") or None,
        currency=entry.get("currency") or None,
        fixed_currency=str(entry["fixed_currency"]).upper() if entry.get("fixed_currency") else None,
        payer=entry.get("payer") or None,
        payer_pattern=patterns["payer_pattern"],
        reference=entry.get("reference") or None,
        reference_pattern=patterns["reference_pattern"],
        account=entry.get("account") or None,
        type=entry.get("type") or None,
        credit_types=frozenset(header_key(str(t)) for t in entry.get("credit_types", [])),
        status=entry.get("status") or None,
        ok_statuses=frozenset(header_key(str(s)) for s in entry.get("ok_statuses", [])),
        delimiter=delimiter,
    )


@functools.lru_cache(maxsize=8)
def _load_formats_cached(path: str) -> dict[str, StatementFormat]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FormatFileError(f"{path}: {exc}") from exc
    entries = data.get("formats")
    if not isinstance(entries, dict) or not entries:
        raise FormatFileError(f"{path}: no [formats.NAME] table")
    return {name: _format_from(name, entry) for name, entry in entries.items()}


def load_formats(path: str | Path = DEFAULT_FORMATS_FILE) -> dict[str, StatementFormat]:
    """Return the statement formats of a TOML file by name, refusing a missing key or bad pattern."""
    return _load_formats_cached(str(path))


def formats_for(provider: str, formats: Mapping[str, StatementFormat]) -> list[StatementFormat]:
    """Return the formats a provider's statements may come in, provider-specific ones first."""
    mine = [f for f in formats.values() if provider in f.providers]
    return sorted(mine, key=lambda f: len(f.providers))


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class StatementLineData:
    """One statement line as read: amount in minor units (positive), kind credit / debit / failed / a type."""

    line_no: int
    provider_txn_id: str
    amount: int
    currency: str
    paid_at: datetime
    payer_phone: str | None
    reference: str | None
    kind: str
    raw: str
    account: str | None = None

    @property
    def is_credit(self) -> bool:
        """Return whether this line is money in, i.e. a payment."""
        return self.kind == LineKind.CREDIT


def _binary(data: Source) -> BinaryIO:
    """Return a statement's bytes as a seekable binary stream (bytes are wrapped, a stream is used as it is)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return io.BytesIO(data)
    if not data.seekable():
        raise StatementError("line 1: the statement cannot be read twice (not a seekable file)")
    return data


def _digest(handle: BinaryIO) -> str:
    """Return the sha256 of the whole stream, read in chunks."""
    handle.seek(0)
    digest = hashlib.sha256()
    while chunk := handle.read(_READ_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _text_lines(handle: BinaryIO) -> Iterator[str]:
    """Yield the stream's lines from the start, decoded (a UTF-8 byte order mark dropped), each with its newline.

    A line that is not UTF-8 raises StatementError naming it: no UTF-8 sequence holds a newline byte, so decoding
    line by line finds what decoding the whole file would.
    """
    handle.seek(0)
    for line_no, raw in enumerate(handle, start=1):
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StatementError(f"line {line_no}: not UTF-8 text (export the statement as CSV UTF-8)") from exc


def _find_header(head: list[str], fmt: StatementFormat) -> tuple[int, list[str], list[str]] | None:
    """Return (line number, header cells, missing columns) of the best header candidate in the first lines."""
    best: tuple[int, list[str], list[str]] | None = None
    wanted = {header_key(c): c for c in fmt.columns()}
    for index, line in enumerate((line.rstrip("\n").rstrip("\r") for line in head), start=1):
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line], delimiter=fmt.delimiter))
        except csv.Error:
            continue
        present = {header_key(c) for c in cells}
        missing = [name for key, name in wanted.items() if key not in present]
        if not missing:
            return index, cells, []
        if best is None or len(missing) < len(best[2]):
            best = (index, cells, missing)
    return best


def _choose_format(
    handle: BinaryIO, provider: str, candidates: list[StatementFormat]
) -> tuple[StatementFormat, int, list[str]]:
    head = list(itertools.islice(_text_lines(handle), HEADER_SEARCH_LINES))
    problems = []
    for fmt in candidates:
        found = _find_header(head, fmt)
        if found is not None and not found[2]:
            return fmt, found[0], found[1]
        missing = found[2] if found is not None else fmt.columns()
        problems.append(f"{fmt.name} (missing {', '.join(repr(m) for m in missing)})")
    blank = True
    for line in _text_lines(handle):  # to the end: a line that is not UTF-8 is named first, as ever
        blank = blank and not line.strip()
    if blank:
        raise StatementError("line 1: the file is empty")
    raise StatementError(f"line 1: no {provider} statement header found; tried {'; '.join(problems)}")


class _Reader:
    """Read the cells of one format's rows into `StatementLineData`."""

    def __init__(self, session: Session, fmt: StatementFormat, header: list[str]) -> None:
        self.session = session
        self.fmt = fmt
        self.header = header
        keys = [header_key(h) for h in header]
        self.index = {column: keys.index(header_key(column)) for column in fmt.columns()}
        self.zone = ZoneInfo(fmt.timezone)
        self.exponents: dict[str, int] = {}

    def cell(self, row: list[str], column: str | None) -> str:
        """Return a cell by the format's column name, stripped ("" when the format has no such column)."""
        if column is None:
            return ""
        return row[self.index[column]].strip()

    def exponent(self, currency: str) -> int:
        """Return the currency's minor-unit exponent (cached for the file)."""
        if currency not in self.exponents:
            self.exponents[currency] = currency_exponent(self.session, currency)
        return self.exponents[currency]

    def paid_at(self, row: list[str]) -> datetime:
        """Return the line's time in UTC (naive), read in the format's timezone when the cell has none."""
        text = self.cell(row, self.fmt.date)
        if self.fmt.time:
            text = f"{text} {self.cell(row, self.fmt.time)}".strip()
        if not text:
            raise ValueError(f"{self.fmt.date!r} is empty")
        try:
            if self.fmt.date_format == "iso":
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            else:
                parsed = datetime.strptime(text, self.fmt.date_format)
        except ValueError as exc:
            raise ValueError(f"{self.fmt.date!r}: {text!r} is not a date ({self.fmt.date_format})") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.zone)
        return parsed.astimezone(UTC).replace(tzinfo=None)

    def signed_amount(self, row: list[str], column: str, currency: str) -> int:
        """Return a cell's amount in minor units, negative for money out ("-700", "(700)")."""
        text = self.cell(row, column).replace("\u00a0", " ")
        negative = False
        if text.startswith("(") and text.endswith(")"):
            negative, text = True, text[1:-1].strip()
        if text[:1] in ("-", "+"):
            negative, text = text[0] == "-", text[1:].strip()
        if _ZERO.match(text):
            return 0
        if not currency:
            raise ValueError("no currency")
        try:
            value = parse_amount(text, self.exponent(currency))
        except AmountError as exc:
            raise ValueError(f"{column!r}: {exc}") from exc
        return -value if negative else value

    def pick(self, row: list[str], column: str | None, pattern: re.Pattern[str] | None) -> str | None:
        """Return a cell, or the `value` group of the format's pattern in it; None when empty or not found."""
        text = self.cell(row, column)
        if text and pattern is not None:
            found = pattern.search(text)
            text = found.group("value") if found else ""
        return text or None

    def line(self, line_no: int, row: list[str]) -> StatementLineData:
        """Return one row read as a statement line; ValueError says which cell is wrong."""
        fmt = self.fmt
        currency = (fmt.fixed_currency or self.cell(row, fmt.currency)).upper()
        if fmt.paid_in:
            paid_in = self.signed_amount(row, fmt.paid_in, currency)
            out = self.signed_amount(row, fmt.withdrawn, currency) if fmt.withdrawn else 0
            signed = paid_in if paid_in > 0 else -abs(out or paid_in)
        else:
            assert fmt.amount is not None
            signed = self.signed_amount(row, fmt.amount, currency)
        credit = signed > 0
        kind = LineKind.CREDIT.value if credit else LineKind.DEBIT.value
        if fmt.type:
            type_key = header_key(self.cell(row, fmt.type))
            if type_key not in fmt.credit_types:
                credit = False
                kind = type_key[:20] or LineKind.DEBIT.value
            elif not credit:
                kind = LineKind.DEBIT.value
        if fmt.status and header_key(self.cell(row, fmt.status)) not in fmt.ok_statuses:
            credit, kind = False, LineKind.FAILED.value
        txn_id = self.cell(row, fmt.txn_id)
        if credit and not txn_id:
            raise ValueError(f"{fmt.txn_id!r} is empty")
        if len(txn_id) > 80:
            raise ValueError(f"{fmt.txn_id!r} is longer than 80 characters")
        if len(currency) > 3 or (credit and len(currency) != 3):
            raise ValueError(f"currency {currency!r} is not an ISO code")
        payer = clean_phone(self.pick(row, fmt.payer, fmt.payer_pattern))
        reference = clean_reference(self.pick(row, fmt.reference, fmt.reference_pattern))
        return StatementLineData(
            line_no=line_no,
            provider_txn_id=txn_id,
            amount=abs(signed),
            currency=currency,
            paid_at=self.paid_at(row),
            payer_phone=payer[:32] if payer else None,
            reference=reference[:120] if reference else None,
            kind=kind,
            account=clean_account(self.pick(row, fmt.account, None)),
            raw=json.dumps(dict(zip(self.header, row, strict=False)), ensure_ascii=False),
        )


@dataclass
class _LayOut:
    """How a statement file is read: its format, where its header is, and the reader of its rows."""

    handle: BinaryIO
    format: StatementFormat
    header_line: int
    header: list[str]
    reader: _Reader


@dataclass
class _Checked:
    """What pass 1 keeps of a statement: counts, its period, and the credit lines that may repeat an earlier one.

    A credit's transaction id is kept as a hash in a set of ints, dropped once the pass is done; only the lines
    whose hash was seen before (duplicates, or the rare hash collision) keep their id, for pass 2 to settle.
    """

    lines: int = 0
    start: datetime | None = None
    end: datetime | None = None
    repeated: set[str] = field(default_factory=set)


def _lay_out(
    session: Session,
    handle: BinaryIO,
    provider: str,
    formats: Mapping[str, StatementFormat] | None,
    format_name: str | None,
) -> _LayOut:
    """Find the statement's format and header (the provider's formats tried in turn)."""
    formats = load_formats() if formats is None else formats
    if format_name:
        if format_name not in formats:
            raise StatementError(f"unknown statement format {format_name!r}; known: {', '.join(sorted(formats))}")
        candidates = [formats[format_name]]
    else:
        candidates = formats_for(provider, formats)
        if not candidates:
            known = sorted({p for f in formats.values() for p in f.providers})
            raise StatementError(f"no statement format for provider {provider!r}; known: {', '.join(known)}")
    fmt, header_line, header = _choose_format(handle, provider, candidates)
    return _LayOut(handle, fmt, header_line, header, _Reader(session, fmt, header))


def _rows(layout: _LayOut) -> Iterator[tuple[int, list[str] | str]]:
    """Yield (line number, cells) of each non-blank line after the header, or (line number, error) of a bad one."""
    header = layout.header
    rows = csv.reader(_text_lines(layout.handle), delimiter=layout.format.delimiter)
    try:
        for row in rows:
            line_no = rows.line_num
            if line_no <= layout.header_line or not any(cell.strip() for cell in row):
                continue
            if len(row) < len(header) or any(cell.strip() for cell in row[len(header) :]):
                yield line_no, f"line {line_no}: {len(row)} fields, the header has {len(header)}"
            else:
                yield line_no, row
    except csv.Error as exc:
        yield rows.line_num, f"line {rows.line_num}: {exc}"


def _note(errors: list[str], error: str) -> int:
    """Keep an error among the first MAX_REPORTED_ERRORS; return 1 when it is only counted."""
    if len(errors) < MAX_REPORTED_ERRORS:
        errors.append(error)
        return 0
    return 1


def _check(layout: _LayOut, progress: Progress) -> _Checked:
    """Pass 1: read every line, keeping compact keys; raise StatementError naming the first bad lines
    (MAX_REPORTED_ERRORS) and counting the others."""
    checked = _Checked()
    seen: set[int] = set()
    errors: list[str] = []
    more = 0  # bad lines past the first MAX_REPORTED_ERRORS: counted, not named
    for line_no, row in _rows(layout):
        if isinstance(row, str):
            more += _note(errors, row)
        else:
            try:
                line = layout.reader.line(line_no, row)
            except ValueError as exc:
                more += _note(errors, f"line {line_no}: {exc}")
            else:
                checked.lines += 1
                if checked.start is None or line.paid_at < checked.start:
                    checked.start = line.paid_at
                if checked.end is None or line.paid_at > checked.end:
                    checked.end = line.paid_at
                if line.is_credit:
                    key = hash(line.provider_txn_id)
                    if key in seen:
                        checked.repeated.add(line.provider_txn_id)
                    else:
                        seen.add(key)
                if checked.lines % PROGRESS_EVERY == 0:
                    progress("read", checked.lines, None)
    if more:
        errors.append(f"… and {more:,} more bad lines")
    if errors:
        raise StatementError("\n".join(errors))
    if not checked.lines:
        raise StatementError(f"line {layout.header_line + 1}: the statement has a header but no lines")
    progress("read", checked.lines, checked.lines)
    return checked


def _lines(layout: _LayOut) -> Iterator[list[StatementLineData]]:
    """Pass 2: yield the statement's lines again, in batches of WRITE_BATCH (pass 1 found them all good)."""
    batch: list[StatementLineData] = []
    for line_no, row in _rows(layout):
        if isinstance(row, str):
            raise StatementError(row)  # the file changed between the passes
        try:
            batch.append(layout.reader.line(line_no, row))
        except ValueError as exc:
            raise StatementError(f"line {line_no}: {exc}") from exc
        if len(batch) >= WRITE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class BreakRow:
    """One break as the report shows it: the line and/or payment it is about."""

    kind: BreakKind
    line_no: int | None
    provider_txn_id: str | None
    statement_amount: int | None
    system_amount: int | None
    currency: str | None
    payment_id: int | None
    payment_status: str | None
    detail: str | None
    resolved: bool


@dataclass(frozen=True)
class DayTotal:
    """Credits of one day and currency: the statement's and the system's (before the import)."""

    day: date
    currency: str
    statement_count: int
    statement_amount: int
    system_count: int
    system_amount: int

    @property
    def difference(self) -> int:
        """Return statement minus system."""
        return self.statement_amount - self.system_amount


@dataclass(frozen=True)
class StatementReport:
    """An imported statement and what it found: breaks and daily totals, for the CLI and the admin page."""

    import_id: int
    provider: str
    filename: str
    format: str
    imported_by: str
    imported_at: datetime
    period_start: date | None
    period_end: date | None
    line_count: int
    credit_count: int
    breaks: tuple[BreakRow, ...]
    totals: tuple[DayTotal, ...]

    def count(self, kind: BreakKind) -> int:
        """Return how many breaks of a kind the statement found."""
        return sum(1 for b in self.breaks if b.kind == kind)

    def of_kind(self, kind: BreakKind) -> list[BreakRow]:
        """Return the breaks of one kind."""
        return [b for b in self.breaks if b.kind == kind]


@dataclass(frozen=True)
class ImportResult:
    """What importing a file did; `needs_reconcile` lists payments to enqueue once the caller has committed."""

    report: StatementReport
    already_imported: bool
    needs_reconcile: tuple[int, ...]


def statement_report(session: Session, import_id: int) -> StatementReport:
    """Return the report of an imported statement; LookupError when there is none."""
    imported = session.get(StatementImport, import_id)
    if imported is None:
        raise LookupError(f"no statement import {import_id}")
    rows = session.execute(
        select(
            StatementBreak.kind,
            StatementBreak.detail,
            StatementBreak.resolved_at,
            StatementBreak.payment_id,
            StatementLine.line_no,
            StatementLine.provider_txn_id,
            StatementLine.amount,
            StatementLine.currency,
            Payment.provider_txn_id,
            Payment.amount,
            Payment.currency,
            Payment.status,
        )
        .outerjoin(StatementLine, StatementBreak.line_id == StatementLine.id)
        .outerjoin(Payment, StatementBreak.payment_id == Payment.id)
        .where(StatementBreak.import_id == import_id)
        .order_by(StatementBreak.id)
    )
    breaks = tuple(
        BreakRow(
            kind=BreakKind(kind),
            line_no=line_no,
            provider_txn_id=line_txn or payment_txn,
            statement_amount=line_amount,
            system_amount=payment_amount,
            currency=line_currency or payment_currency,
            payment_id=payment_id,
            payment_status=status.value if status is not None else None,
            detail=detail,
            resolved=resolved_at is not None,
        )
        for (
            kind,
            detail,
            resolved_at,
            payment_id,
            line_no,
            line_txn,
            line_amount,
            line_currency,
            payment_txn,
            payment_amount,
            payment_currency,
            status,
        ) in rows
    )
    totals = tuple(
        DayTotal(
            day=date.fromisoformat(t["day"]),
            currency=t["currency"],
            statement_count=t["statement_count"],
            statement_amount=t["statement_amount"],
            system_count=t["system_count"],
            system_amount=t["system_amount"],
        )
        for t in imported.totals or []
    )
    return StatementReport(
        import_id=imported.id,
        provider=imported.provider,
        filename=imported.filename,
        format=imported.format,
        imported_by=imported.imported_by,
        imported_at=imported.created_at,
        period_start=imported.period_start,
        period_end=imported.period_end,
        line_count=imported.line_count,
        credit_count=imported.credit_count,
        breaks=breaks,
        totals=totals,
    )


# ---------------------------------------------------------------- importing


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _known_payments(session: Session, provider: str, txn_ids: list[str]) -> dict[str, Payment]:
    """Return the provider's payments with these transaction ids (one query per 2,000 ids)."""
    found: dict[str, Payment] = {}
    for chunk in _chunks(txn_ids):
        query = select(Payment).where(Payment.provider == provider, Payment.provider_txn_id.in_(chunk))
        for payment in session.scalars(query):
            found[payment.provider_txn_id] = payment
    return found


def _stored_statement_evidence(session: Session, payment_ids: list[int], route: str) -> set[tuple[int, str]]:
    """Return (payment id, raw hash) of the statement evidence these payments already have on this route."""
    stored: set[tuple[int, str]] = set()
    for start in range(0, len(payment_ids), _IN_CHUNK):
        chunk = payment_ids[start : start + _IN_CHUNK]
        query = select(PaymentEvidence.payment_id, PaymentEvidence.raw_hash).where(
            PaymentEvidence.payment_id.in_(chunk),
            PaymentEvidence.source == EvidenceSource.STATEMENT,
            PaymentEvidence.route == route,
        )
        stored.update((pid, raw_hash) for pid, raw_hash in session.execute(query))
    return stored


def _describe(diffs: dict[str, list[str | int | None]]) -> str:
    parts = []
    for name in sorted(diffs):
        system, statement = diffs[name]
        if name == "payer":
            system, statement = mask_phone(str(system or "")), mask_phone(str(statement or ""))
        parts.append(f"{name}: statement {statement}, system {system}")
    return "; ".join(parts)


class _Accounts:
    """The mutuelles of a statement's accounts, each looked up once per import."""

    def __init__(self, session: Session, provider: str) -> None:
        self.session, self.provider = session, provider
        self.known: dict[str, frozenset[int] | None] = {}

    def mutuelles(self, account: str | None) -> frozenset[int] | None:
        """Return the mutuelles an account serves, or None."""
        if not account:
            return None
        if account not in self.known:
            self.known[account] = mutuelles_of_account(self.session, ReportedAccount(self.provider, account))
        return self.known[account]

    def disagree(self, payment: Payment, account: str) -> bool:
        """Return whether the account serves none of the mutuelles the payment was paid to or matched in."""
        reported = self.mutuelles(account)
        stored = self.mutuelles(payment.account)
        if stored is None and payment.mutuelle_id is not None:
            stored = frozenset({payment.mutuelle_id})
        return reported is not None and stored is not None and not reported & stored


def _report_of(line: StatementLineData, provider: str, route: str, line_id: int, account: str | None) -> Report:
    return Report(
        provider=provider,
        provider_txn_id=line.provider_txn_id,
        amount=line.amount,
        currency=line.currency,
        payer_phone=line.payer_phone,
        reference=line.reference,
        paid_at=line.paid_at,
        source=EvidenceSource.STATEMENT,
        route=route,
        raw=line.raw,
        statement_line_id=line_id,
        account=line.account or account,  # the line's own account, else the statement's
    )


class _DayTotals:
    """Credits per UTC day and currency, statement vs system: the report's totals, summed as lines stream by."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, side: str, paid_at: datetime, amount: int, currency: str) -> None:
        """Count one credit on the `statement` or `system` side."""
        key = (paid_at.date().isoformat(), currency)
        row = self.totals.get(key)
        if row is None:
            row = self.totals[key] = {
                "day": key[0],
                "currency": currency,
                "statement_count": 0,
                "statement_amount": 0,
                "system_count": 0,
                "system_amount": 0,
            }
        row[f"{side}_count"] += 1
        row[f"{side}_amount"] += amount

    def rows(self) -> list[dict[str, Any]]:
        """Return the totals by day, then currency."""
        return [self.totals[key] for key in sorted(self.totals)]


def _in_range(provider: str, start: date, end: date) -> Select[tuple[int, str, datetime, int, str]]:
    """Return the provider's payments paid on the statement's days, by time."""
    return (
        select(Payment.id, Payment.provider_txn_id, Payment.paid_at, Payment.amount, Payment.currency)
        .where(
            Payment.provider == provider,
            Payment.paid_at >= datetime.combine(start, datetime.min.time()),
            Payment.paid_at < datetime.combine(end + timedelta(days=1), datetime.min.time()),
        )
        .order_by(Payment.paid_at, Payment.id)
    )


def _insert_breaks(session: Session, breaks: list[dict[str, Any]]) -> None:
    if not breaks:
        return
    # One statement per row shape: Core executemany needs every row to carry the same keys.
    for row in breaks:
        row.setdefault("line_id", None)
        row.setdefault("payment_id", None)
        row.setdefault("resolved_at", None)
    session.execute(insert(StatementBreak), breaks)


@dataclass
class _Origin:
    """The first line of a transaction the statement repeats, for its duplicates' breaks."""

    line_no: int
    amount: int
    currency: str
    payment_id: int | None


class _Writer:
    """Pass 2: store a statement's lines batch by batch, bring its credits through intake, record the breaks."""

    def __init__(
        self,
        session: Session,
        imported: StatementImport,
        checked: _Checked,
        route: str,
        account: str | None,
        progress: Progress,
    ) -> None:
        self.session, self.imported, self.checked = session, imported, checked
        self.provider, self.route, self.account = imported.provider, route, account
        self.progress = progress
        self.accounts = _Accounts(session, imported.provider)
        self.origins: dict[str, _Origin] = {}
        self.duplicates: list[dict[str, Any]] = []
        self.needs_reconcile: dict[int, None] = {}
        self.credits = self.stored = self.in_bulk = self.through_intake = self.breaks = 0
        self.totals = _DayTotals()

    def batch(self, lines: list[StatementLineData]) -> None:
        """Store one batch of lines and bring its credits through intake; nothing is kept but compact counts."""
        firsts: list[StatementLineData] = []
        repeats: list[StatementLineData] = []
        for line in lines:
            if not line.is_credit:
                continue
            if line.provider_txn_id not in self.checked.repeated:
                firsts.append(line)
            elif line.provider_txn_id in self.origins:
                repeats.append(line)
            else:
                self.origins[line.provider_txn_id] = _Origin(line.line_no, line.amount, line.currency, None)
                firsts.append(line)
        known = _known_payments(self.session, self.provider, [line.provider_txn_id for line in firsts])
        for txn_id, payment in known.items():
            origin = self.origins.get(txn_id)
            if origin is not None and origin.payment_id is None:
                origin.payment_id = payment.id
        first_lines = {line.line_no for line in firsts}
        self.session.execute(
            insert(StatementLine),
            [
                {
                    "import_id": self.imported.id,
                    "line_no": line.line_no,
                    "provider_txn_id": line.provider_txn_id,
                    "amount": line.amount,
                    "currency": line.currency,
                    "paid_at": line.paid_at,
                    "payer_phone": line.payer_phone,
                    "reference": line.reference,
                    "kind": line.kind,
                    "raw": line.raw,
                    # Only the first line of a transaction reports it; a repeat is a duplicate_line break.
                    "payment_id": known[line.provider_txn_id].id
                    if line.line_no in first_lines and line.provider_txn_id in known
                    else None,
                }
                for line in lines
            ],
        )
        line_ids: dict[int, int] = {
            line_no: line_id
            for line_no, line_id in self.session.execute(
                select(StatementLine.line_no, StatementLine.id).where(
                    StatementLine.import_id == self.imported.id,
                    StatementLine.line_no >= lines[0].line_no,
                    StatementLine.line_no <= lines[-1].line_no,
                )
            )
        }
        self.stored += len(lines)
        self.progress("stored", self.stored, self.checked.lines)
        through_intake = self._bulk_evidence(firsts, known, line_ids)
        self._intake(through_intake, known, line_ids)
        for line in repeats:
            origin = self.origins[line.provider_txn_id]
            detail = f"{line.provider_txn_id} already on line {origin.line_no}"
            if (line.amount, line.currency) != (origin.amount, origin.currency):
                detail += f" with {origin.amount} {origin.currency}, here {line.amount} {line.currency}"
            self.duplicates.append(
                {
                    "import_id": self.imported.id,
                    "kind": BreakKind.DUPLICATE_LINE,
                    "line_id": line_ids[line.line_no],
                    "payment_id": origin.payment_id,
                    "detail": detail,
                }
            )
        for line in firsts:
            self.totals.add("statement", line.paid_at, line.amount, line.currency)
        self.credits += len(firsts)

    def _bulk_evidence(
        self, firsts: list[StatementLineData], known: dict[str, Payment], line_ids: dict[int, int]
    ) -> list[tuple[StatementLineData, Report, dict[str, list[str | int | None]]]]:
        """Store the evidence of known, confirmed, consistent payments in bulk; return the lines for intake."""
        stored_evidence = _stored_statement_evidence(self.session, [p.id for p in known.values()], self.route)
        evidence_rows: list[dict[str, Any]] = []
        through_intake: list[tuple[StatementLineData, Report, dict[str, list[str | int | None]]]] = []
        for line in firsts:
            report = _report_of(line, self.provider, self.route, line_ids[line.line_no], self.account)
            payment = known.get(line.provider_txn_id)
            if payment is None:
                through_intake.append((line, report, {}))
            elif (payment.id, sha256_text(line.raw)) in stored_evidence:
                pass  # an overlapping statement already brought this very line
            else:
                diffs = differences(payment, report)
                if report.account and self.accounts.disagree(payment, report.account):
                    diffs["account"] = [payment.account, report.account]  # paid to another mutuelle's account
                # A matched payment that had no reference: intake checks the line's does not name another account.
                unchecked = bool(line.reference) and not payment.account_reference and payment.match_rule is not None
                # A payment not yet attributed to a mutuelle takes the line's account's through intake.
                unchecked = unchecked or bool(report.account and payment.mutuelle_id is None)
                if payment.confirmed and not diffs and not unchecked:
                    evidence_rows.append(
                        {
                            "payment_id": payment.id,
                            "source": EvidenceSource.STATEMENT,
                            "route": self.route,
                            "fields_hash": fields_hash(line.amount, line.currency, line.reference, line.payer_phone),
                            "raw": line.raw,
                            "raw_hash": sha256_text(line.raw),
                            "statement_line_id": report.statement_line_id,
                            "received_at": utcnow(),
                        }
                    )
                else:
                    through_intake.append((line, report, diffs))
        if evidence_rows:
            self.session.execute(insert(PaymentEvidence), evidence_rows)
        self.in_bulk += len(evidence_rows)
        return through_intake

    def _intake(
        self,
        through_intake: list[tuple[StatementLineData, Report, dict[str, list[str | int | None]]]],
        known: dict[str, Payment],
        line_ids: dict[int, int],
    ) -> None:
        """Bring each line that needs it through `record_report`, one by one; store its break."""
        breaks: list[dict[str, Any]] = []
        line_payments: list[dict[str, int]] = []
        now = utcnow()
        for line, report, diffs in through_intake:
            result = record_report(self.session, report)
            payment_id = result.payment_id
            if line.provider_txn_id not in known:
                line_payments.append({"id": line_ids[line.line_no], "payment_id": payment_id})
            if result.needs_reconcile:
                self.needs_reconcile[payment_id] = None
            base = {"import_id": self.imported.id, "line_id": line_ids[line.line_no], "payment_id": payment_id}
            if result.outcome == IntakeOutcome.CREATED:
                breaks.append({**base, "kind": BreakKind.MISSING_IN_SYSTEM, "detail": "created from the statement"})
            elif result.outcome == IntakeOutcome.CONFIRMED:
                detail = f"confirmed, now {result.status.value}"
                breaks.append({**base, "kind": BreakKind.PROVISIONAL_CONFIRMED, "detail": detail, "resolved_at": now})
            elif result.outcome == IntakeOutcome.CONFLICT:
                kind = BreakKind.AMOUNT_MISMATCH if {"amount", "currency"} & set(diffs) else BreakKind.FIELD_MISMATCH
                conflicted = self.session.get(Payment, payment_id)
                said = _describe(diffs) or (conflicted.status_reason if conflicted is not None else None) or ""
                breaks.append({**base, "kind": kind, "detail": said[:500] or "differs: see the payment"})
        if line_payments:
            self.session.execute(update(StatementLine), line_payments)
        _insert_breaks(self.session, breaks)
        self.through_intake += len(through_intake)
        self.breaks += len(breaks)

    def missing_in_statement(self, start: date, end: date) -> None:
        """Record the provider's payments of the statement's days that none of its lines names (set-based)."""
        if self.session.get_bind().dialect.name == "postgresql":  # a hash anti-join
            named = exists().where(
                StatementLine.import_id == self.imported.id, StatementLine.provider_txn_id == Payment.provider_txn_id
            )
            unnamed = ~named
        else:  # SQLite builds the subquery's index once (a correlated EXISTS would scan the import's lines)
            lines = select(StatementLine.provider_txn_id).where(StatementLine.import_id == self.imported.id)
            unnamed = Payment.provider_txn_id.not_in(lines)
        query = _in_range(self.provider, start, end).where(unnamed).execution_options(yield_per=WRITE_BATCH)
        result = self.session.execute(query).tuples()
        for partition in result.partitions():
            rows: list[dict[str, Any]] = [
                {
                    "import_id": self.imported.id,
                    "kind": BreakKind.MISSING_IN_STATEMENT,
                    "payment_id": payment_id,
                    "detail": f"{txn_id} {amount} {currency} paid {paid_at:%Y-%m-%d %H:%M} UTC: no line",
                }
                for payment_id, txn_id, paid_at, amount, currency in partition
            ]
            _insert_breaks(self.session, rows)
            self.breaks += len(rows)


def import_statement(
    session: Session,
    provider: str,
    filename: str,
    data: Source,
    imported_by: str = "cli",
    format_name: str | None = None,
    formats: Mapping[str, StatementFormat] | None = None,
    progress: Progress | None = None,
    account: str | None = None,
) -> ImportResult:
    """Store a statement with its lines, bring its credits through intake and record the breaks; the caller commits.

    `data`: the file's bytes, or a seekable binary stream (an open file: the import reads it in passes, never
    whole, so its memory does not grow with the file). Pass 1 checks every line, keeping compact keys, and
    raises StatementError naming the bad lines before anything is written; pass 2 reads the file again and
    writes it in batches.
    `account`: the account the statement is of (a merchant number, a paybill): its credits were paid to it, and
    to the mutuelle it serves (a line's own `account` column, when the format has one, wins).
    """
    provider = provider.strip().lower()
    account = clean_account(account)
    report_progress: Progress = progress or (lambda _stage, _done, _total: None)
    handle = _binary(data)
    digest = _digest(handle)
    begin_write(session)
    existing = session.scalar(
        select(StatementImport.id).where(StatementImport.provider == provider, StatementImport.sha256 == digest)
    )
    if existing is not None:
        return ImportResult(statement_report(session, existing), already_imported=True, needs_reconcile=())

    layout = _lay_out(session, handle, provider, formats, format_name)
    checked = _check(layout, report_progress)
    assert checked.start is not None and checked.end is not None
    start, end = checked.start.date(), checked.end.date()
    route = layout.format.name

    imported = StatementImport(
        provider=provider,
        filename=Path(filename).name[:255],
        sha256=digest,
        imported_by=imported_by[:80],
        line_count=checked.lines,
        credit_count=0,  # counted as pass 2 writes
        period_start=start,
        period_end=end,
        format=route,
        account=account,
        mutuelle_id=single_mutuelle(mutuelles_of_account(session, ReportedAccount(provider, account or ""))),
    )
    try:
        with session.begin_nested():
            session.add(imported)
    except IntegrityError:
        # The same file committed by a concurrent import between our check and our insert.
        existing = session.scalar(
            select(StatementImport.id).where(StatementImport.provider == provider, StatementImport.sha256 == digest)
        )
        if existing is None:
            raise
        return ImportResult(statement_report(session, existing), already_imported=True, needs_reconcile=())

    writer = _Writer(session, imported, checked, route, account, report_progress)
    # What the system held for the statement's days before this import: the "in system" side of the totals.
    system = session.execute(_in_range(provider, start, end).execution_options(yield_per=WRITE_BATCH)).tuples()
    for _payment_id, _txn_id, paid_at, amount, currency in system:
        writer.totals.add("system", paid_at, amount, currency)
    for lines in _lines(layout):
        writer.batch(lines)
    _insert_breaks(session, writer.duplicates)
    # Payments the import did not touch: those no line names (every payment it created or changed has a line).
    writer.missing_in_statement(start, end)
    imported.credit_count = writer.credits
    imported.totals = writer.totals.rows()
    session.flush()
    outcome = statement_report(session, imported.id)
    log.info(
        "statement %s (%s, %s): %s lines, %s credits, %s evidence in bulk, %s through intake, %s breaks",
        imported.id,
        provider,
        route,
        checked.lines,
        writer.credits,
        writer.in_bulk,
        writer.through_intake,
        writer.breaks + len(writer.duplicates),
    )
    return ImportResult(outcome, already_imported=False, needs_reconcile=tuple(writer.needs_reconcile))
