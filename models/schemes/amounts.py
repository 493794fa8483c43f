"""Amounts as operators write them, turned into integers of the currency's minor unit (never floats)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.schemes.scheme import Scheme
from models.schemes.scheme_file import CURRENCY_EXPONENTS

_AMOUNT_RE = re.compile(r"^\d[\d.,' ]*$")
MAX_AMOUNT_TEXT = 32  # "1 000 000 000 000,00" and then some; longer is not an amount
# At most 10^15 major units (any currency): checked on the exponent before any arithmetic, so a huge number
# (`1e999999`, 5,000 digits) is refused at once instead of being expanded; minor units stay within BIGINT.
MAX_MAJOR_DIGITS = 15


class AmountError(ValueError):
    """An amount that cannot be read exactly in the currency's minor unit."""


def parse_amount(raw: str | int | Decimal, exponent: int) -> int:
    """Return the amount in minor units: "350.00" (exponent 2) → 35000, "3.500" or "8,000" (exponent 0) → 3500/8000.

    A single separator followed by exactly three digits groups thousands ("3.500", "8,000"); otherwise it is the
    decimal mark ("3500.0", "350.00"). With both kinds, the last one is the decimal mark ("3,500.00").
    """
    if isinstance(raw, bool):
        raise AmountError("not an amount")
    if isinstance(raw, int):
        if abs(raw) >= 10 ** (MAX_MAJOR_DIGITS + 1):
            raise AmountError("the amount is too large")
        value = Decimal(raw)
    elif isinstance(raw, Decimal):
        value = raw
    else:
        if len(raw) > MAX_AMOUNT_TEXT:
            raise AmountError(f"{raw[:MAX_AMOUNT_TEXT]!r}… is not an amount")
        value = Decimal(_canonical(raw))
    if not value.is_finite():
        raise AmountError("not an amount")
    if value and value.adjusted() > MAX_MAJOR_DIGITS:
        raise AmountError("the amount is too large")
    if len(value.as_tuple().digits) > MAX_MAJOR_DIGITS + 10 or not 0 <= exponent <= 6:
        raise AmountError(f"{raw!r} has more decimals than the currency allows")
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise AmountError(f"{raw!r} has more decimals than the currency allows")
    if minor <= 0:
        raise AmountError(f"{raw!r} is not a positive amount")
    return int(minor)


def _canonical(raw: str) -> str:
    text = raw.strip().replace("\u00a0", " ")
    if not _AMOUNT_RE.match(text):
        raise AmountError(f"{raw!r} is not an amount")
    text = text.replace(" ", "").replace("'", "")
    separators = [c for c in text if c in ".,"]
    if not separators:
        digits = text
    elif len(set(separators)) == 2:
        decimal_mark = separators[-1]
        group_mark = "," if decimal_mark == "." else "."
        if text.count(decimal_mark) > 1:
            raise AmountError(f"{raw!r} is ambiguous")
        digits = text.replace(group_mark, "").replace(decimal_mark, ".")
    else:
        mark = separators[0]
        head, _, tail = text.rpartition(mark)
        if len(separators) > 1 or len(tail) == 3:
            groups = text.split(mark)
            if any(len(g) != 3 for g in groups[1:]) or not groups[0]:
                raise AmountError(f"{raw!r} has malformed digit groups")
            digits = "".join(groups)
        else:
            digits = f"{head}.{tail}"
    try:
        return str(Decimal(digits))
    except InvalidOperation as exc:
        raise AmountError(f"{raw!r} is not an amount") from exc


def currency_exponent(session: Session, currency: str) -> int:
    """Return the minor-unit exponent of the currency: a scheme's setting, else the standard one."""
    exponent = session.scalar(select(Scheme.currency_exponent).where(Scheme.currency == currency).limit(1))
    if exponent is not None:
        return int(exponent)
    if currency not in CURRENCY_EXPONENTS:
        raise AmountError(f"unknown currency {currency!r}")
    return CURRENCY_EXPONENTS[currency]


class Amount(NamedTuple):
    """An amount in minor units with its currency, formatted per language where it is shown."""

    value: int
    currency: str
    exponent: int = 0


# How people write each currency, per language ("*": any other language). The way they write money there:
# "15 000 F CFA" in Senegal, "8 000 riels" in Cambodia. Plain ASCII spaces only: Babel's narrow no-break
# spaces are not in the GSM 03.38 alphabet and would turn an SMS into UCS-2 (a third of the room).
CURRENCY_LABELS: dict[str, dict[str, str]] = {
    "XOF": {"*": "F CFA"},
    "XAF": {"*": "F CFA"},
    "KHR": {"en": "riel", "km": "រៀល", "*": "riels"},
}
# Languages that group thousands with a comma and mark decimals with a point; the others use a space and a comma.
POINT_LANGUAGES = frozenset({"en"})


def currency_label(currency: str, language: str | None) -> str:
    """Return how the currency is written after an amount in the language (its ISO code when nothing else)."""
    labels = CURRENCY_LABELS.get(currency, {})
    return labels.get(language or "", labels.get("*", currency))


def format_amount(amount: int, currency: str, exponent: int, language: str | None = None) -> str:
    """Return minor units as people read them in the language, the one amount format of every channel.

    3500 XOF → "3 500 F CFA" (fr, wo), "3,500 F CFA" (en); 35050 KES → "350,50 KES" (fr), "350.50 KES" (en).
    """
    point = language in POINT_LANGUAGES
    whole, minor = divmod(abs(amount), 10**exponent) if exponent > 0 else (abs(amount), 0)
    digits = f"{whole:,}".replace(",", "," if point else " ")
    if exponent > 0:
        digits += f"{'.' if point else ','}{minor:0{exponent}d}"
    sign = "-" if amount < 0 else ""
    return f"{sign}{digits} {currency_label(currency, language)}"


def format_money(amount: Amount, language: str | None) -> str:
    """Return an `Amount` formatted in the language (see `format_amount`)."""
    return format_amount(amount.value, amount.currency, amount.exponent, language)
