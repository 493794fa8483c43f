"""The reconciliation log (with CSV export), the payments list and one payment's detail."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Response, render_template, stream_with_context
from flask.typing import ResponseReturnValue

from extensions import db
from handlers.admin import bp
from handlers.admin.actions import render_payment
from handlers.admin.auth import role_required
from handlers.admin.params import page_args, page_cursor, payment_filters, query_without
from models.base import StaffRole, utcnow
from models.views.listings import (
    RECONCILIATION_CSV_HEADER,
    filter_choices,
    payments_list,
    reconciliation_log,
    reconciliation_rows,
    subsidised_payments,
)


@bp.get("/reconciliation")
@role_required(StaffRole.VIEWER)
def reconciliation() -> ResponseReturnValue:
    """Show the reconciliation log, filtered, one page at a time."""
    number, per_page = page_args()
    filters = payment_filters()
    page = reconciliation_log(db(), filters, number, per_page, page_cursor())
    return render_template(
        "admin/reconciliation.html",
        page=page,
        filters=filters,
        choices=filter_choices(db()),
        args=query_without("page"),
    )


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    # Cells starting with = + - @ are prefixed so a spreadsheet never runs them as formulas.
    csv.writer(buffer).writerow(["'" + c if c[:1] in {"=", "+", "-", "@"} and not _numeric(c) else c for c in cells])
    return buffer.getvalue()


def _numeric(cell: str) -> bool:
    return cell.lstrip("+-").replace(".", "", 1).isdigit()


@bp.get("/reconciliation.csv")
@role_required(StaffRole.VIEWER)
def reconciliation_csv() -> ResponseReturnValue:
    """Download every reconciliation event the filters select, as CSV (streamed)."""
    filters = payment_filters()

    def generate() -> Iterator[str]:
        # The streaming's own session: the view's is closed with its request before the body is sent.
        yield _csv_line(RECONCILIATION_CSV_HEADER)
        for cells in reconciliation_rows(db(), filters):
            yield _csv_line(cells)

    name = f"reconciliation-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.get("/payments")
@role_required(StaffRole.VIEWER)
def payments() -> ResponseReturnValue:
    """List payments (suspense and conflicts with ?status=UNMATCHED or CONFLICT), filtered, newest first."""
    number, per_page = page_args()
    filters = payment_filters()
    page = payments_list(db(), filters, number, per_page, page_cursor())
    return render_template(
        "admin/payments.html", page=page, filters=filters, choices=filter_choices(db()), args=query_without("page")
    )


@bp.get("/payments/to-refund-or-keep")
@role_required(StaffRole.VIEWER)
def to_refund_or_keep() -> ResponseReturnValue:
    """List the money fully subsidised households paid, to refund or keep (their funder pays their cover)."""
    number, per_page = page_args()
    page = subsidised_payments(db(), number, per_page, page_cursor())
    return render_template("admin/to_refund.html", page=page, args=query_without("page"))


@bp.get("/payments/<int:payment_id>")
@role_required(StaffRole.VIEWER)
def payment(payment_id: int) -> ResponseReturnValue:
    """Show one payment: timeline of events, evidence with raw payloads, allocations, ledger entries, receipts."""
    return render_payment(payment_id)
