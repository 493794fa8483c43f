"""Reading the admin pages' query strings: page numbers, dates, enum values and filters."""

from __future__ import annotations

import enum
from datetime import date
from typing import TypeVar

from flask import request
from werkzeug.datastructures import MultiDict

from extensions import settings
from models.base import PaymentStatus
from models.listings import MAX_PER_PAGE, PaymentFilters

E = TypeVar("E", bound=enum.Enum)


def arg_int(name: str, default: int | None = None) -> int | None:
    """Return an integer query argument, or the default when absent or malformed."""
    raw = request.args.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def arg_date(name: str) -> date | None:
    """Return a YYYY-MM-DD query argument, or None when absent or malformed."""
    try:
        return date.fromisoformat(request.args.get(name, "").strip())
    except ValueError:
        return None


def arg_enum(name: str, kind: type[E]) -> E | None:
    """Return an enum member named by its value in the query, or None."""
    raw = request.args.get(name, "").strip()
    for member in kind:
        if member.value == raw:
            return member
    return None


def arg_text(name: str) -> str | None:
    """Return a trimmed text query argument, or None when empty."""
    value = request.args.get(name, "").strip()
    return value[:120] or None


def page_args() -> tuple[int, int]:
    """Return the page number and page size asked for (bounded)."""
    number = arg_int("page", 1) or 1
    per_page = arg_int("per", settings().ADMIN_PAGE_SIZE) or settings().ADMIN_PAGE_SIZE
    return max(1, number), max(1, min(per_page, MAX_PER_PAGE))


def payment_filters() -> PaymentFilters:
    """Return the payment filters of the query string."""
    return PaymentFilters(
        date_from=arg_date("from"),
        date_to=arg_date("to"),
        provider=arg_text("provider"),
        status=arg_enum("status", PaymentStatus),
        scheme_id=arg_int("scheme"),
        commune=arg_text("commune"),
        network_id=arg_int("network"),
    )


def query_without(*names: str) -> MultiDict[str, str]:
    """Return the current query arguments minus some (to build page and export links)."""
    args = MultiDict(request.args)
    for name in names:
        args.poplist(name)
    return args
