"""Jinja filters of the admin templates: money, times, ages and JSON payloads."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, cast

from flask import g
from sqlalchemy import select

from extensions import db
from handlers.admin import bp
from models.base import utcnow
from models.schemes.amounts import format_amount
from models.schemes.scheme import Scheme
from models.schemes.scheme_file import CURRENCY_EXPONENTS


def _currencies() -> dict[str, tuple[int, str | None]]:
    # One query per request, however many amounts the page shows: each currency's exponent and the language
    # of the scheme that collects it (money is written the way people write it there).
    if "admin_currencies" not in g:
        currencies: dict[str, tuple[int, str | None]] = {
            code: (exponent, None) for code, exponent in CURRENCY_EXPONENTS.items()
        }
        rows = db().execute(select(Scheme.currency, Scheme.currency_exponent, Scheme.default_language)).tuples()
        for currency, exponent, language in rows:
            currencies[currency] = (exponent, str(language.value if hasattr(language, "value") else language))
        g.admin_currencies = currencies
    return cast("dict[str, tuple[int, str | None]]", g.admin_currencies)


@bp.app_template_filter("money")
def money(amount: int | None, currency: str | None) -> str:
    """Format minor units in the one amount format of every channel: 1500000 XOF → 1 500 000 F CFA."""
    if amount is None:
        return "–"
    if not currency:
        return str(int(amount))
    exponent, language = _currencies().get(currency, (0, None))
    return format_amount(int(amount), currency, exponent, language)


@bp.app_template_filter("when")
def when(value: datetime | date | None) -> str:
    """Format a UTC time (or a date) compactly."""
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


@bp.app_template_filter("age")
def age(value: datetime | None) -> str:
    """Return how long ago a UTC time was: 3 d 4 h, 12 min."""
    if value is None:
        return "–"
    seconds = max(0, int((utcnow() - value).total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min"


@bp.app_template_filter("pretty_json")
def pretty_json(raw: str | dict[str, Any] | None) -> str:
    """Indent a JSON payload for reading; other text is returned as is."""
    if raw is None:
        return ""
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return str(raw)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
