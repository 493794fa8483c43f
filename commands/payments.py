"""`flask --app app payments …` and `reconcile …`: simulate, inspect, import statements and reconcile payments."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.progress import progress_printer
from commands.scoping import mutuelle_option, scope_to
from extensions import db, settings
from logs import mask_phone
from models.base import PaymentStatus, utcnow
from models.bulk import analyze
from models.imports.statements import (
    DEFAULT_FORMATS_FILE,
    MODELS_WRITTEN,
    FormatFileError,
    StatementError,
    StatementReport,
    import_statement,
    load_formats,
    statement_report,
)
from models.payments.intake import record_report
from models.payments.payment import Payment
from models.payments.sources import PayloadError, sandbox_report
from models.payments.statement import BreakKind
from models.reconciliation.batch import reconcile_batch, waiting_payments_query
from models.reconciliation.staff_actions import manual_match, undo_payment
from models.schemes.amounts import AmountError, currency_exponent, format_amount
from models.schemes.scheme import Scheme
from workers.reconcile import reconcile_after_commit


@click.group("payments")
def payments_group() -> None:
    """Payments: simulate, list, show, match, import statements."""


@click.group("reconcile")
def reconcile_group() -> None:
    """Reconciliation of received payments."""


def _default_currency() -> str:
    session = db()
    code = settings().DEFAULT_SCHEME
    query = select(Scheme.currency).order_by(Scheme.id).limit(1)
    if code:
        query = select(Scheme.currency).where(Scheme.code == code)
    return session.scalar(query) or "XOF"


@payments_group.command("simulate")
@click.option("--amount", required=True, help="Amount in the currency's unit, e.g. 3500 or 350.00.")
@click.option("--reference", default="", help="Account reference (payment request, household, member, network).")
@click.option("--phone", default="", help="Payer phone.")
@click.option("--txn-id", default="", help="Operator transaction id (default: a new SIM-… id).")
@click.option("--currency", default="", help="Currency (default: the scheme's).")
@with_appcontext
def simulate_command(amount: str, reference: str, phone: str, txn_id: str, currency: str) -> None:
    """Store a sandbox payment exactly as `POST /payments/sandbox` would, then enqueue its reconciliation."""
    if settings().is_production:
        raise click.ClickException("payments simulate is disabled in production")
    payload = {
        "txn_id": txn_id or f"SIM-{uuid.uuid4().hex[:10].upper()}",
        "amount": amount,
        "currency": (currency or _default_currency()).upper(),
        "phone": phone,
        "reference": reference,
    }
    session = db()
    try:
        report = sandbox_report(session, payload, json.dumps(payload))
    except PayloadError as exc:
        raise click.ClickException(str(exc)) from exc
    result = record_report(session, report)
    if result.needs_reconcile:
        reconcile_after_commit(session, [result.payment_id], settings())
    session.commit()
    click.echo(
        f"payment {result.payment_id} sandbox/{report.provider_txn_id} {report.amount} {report.currency} "
        f"payer {mask_phone(report.payer_phone) or '-'} ref {report.reference or '-'}: "
        f"{result.outcome.value} ({result.status.value})"
    )


def _line(payment: Payment) -> str:
    household = payment.household.household_no if payment.household is not None else "-"
    return (
        f"{payment.id}\t{payment.provider}/{payment.provider_txn_id}\t{payment.amount} {payment.currency}\t"
        f"{payment.status.value}\t{household}\t{payment.match_rule or '-'}\t{payment.status_reason or ''}"
    )


@payments_group.command("list")
@click.option("--status", "statuses", multiple=True, help="Only these statuses (repeatable).")
@click.option("--limit", default=50, show_default=True)
@mutuelle_option("Only the payments paid to this mutuelle.")
@with_appcontext
def list_command(statuses: tuple[str, ...], limit: int, mutuelle: str | None) -> None:
    """List payments, newest first: id, provider/txn, amount, status, household, rule, reason."""
    scope_to(mutuelle)
    query = select(Payment).order_by(Payment.id.desc()).limit(limit)
    if statuses:
        try:
            wanted = [PaymentStatus(s.upper()) for s in statuses]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--status") from exc
        query = query.where(Payment.status.in_(wanted))
    for payment in db().scalars(query):
        click.echo(_line(payment))


def _payment(ref: str) -> Payment:
    session = db()
    payment = None
    if ref.isdigit():
        payment = session.get(Payment, int(ref))
    if payment is None and "/" in ref:
        provider, _, txn = ref.partition("/")
        payment = session.scalar(select(Payment).where(Payment.provider == provider, Payment.provider_txn_id == txn))
    if payment is None:
        raise click.ClickException(f"no payment {ref}")
    return payment


@payments_group.command("show")
@click.argument("ref")
@mutuelle_option("Show it only if it was paid to this mutuelle.")
@with_appcontext
def show_command(ref: str, mutuelle: str | None) -> None:
    """Show a payment (id or provider/txn id) with its evidence and reconciliation log."""
    scope_to(mutuelle)
    payment = _payment(ref)
    click.echo(_line(payment))
    click.echo(
        f"payer {mask_phone(payment.payer_phone) or '-'}  reference {payment.account_reference or '-'}  "
        f"paid_at {payment.paid_at:%Y-%m-%d %H:%M} UTC  confirmed {'yes' if payment.confirmed else 'no'}  "
        f"confidence {payment.match_confidence if payment.match_confidence is not None else '-'}"
    )
    click.echo("evidence:")
    for evidence in payment.evidence:
        click.echo(f"  {evidence.received_at:%Y-%m-%d %H:%M:%S} {evidence.source.value} {evidence.route}")
    click.echo("events:")
    for event in payment.events:
        click.echo(
            f"  {event.created_at:%Y-%m-%d %H:%M:%S} {event.actor} {event.before_status or '-'} → "
            f"{event.after_status or '-'} {event.rule or ''} {event.note or ''}"
        )


@payments_group.command("match")
@click.argument("ref")
@click.option("--household", "household_no", default=None, help="Household number.")
@click.option("--network", "network_code", default=None, help="Network code.")
@click.option("--reason", required=True, help="Why (kept in the reconciliation log).")
@click.option("--actor", default="cli", show_default=True, help="Staff user recorded in the log.")
@with_appcontext
def match_command(ref: str, household_no: str | None, network_code: str | None, reason: str, actor: str) -> None:
    """Match a payment by hand to a household or network, and allocate it when confirmed."""
    payment_id = _payment(ref).id
    session = db()
    session.rollback()
    try:
        outcome = manual_match(session, payment_id, actor, reason, household_no, network_code)
    except (LookupError, ValueError) as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"payment {payment_id}: {outcome}")


def _undo(ref: str, reason: str, actor: str, refund_payer: bool) -> None:
    payment_id = _payment(ref).id
    session = db()
    session.rollback()
    try:
        outcome = undo_payment(session, payment_id, actor, reason, refund_payer=refund_payer)
    except (LookupError, ValueError) as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"payment {payment_id}: {outcome}")


@payments_group.command("reverse")
@click.argument("ref")
@click.option("--reason", required=True)
@click.option("--actor", default="cli", show_default=True)
@with_appcontext
def reverse_command(ref: str, reason: str, actor: str) -> None:
    """Reverse a payment the operator took back: undo exactly what it funded."""
    _undo(ref, reason, actor, refund_payer=False)


@payments_group.command("refund")
@click.argument("ref")
@click.option("--reason", required=True)
@click.option("--actor", default="cli", show_default=True)
@with_appcontext
def refund_command(ref: str, reason: str, actor: str) -> None:
    """Refund a payment to its payer: undo exactly what it funded."""
    _undo(ref, reason, actor, refund_payer=True)


@reconcile_group.command("run")
@click.option("--unmatched", is_flag=True, help="Also retry payments in suspense (UNMATCHED).")
@with_appcontext
def reconcile_run_command(unmatched: bool) -> None:
    """Reconcile now, in this process and in batches, every payment waiting (and UNMATCHED with --unmatched)."""
    session = db()
    waiting = set(session.scalars(waiting_payments_query(utcnow())))
    if unmatched:
        waiting.update(session.scalars(select(Payment.id).where(Payment.status == PaymentStatus.UNMATCHED)))
    ids = sorted(waiting)
    session.rollback()

    @contextlib.contextmanager
    def committing() -> Iterator[Session]:
        yield session
        session.commit()

    counts: Counter[str] = Counter()
    size = settings().RECONCILE_BATCH_SIZE
    for start in range(0, len(ids), size):
        counts.update(reconcile_batch(ids[start : start + size], committing, retry_unmatched=unmatched))
        if len(ids) > size:
            click.echo(f"… {min(start + size, len(ids))}/{len(ids)}", err=True)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to do"
    click.echo(f"reconciled {len(ids)} payment(s): {summary}")


def _money(amount: int | None, currency: str | None, exponents: dict[str, int]) -> str:
    if amount is None or not currency:
        return "-"
    if currency not in exponents:
        try:
            exponents[currency] = currency_exponent(db(), currency)
        except AmountError:
            exponents[currency] = 0
    return format_amount(amount, currency, exponents[currency])


def _echo_report(report: StatementReport, limit: int) -> None:
    """Print a statement's break report: counts, the breaks of each kind, the totals per day."""
    exponents: dict[str, int] = {}
    period = f"{report.period_start or '-'} → {report.period_end or '-'}"
    click.echo(
        f"statement {report.import_id}: {report.provider} {report.filename} (format {report.format}), imported "
        f"{report.imported_at:%Y-%m-%d %H:%M} UTC by {report.imported_by}"
    )
    click.echo(f"period {period}: {report.line_count} lines, {report.credit_count} credits")
    click.echo("breaks: " + ", ".join(f"{report.count(kind)} {kind.value}" for kind in BreakKind))
    for kind in BreakKind:
        rows = report.of_kind(kind)
        if not rows:
            continue
        click.echo(f"{kind.value}:")
        for row in rows[:limit]:
            where = f"line {row.line_no}" if row.line_no is not None else "no line"
            payment = f"payment {row.payment_id} {row.payment_status}" if row.payment_id is not None else "no payment"
            amounts = _money(row.statement_amount, row.currency, exponents)
            if kind in (BreakKind.AMOUNT_MISMATCH, BreakKind.MISSING_IN_STATEMENT):
                amounts = (
                    f"statement {_money(row.statement_amount, row.currency, exponents)}, "
                    f"system {_money(row.system_amount, row.currency, exponents)}"
                )
            click.echo(f"  {where}\t{row.provider_txn_id or '-'}\t{amounts}\t{payment}\t{row.detail or ''}")
        if len(rows) > limit:
            click.echo(f"  … and {len(rows) - limit} more (--limit)")
    click.echo("credits per day (UTC), statement vs system before the import:")
    for total in report.totals:
        click.echo(
            f"  {total.day} {total.currency}\tstatement {total.statement_count} = "
            f"{_money(total.statement_amount, total.currency, exponents)}\tsystem {total.system_count} = "
            f"{_money(total.system_amount, total.currency, exponents)}\tdifference "
            f"{'-' if total.difference < 0 else ''}{_money(abs(total.difference), total.currency, exponents)}"
        )


@payments_group.command("import-statement")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--provider", required=True, help="The operator whose statement it is: wave, orange_money, mpesa, sandbox…"
)
@click.option("--format", "format_name", default=None, help="Column mapping by name (default: found from the header).")
@click.option(
    "--account",
    default=None,
    help="The account the statement is of (merchant number, paybill): its credits go to that account's mutuelle.",
)
@click.option("--actor", default="cli", show_default=True, help="Staff user recorded on the import.")
@click.option("--limit", default=50, show_default=True, help="Breaks printed per kind.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@with_appcontext
def import_statement_command(
    file: Path, provider: str, format_name: str | None, account: str | None, actor: str, limit: int, quiet: bool
) -> None:
    """Import an operator statement, confirm and create its payments, and print the break report.

    The file is read in two passes, never whole: every line is checked first (nothing is written if one is bad),
    then the lines are written in batches.
    """
    session = db()
    session.rollback()
    progress = progress_printer(
        {"read": f"{file.name}: lines checked (pass 1 of 2)", "stored": f"{file.name}: lines written (pass 2 of 2)"},
        quiet=quiet,
    )
    try:
        formats = load_formats(settings().STATEMENT_FORMATS_FILE or DEFAULT_FORMATS_FILE)
        with file.open("rb") as handle:
            result = import_statement(
                session, provider, file.name, handle, actor, format_name, formats, progress=progress, account=account
            )
    except (StatementError, FormatFileError) as exc:
        session.rollback()
        raise click.ClickException(f"{file.name}: nothing imported\n{exc}") from exc
    reconcile_after_commit(session, result.needs_reconcile, settings())
    session.commit()
    if result.already_imported:
        click.echo(f"{file.name}: already imported as statement {result.report.import_id}; nothing new")
        return
    analyze(session, MODELS_WRITTEN)
    _echo_report(result.report, limit)


@payments_group.command("statement-report")
@click.argument("import_id", type=int)
@click.option("--limit", default=50, show_default=True, help="Breaks printed per kind.")
@with_appcontext
def statement_report_command(import_id: int, limit: int) -> None:
    """Print the break report of an imported statement."""
    try:
        report = statement_report(db(), import_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_report(report, limit)
