"""`flask --app app payments …` and `reconcile …`: simulate, inspect and reconcile payments."""

from __future__ import annotations

import json
import uuid

import click
from flask.cli import with_appcontext
from redis.exceptions import RedisError
from sqlalchemy import select

from extensions import db, settings
from logs import mask_phone
from models.payment import Payment
from models.payment_intake import record_report
from models.payment_sources import PayloadError, sandbox_report
from models.scheme import Scheme
from workers.connections import get_queue
from workers.reconcile import enqueue_reconcile


@click.group("payments")
def payments_group() -> None:
    """Payments: simulate, list, show, match."""


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


def _enqueue(payment_id: int) -> None:
    try:
        enqueue_reconcile(get_queue(settings().REDIS_URL, settings().RQ_QUEUE), payment_id)
    except RedisError as exc:
        click.echo(f"warning: not enqueued ({exc}); `reconcile run` or the sweeper will pick it up", err=True)


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
    session.commit()
    if result.needs_reconcile:
        _enqueue(result.payment_id)
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
