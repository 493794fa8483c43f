"""Reading the admin pages' query strings: page numbers, dates, enum values and filters.

A malformed or out-of-range value is answered 400 naming the parameter (never a 500 from the database).
"""

from __future__ import annotations

import enum
from datetime import date
from typing import NoReturn, TypeVar

from flask import abort, request
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from extensions import db, settings
from models.base import PaymentStatus
from models.inputs import MAX_INT, InputError, check_text, parse_query_date, parse_query_int
from models.members.household import Network
from models.views.listings import MAX_PER_PAGE, Cursor, PaymentFilters, decode_cursor

E = TypeVar("E", bound=enum.Enum)
MAX_PAGE = 100_000  # 200 rows a page: 20 million rows deep; a deep `page=` walks the sort keys only (listings.paginate)


def _bad(error: InputError) -> NoReturn:
    abort(400, str(error))


def arg_int(name: str, default: int | None = None, maximum: int = MAX_INT) -> int | None:
    """Return an integer query argument, the default when absent; 400 when malformed or out of range."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_query_int(raw, name, maximum=maximum)
    except InputError as exc:
        _bad(exc)


def arg_date(name: str) -> date | None:
    """Return a YYYY-MM-DD query argument, None when absent; 400 when malformed or out of range."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_query_date(raw, name)
    except InputError as exc:
        _bad(exc)


def arg_enum(name: str, kind: type[E]) -> E | None:
    """Return an enum member named by its value in the query, None when absent; 400 for an unknown value."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    for member in kind:
        if member.value == raw:
            return member
    abort(400, f"{name} must be one of {', '.join(str(m.value) for m in kind)}")


def arg_text(name: str, limit: int = 120) -> str | None:
    """Return a trimmed text query argument, None when empty; 400 when too long or with control characters."""
    try:
        return check_text(request.args.get(name, ""), name, limit) or None
    except InputError as exc:
        _bad(exc)


def page_args() -> tuple[int, int]:
    """Return the page number and page size asked for (bounded)."""
    number = arg_int("page", 1, maximum=MAX_PAGE) or 1
    per_page = arg_int("per", settings().ADMIN_PAGE_SIZE, maximum=MAX_INT) or settings().ADMIN_PAGE_SIZE
    return max(1, number), max(1, min(per_page, MAX_PER_PAGE))


def page_cursor() -> Cursor | None:
    """Return the page cursor of the query string (`after=`, else `before=`), None without; 400 when malformed."""
    for name in ("after", "before"):
        raw = request.args.get(name, "").strip()
        if raw:
            try:
                return decode_cursor(raw, before=name == "before")
            except InputError as exc:
                _bad(exc)
    return None


def payment_filters() -> PaymentFilters:
    """Return the payment filters of the query string."""
    return PaymentFilters(
        date_from=arg_date("from"),
        date_to=arg_date("to"),
        provider=arg_text("provider"),
        status=arg_enum("status", PaymentStatus),
        scheme_id=arg_int("scheme"),
        commune=arg_text("commune"),
        network_id=arg_network("network"),
    )


def arg_network(name: str) -> int | None:
    """Return the network a query argument names by id or by code (as the households lists do); 400 if none."""
    raw = request.args.get(name, "").strip()
    if not raw or raw.isdigit():
        return arg_int(name)
    found = db().scalars(select(Network.id).where(Network.code == raw[:60]).order_by(Network.id).limit(2)).all()
    if len(found) != 1:
        abort(400, f"{name}: {'no network has' if not found else 'several networks have'} the code {raw[:60]!r}")
    return found[0]


def query_without(*names: str) -> MultiDict[str, str]:
    """Return the current query arguments minus some and minus the page cursors (to build page and export links)."""
    args = MultiDict(request.args)
    for name in (*names, "after", "before"):
        args.poplist(name)
    return args
