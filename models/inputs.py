"""Reading untrusted text and numbers from callbacks and query strings: bounded, named errors, never a crash.

Every value a provider, a phone or a browser sends goes through one of these before it reaches arithmetic or
the database, so a bad value is answered with a 4xx naming the field (never a 5xx from a column overflow, a
NUL byte PostgreSQL refuses, or a number too large to convert).
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date
from decimal import Decimal
from typing import Any

# Control characters a text field may not hold (tab, newline and carriage return are allowed in texts).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n]")
_NUL = "\x00"
MAX_JSON_NUMBER_DIGITS = 40  # far beyond any amount or timestamp; json.loads would build any integer
MAX_INT = 2**31 - 1  # a 32-bit INTEGER column or OFFSET: what a query string may ask for
# Dates a caller may ask about: well inside what `date` arithmetic (± a year) and the databases accept.
MIN_DATE = date(1900, 1, 1)
MAX_DATE = date(2199, 12, 31)


class InputError(ValueError):
    """A value that cannot be taken; the message names the field and what is wrong."""


def check_text(value: Any, name: str, max_length: int, *, required: bool = False, multiline: bool = False) -> str:
    """Return a text field stripped; InputError when it is not a string, too long, or holds control characters.

    An empty or whitespace-only value is "" (an InputError when required).
    """
    if value is None:
        value = ""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InputError(f"{name} must be a string")
    text = str(value)
    if _NUL in text:
        raise InputError(f"{name} contains a NUL byte")
    if _CONTROL.search(text) or (not multiline and _LINE_BREAK.search(text)):
        raise InputError(f"{name} contains control characters")
    check_surrogates(text, name)
    text = text.strip()
    if required and not text:
        raise InputError(f"{name} is required")
    if len(text) > max_length:
        raise InputError(f"{name} is longer than {max_length} characters")
    return text


def check_surrogates(text: str, name: str) -> None:
    """Raise InputError when a text holds lone surrogates (undecodable bytes), which no database stores."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{name} is not valid UTF-8") from exc


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_NUMBER_DIGITS:
        raise InputError(f"a number has more than {MAX_JSON_NUMBER_DIGITS} digits")
    return int(text)


def _bounded_decimal(text: str) -> Decimal:
    if len(text) > MAX_JSON_NUMBER_DIGITS + 10:
        raise InputError(f"a number has more than {MAX_JSON_NUMBER_DIGITS} digits")
    value = Decimal(text)
    if value.is_finite() and abs(value.adjusted()) > MAX_JSON_NUMBER_DIGITS:
        raise InputError("a number is out of range")
    return value


def load_json_body(body: bytes) -> Any:
    """Return a JSON body with decimals as Decimal (never float) and every number bounded; InputError otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("body is not UTF-8") from exc
    try:
        return json.loads(text, parse_float=_bounded_decimal, parse_int=_bounded_int, parse_constant=_no_constant)
    except InputError:
        raise
    except (ValueError, RecursionError) as exc:
        raise InputError("body is not JSON") from exc


def _no_constant(name: str) -> Any:
    raise InputError(f"{name} is not a number")


def parse_query_int(raw: str, name: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """Return a query-string integer (ASCII digits only) within bounds; InputError naming the parameter."""
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise InputError(f"{name} must be a whole number")
    value = int(text)
    if not minimum <= value <= maximum:
        raise InputError(f"{name} must be between {minimum} and {maximum}")
    return value


def parse_query_date(raw: str, name: str) -> date:
    """Return a YYYY-MM-DD query value between MIN_DATE and MAX_DATE; InputError naming the parameter."""
    text = raw.strip()
    try:
        if not text.isascii() or len(text) != 10:
            raise ValueError(text)
        value = date.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"{name} must be a date YYYY-MM-DD") from exc
    if not MIN_DATE <= value <= MAX_DATE:
        raise InputError(f"{name} must be between {MIN_DATE.isoformat()} and {MAX_DATE.isoformat()}")
    return value


def squash(text: str) -> str:
    """Return the text without accents, case, spaces or punctuation: how names, codes and accounts compare.

    Network names and aliases, communes and payment accounts ("#144*4*6*203040#" → "1444620304 0" unspaced).
    """
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return re.sub(r"[^A-Z0-9]", "", plain)
