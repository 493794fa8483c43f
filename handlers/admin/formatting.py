"""Jinja filters of the admin templates: money, times, ages and JSON payloads."""

from __future__ import annotations

import json
from datetime import date, datetime

from flask import g
from sqlalchemy import select

from extensions import db
from handlers.admin import bp
from models.amounts import CURRENCY_EXPONENTS
from models.base import utcnow
from models.scheme import Scheme


def _exponents() -> dict[str, int]:
    # One query per request, however many amounts the page shows.
    if "admin_exponents" not in g:
        exponents = dict(CURRENCY_EXPONENTS)
        exponents.update(db().execute(select(Scheme.currency, Scheme.currency_exponent)).tuples().all())
        g.admin_exponents = exponents
    return g.admin_exponents  # type: ignore[no-any-return]


@bp.app_template_filter("money")
def money(amount: int | None, currency: str | None) -> str:
    """Format minor units as people read them, with the currency: 350050 KES → 3,500.50 KES."""
    if amount is None:
        return "–"
    exponent = _exponents().get(currency or "", 0)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(int(amount)), 10**exponent) if exponent > 0 else (abs(int(amount)), 0)
    text = f"{major:,}".replace(",", "\u202f")
    if exponent > 0:
        text += f".{minor:0{exponent}d}"
    return f"{sign}{text} {currency or ''}".strip()


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
def pretty_json(raw: str | dict | None) -> str:
    """Indent a JSON payload for reading; other text is returned as is."""
    if raw is None:
        return ""
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return str(raw)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
