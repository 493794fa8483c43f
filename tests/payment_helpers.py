"""Helpers for payment tests: fixture payloads, Wave signatures, posting through the HTTP contract."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from models.access.devices import issue_device_key
from models.access.tables import CollectionDevice
from models.base import EvidenceSource
from models.payments.intake import Report, record_report
from models.payments.payment import Payment, PaymentEvidence, UnparsedForward
from models.payments.rejections import RejectedCallback
from redis_keys import reconcile_waiting_key
from tests.backends import RECONCILE_QUEUE, RQ_QUEUE
from tests.conftest import CALLBACK_TOKEN, DARAJA_TOKEN, FIXTURES
from workers.reconcile import DRAIN_FUNC

WAVE_SECRET = "test-wave-webhook-secret"
PAID_AT = datetime(2026, 11, 20, 11, 2, 44)


def store_report(
    session: Session,
    *,
    amount: int,
    txn: str,
    reference: str | None,
    payer: str | None,
    confirms: bool = True,
    currency: str = "XOF",
) -> Payment:
    """Store a payment as intake does (a Wave webhook, or an Orange Money forwarded text) and commit."""
    report = Report(
        provider="wave" if confirms else "orange_money",
        provider_txn_id=txn,
        amount=amount,
        currency=currency,
        payer_phone=payer,
        reference=reference,
        paid_at=PAID_AT,
        source=EvidenceSource.WEBHOOK if confirms else EvidenceSource.SMS_FORWARD,
        route="test",
        raw=json.dumps([txn, amount, reference, payer]),
        confirms=confirms,
    )
    result = record_report(session, report)
    session.commit()
    payment = session.get(Payment, result.payment_id)
    assert payment is not None
    return payment


def fixture_payload(name: str) -> dict[str, Any]:
    """Return a fixture JSON payload without its `_note` key."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    data.pop("_note", None)
    return data


def json_body(response: TestResponse) -> dict[str, Any]:
    """Return a response's JSON object (the test fails when the body is not one)."""
    body = response.get_json(silent=True)
    assert isinstance(body, dict), response.get_data(as_text=True)
    return body


def operator_lines() -> list[tuple[str, str]]:
    """Return (sender, text) for every line of operator_sms.txt."""
    lines = []
    for line in (FIXTURES / "operator_sms.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            sender, text = line.split("\t", 1)
            lines.append((sender, text))
    return lines


def wave_signature(
    body: bytes, secret: str = WAVE_SECRET, at: int | None = None, extra_v1: tuple[str, ...] = ()
) -> str:
    """Return a `Wave-Signature` header for the body."""
    t = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), t.encode() + body, hashlib.sha256).hexdigest()
    return ",".join([f"t={t}", *(f"v1={v}" for v in extra_v1), f"v1={digest}"])


def post_wave(
    client: FlaskClient, event: dict[str, Any], headers: dict[str, str] | None = None, sign: bool = True
) -> TestResponse:
    """Post a Wave event as Wave does (signed with the test secret unless told otherwise)."""
    body = json.dumps(event).encode()
    all_headers = {"Content-Type": "application/json"}
    if sign:
        all_headers["Wave-Signature"] = wave_signature(body)
    all_headers.update(headers or {})
    return client.post("/payments/wave", data=body, headers=all_headers)


DEFAULT = "default"
# Each registered test device's key (the plain key is shown once; tests keep it here), by device id.
DEVICE_KEYS: dict[str, str] = {}


def post_json(client: FlaskClient, path: str, payload: Any, token: str | None = DEFAULT) -> TestResponse:
    """Post JSON to a callback route with its source's token (Daraja's own on its URLs, else AT's)."""
    if token == DEFAULT:
        token = DARAJA_TOKEN if path.startswith("/payments/daraja") else CALLBACK_TOKEN
    url = path + (f"?token={token}" if token is not None else "")
    return client.post(url, data=json.dumps(payload), headers={"Content-Type": "application/json"})


def forward(
    client: FlaskClient, sender: str, text: str, device: str = "collector-1", key: str | None = DEFAULT, **extra: Any
) -> TestResponse:
    """Post a forwarded operator text from a collection device with its own key (`Authorization: Bearer`)."""
    payload = {"sender": sender, "text": text, "received_at": "2026-11-20T11:03:00Z", "device": device, **extra}
    presented = DEVICE_KEYS.get(device) if key == DEFAULT else key
    headers = {"Content-Type": "application/json"}
    if presented is not None:
        headers["Authorization"] = f"Bearer {presented}"
    return client.post("/payments/sms-forward", data=json.dumps(payload), headers=headers)


def add_device(
    session: Session, key: str = "collector-1", trusted: bool = False, senders: list[str] | None = None
) -> CollectionDevice:
    """Register a collection device with its own key (kept in DEVICE_KEYS for `forward`)."""
    device = CollectionDevice(device_key=key, label=f"phone {key}", operator_senders=senders or [], trusted=trusted)
    session.add(device)
    session.flush()
    DEVICE_KEYS[key] = issue_device_key(session, device)
    session.commit()
    return device


def payments(session: Session) -> list[Payment]:
    """Return every stored payment (fresh)."""
    session.commit()
    return list(session.scalars(select(Payment).order_by(Payment.id).execution_options(populate_existing=True)))


def evidence_count(session: Session, payment_id: int | None = None) -> int:
    """Return how many evidence rows are stored (for one payment, or all)."""
    session.commit()
    query = select(func.count(PaymentEvidence.id))
    if payment_id is not None:
        query = query.where(PaymentEvidence.payment_id == payment_id)
    return int(session.scalar(query) or 0)


def rejected(session: Session) -> list[RejectedCallback]:
    """Return every refused callback kept for review (fresh)."""
    session.commit()
    return list(session.scalars(select(RejectedCallback).order_by(RejectedCallback.id)))


def unparsed(session: Session) -> list[UnparsedForward]:
    """Return every text kept for review."""
    session.commit()
    return list(session.scalars(select(UnparsedForward).order_by(UnparsedForward.id)))


def queued_job_ids(redis_url: str, queue: str = RQ_QUEUE) -> list[str]:
    """Return the ids of the jobs waiting on a queue."""
    return list(Queue(queue, connection=Redis.from_url(redis_url)).job_ids)


def waiting_for_reconcile(redis_url: str) -> list[int]:
    """Return the ids of the payments waiting for a drain, checking that a drain job is queued for them."""
    connection = Redis.from_url(redis_url)
    ids = sorted(int(raw) for raw in connection.smembers(reconcile_waiting_key()))
    if ids:
        assert any(job.func_name == DRAIN_FUNC for job in Queue(RECONCILE_QUEUE, connection=connection).jobs)
    return ids
