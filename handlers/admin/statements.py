"""Operator statement upload, the break report of an import, and the list of past imports."""

from __future__ import annotations

import logging

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from extensions import db, settings
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.params import page_args
from handlers.admin.texts import gettext
from models.base import StaffRole
from models.bulk import analyze
from models.imports.statements import (
    DEFAULT_FORMATS_FILE,
    MODELS_WRITTEN,
    FormatFileError,
    StatementError,
    StatementFormat,
    import_statement,
    load_formats,
    statement_report,
)
from models.inputs import InputError, check_text
from models.payments.statement import BreakKind, StatementImport
from models.schemes.mutuelle import ACCOUNT_MAX
from workers.reconcile import reconcile_after_commit

log = logging.getLogger(__name__)


def _formats() -> dict[str, StatementFormat]:
    return load_formats(settings().STATEMENT_FORMATS_FILE or DEFAULT_FORMATS_FILE)


def _providers() -> list[str]:
    return sorted({provider for fmt in _formats().values() for provider in fmt.providers})


def _upload_page(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    number, per_page = page_args()
    imports = list(
        db().scalars(
            select(StatementImport)
            .order_by(StatementImport.id.desc())
            .limit(per_page + 1)
            .offset((number - 1) * per_page)
        )
    )
    return (
        render_template(
            "admin/statements.html",
            imports=imports[:per_page],
            number=number,
            has_next=len(imports) > per_page,
            providers=_providers(),
            error=error,
            chosen=request.form.get("provider", ""),
            account=request.form.get("account", ""),
            max_bytes=settings().UPLOAD_MAX_BYTES,
        ),
        status,
    )


def _too_large() -> str:
    return gettext("The file is larger than %(size)s bytes.", size=f"{settings().UPLOAD_MAX_BYTES:,}")


@bp.get("/statements")
@role_required(StaffRole.VIEWER)
def statements() -> ResponseReturnValue:
    """List past statement imports, with the upload form for operators."""
    return _upload_page()


@bp.post("/statements")
@role_required(StaffRole.OPERATOR)
def upload_statement() -> ResponseReturnValue:
    """Import an uploaded operator statement, enqueue what it needs reconciled, then show its break report."""
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        return _upload_page(_too_large(), 413)
    provider = request.form.get("provider", "").strip().lower()
    if provider not in _providers():
        return _upload_page(gettext("Choose the operator the statement comes from."), 400)
    if upload is None or not upload.filename:
        return _upload_page(gettext("Choose a statement file."), 400)
    data = upload.read(settings().UPLOAD_MAX_BYTES + 1)
    if len(data) > settings().UPLOAD_MAX_BYTES:
        return _upload_page(_too_large(), 413)
    session = db()
    session.rollback()
    try:
        account = check_text(request.form.get("account"), "account", ACCOUNT_MAX) or None
        result = import_statement(
            session, provider, upload.filename, data, imported_by=current_user.username, account=account
        )
    except (StatementError, FormatFileError, InputError) as exc:
        session.rollback()
        return _upload_page(gettext("%(file)s: nothing imported. %(error)s", file=upload.filename, error=exc), 400)
    reconcile_after_commit(session, result.needs_reconcile, settings())
    session.commit()
    if not result.already_imported:
        analyze(session, MODELS_WRITTEN)
    import_id = result.report.import_id
    log.info("admin: statement %s imported by %s (%s)", import_id, current_user.username, provider)
    return redirect(url_for("admin.statement", import_id=import_id, again="1" if result.already_imported else None))


@bp.get("/statements/<int:import_id>")
@role_required(StaffRole.VIEWER)
def statement(import_id: int) -> ResponseReturnValue:
    """Show a statement's break report: breaks by kind and credits per day, statement vs system."""
    try:
        report = statement_report(db(), import_id)
    except LookupError:
        abort(404)
    return render_template(
        "admin/statement.html", r=report, kinds=list(BreakKind), again=request.args.get("again") == "1"
    )
