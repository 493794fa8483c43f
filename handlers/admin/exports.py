"""CSV exports (docs/exports.md): households, members with their eligibility on a date, coverage periods, payments.

Every download streams: rows are read in batches and written to the response as they come, whatever the size.
UTF-8 with a byte-order mark, so a spreadsheet opened by double-click reads accents and Khmer right (Excel takes a
BOM-less file for the system's legacy code page); comma-separated (RFC 4180), or `sep=semicolon` for a spreadsheet
whose list separator is the semicolon (French settings).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable, Iterator

from flask import Response, abort, render_template, request, stream_with_context
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from extensions import db
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.params import arg_date, arg_enum, arg_int, arg_text
from handlers.admin.texts import gettext
from models.base import EligibilityStatus, PaymentStatus, StaffRole, utcnow
from models.fhir.export import coverage_lines, patient_lines
from models.schemes.scheme import schemes_today
from models.views.exports import (
    HOUSEHOLD_COLUMNS,
    MEMBER_COLUMNS,
    PAYMENT_COLUMNS,
    PERIOD_COLUMNS,
    ExportFilters,
    PeriodFilters,
    header,
    household_rows,
    member_rows,
    payment_rows,
    period_rows,
)
from models.views.listings import PaymentFilters, filter_choices
from models.views.selection import HouseholdSelection, networks_named, selection_choices
from models.views.standing import load_schemes

log = logging.getLogger(__name__)

BOM = "\ufeff"
CHUNK_CHARACTERS = 64 * 1024  # a response chunk: rows are written out every ~64 KB
SEPARATORS = {"comma": ",", "semicolon": ";"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _defused(value: str) -> str:
    # A cell a spreadsheet would run as a formula is prefixed with a quote; numbers and phones stay as they are.
    if value.startswith(FORMULA_STARTS) and not value.lstrip("+-").replace(".", "", 1).isdigit():
        return "'" + value
    return value


def csv_download(stem: str, columns: list[str], rows: Callable[[Session], Iterable[list[str]]]) -> Response:
    """Return a streamed CSV download of a header and the rows `rows` reads, named `<stem>-<UTC time>.csv`.

    `rows` gets the session of the streaming itself: Flask tears the view's request down (closing its session)
    before the response is sent, and `stream_with_context` pushes the context again around the generator, so a
    session opened there is the one its own teardown closes.
    """
    raw = request.args.get("sep", "comma")
    if raw not in SEPARATORS:
        abort(400, gettext("sep must be one of %(choices)s", choices=", ".join(SEPARATORS)))
    separator = SEPARATORS[raw]

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=separator)
        writer.writerow(columns)
        yield BOM + buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        for cells in rows(db()):
            writer.writerow([_defused(value) for value in cells])
            if buffer.tell() >= CHUNK_CHARACTERS:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    log.info("admin: %s.csv exported by %s (%s)", stem, current_user.username, request.query_string.decode()[:300])
    name = f"{stem}-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


def household_selection() -> HouseholdSelection:
    """Return the households the query string selects: scheme (id), commune, network (code), plan, category."""
    network = arg_text("network", 60)
    network_ids = None
    if network:
        network_ids = networks_named(db(), network)
        if not network_ids:
            abort(400, gettext("network: no network has the code %(code)s", code=repr(network)))
    return HouseholdSelection(
        scheme_id=arg_int("scheme"),
        commune=arg_text("commune"),
        network_ids=network_ids,
        plan=arg_text("plan", 40),
        category=arg_text("category", 40),
    )


def _statuses() -> frozenset[EligibilityStatus]:
    chosen = set()
    for raw in request.args.getlist("status"):
        for value in filter(None, (part.strip().upper() for part in raw.split(","))):
            try:
                chosen.add(EligibilityStatus(value))
            except ValueError:
                choices = ", ".join(s.value for s in EligibilityStatus)
                abort(400, gettext("status must be among %(choices)s", choices=choices))
    return frozenset(chosen)


def export_filters() -> ExportFilters:
    """Return the household and member exports' filters: the households, `on` (default: today where the schemes
    are, `schemes_today`), `status`."""
    households = household_selection()
    on = arg_date("on") or schemes_today(db(), households.scheme_id, now=utcnow())
    return ExportFilters(on=on, households=households, statuses=_statuses())


def _payment_filters() -> PaymentFilters:
    network_id = None
    network = arg_text("network", 60)
    if network:
        ids = networks_named(db(), network)
        if len(ids) != 1:
            if not ids:
                abort(400, gettext("network: no network has the code %(code)s", code=repr(network)))
            abort(400, gettext("network: several schemes have a network %(code)s: add scheme=", code=repr(network)))
        network_id = ids[0]
    return PaymentFilters(
        date_from=arg_date("from"),
        date_to=arg_date("to"),
        provider=arg_text("provider"),
        status=arg_enum("status", PaymentStatus),
        scheme_id=arg_int("scheme"),
        commune=arg_text("commune"),
        network_id=network_id,
    )


@bp.get("/exports")
@role_required(StaffRole.VIEWER)
def exports() -> ResponseReturnValue:
    """Show the exports with their filters."""
    session = db()
    return render_template(
        "admin/exports.html",
        choices=selection_choices(session, load_schemes(session).values()),
        providers=filter_choices(session).providers,
        statuses=[s.value for s in EligibilityStatus],
        payment_statuses=[s.value for s in PaymentStatus],
        today=schemes_today(session, now=utcnow()),
    )


@bp.get("/exports/households.csv")
@role_required(StaffRole.VIEWER)
def export_households() -> ResponseReturnValue:
    """Download the selected households with their eligibility on a date, as CSV (streamed)."""
    filters = export_filters()
    return csv_download("households", header(HOUSEHOLD_COLUMNS), lambda session: household_rows(session, filters))


@bp.get("/exports/members.csv")
@role_required(StaffRole.VIEWER)
def export_members() -> ResponseReturnValue:
    """Download the members of the selected households with their eligibility on a date, as CSV (streamed)."""
    filters = export_filters()
    return csv_download("members", header(MEMBER_COLUMNS), lambda session: member_rows(session, filters))


@bp.get("/exports/coverage-periods.csv")
@role_required(StaffRole.VIEWER)
def export_periods() -> ResponseReturnValue:
    """Download the selected households' coverage periods, as CSV (streamed)."""
    filters = PeriodFilters(
        households=household_selection(),
        date_from=arg_date("from"),
        date_to=arg_date("to"),
        with_reversed=request.args.get("reversed", "") in {"1", "true", "include"},
    )
    return csv_download("coverage-periods", header(PERIOD_COLUMNS), lambda session: period_rows(session, filters))


@bp.get("/exports/payments.csv")
@role_required(StaffRole.VIEWER)
def export_payments() -> ResponseReturnValue:
    """Download the filtered payments with their household, commune and network, as CSV (streamed)."""
    filters = _payment_filters()
    return csv_download("payments", header(PAYMENT_COLUMNS), lambda session: payment_rows(session, filters))


def ndjson_download(stem: str, lines: Callable[[Session], Iterable[str]]) -> Response:
    """Return a streamed FHIR NDJSON download (one resource per line), named `<stem>-<UTC time>.ndjson`.

    `lines` gets the streaming's own session, as in `csv_download`.
    """

    def generate() -> Iterator[str]:
        chunk: list[str] = []
        size = 0
        for line in lines(db()):
            chunk.append(line)
            size += len(line)
            if size >= CHUNK_CHARACTERS:
                yield "".join(chunk)
                chunk, size = [], 0
        yield "".join(chunk)

    log.info("admin: %s.ndjson exported by %s (%s)", stem, current_user.username, request.query_string.decode()[:300])
    name = f"{stem}-{utcnow():%Y%m%d-%H%M}.ndjson"
    return Response(
        stream_with_context(generate()),
        mimetype="application/fhir+ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@bp.get("/exports/fhir-patient.ndjson")
@role_required(StaffRole.VIEWER)
def export_fhir_patients() -> ResponseReturnValue:
    """Download the members of the selected households as FHIR Patient resources, NDJSON (streamed)."""
    selection = household_selection()
    return ndjson_download("fhir-patient", lambda session: patient_lines(session, selection))


@bp.get("/exports/fhir-coverage.ndjson")
@role_required(StaffRole.VIEWER)
def export_fhir_coverage() -> ResponseReturnValue:
    """Download the members of the selected households' cover on a date as FHIR Coverage resources, NDJSON."""
    selection = household_selection()
    on = arg_date("on") or schemes_today(db(), selection.scheme_id, now=utcnow())
    return ndjson_download("fhir-coverage", lambda session: coverage_lines(session, selection, on))
