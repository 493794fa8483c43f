"""200 concurrent deliveries of one transaction against a real threaded server on PostgreSQL → one payment."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from models.base import PaymentStatus
from models.db import get_engine
from tests import backends
from tests.conftest import make_test_app
from tests.payment_helpers import (
    DEVICE_KEYS,
    WAVE_SECRET,
    add_device,
    evidence_count,
    fixture_payload,
    payments,
    wave_signature,
)

WAVE_SMS = "Vous avez reçu 3.500F de Moussa Diop (77 123 45 67). Réf. T_4ZQ7WX2KX. Solde: 48.250F"


@pytest.fixture
def server(pg_url: str, redis_url: str) -> Iterator[str]:
    """Serve the app on PostgreSQL from a real threaded HTTP server; yield its base URL."""
    yield from _serve(pg_url, redis_url)


def _serve(url: str, redis_url: str) -> Iterator[str]:
    app = make_test_app(url, redis_url, WAVE_WEBHOOK_SECRET=WAVE_SECRET)
    port = backends.free_port()
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    thread.join(5)


@pytest.fixture
def pg_session(pg_url: str) -> Iterator[Session]:
    """Yield a session on the PostgreSQL test database."""
    with Session(get_engine(pg_url), expire_on_commit=False) as s:
        yield s


def test_200_concurrent_webhooks_make_one_payment(server: str, pg_session: Session) -> None:
    body = json.dumps(fixture_payload("wave_merchant_payment_received.json")).encode()

    def post(_i: int) -> tuple[int, str]:
        response = requests.post(
            f"{server}/payments/wave", data=body, headers={"Wave-Signature": wave_signature(body)}, timeout=60
        )
        return response.status_code, response.json().get("outcome", "")

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(post, range(200)))

    assert {code for code, _ in results} == {200}
    outcomes = [outcome for _, outcome in results]
    assert outcomes.count("created") == 1
    assert outcomes.count("repeat") == 199
    [payment] = payments(pg_session)
    assert payment.status == PaymentStatus.RECEIVED
    assert evidence_count(pg_session) == 1


def test_concurrent_webhooks_and_forwarded_texts_make_one_payment(server: str, pg_session: Session) -> None:
    add_device(pg_session)
    body = json.dumps(fixture_payload("wave_merchant_payment_received.json")).encode()
    forwarded = json.dumps(
        {"sender": "Wave", "text": WAVE_SMS, "received_at": "2026-11-20T11:03:00Z", "device": "collector-1"}
    )

    def post(i: int) -> int:
        if i % 2:
            return requests.post(
                f"{server}/payments/sms-forward",
                data=forwarded,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {DEVICE_KEYS['collector-1']}"},
                timeout=60,
            ).status_code
        return requests.post(
            f"{server}/payments/wave", data=body, headers={"Wave-Signature": wave_signature(body)}, timeout=60
        ).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(post, range(60)))

    assert set(codes) == {200}
    [payment] = payments(pg_session)
    assert (payment.status, payment.confirmed) == (PaymentStatus.RECEIVED, True)
    assert evidence_count(pg_session) == 2


def test_concurrent_webhooks_on_sqlite_make_one_payment(sqlite_url: str, redis_url: str) -> None:
    """SQLite (make run): concurrent writers queue on BEGIN IMMEDIATE instead of failing."""
    body = json.dumps(fixture_payload("wave_merchant_payment_received.json")).encode()
    for base in _serve(sqlite_url, redis_url):

        def post(_i: int, base: str = base) -> int:
            headers = {"Wave-Signature": wave_signature(body)}
            return requests.post(f"{base}/payments/wave", data=body, headers=headers, timeout=60).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(post, range(40)))
        assert set(codes) == {200}
        with Session(get_engine(sqlite_url)) as session:
            assert len(payments(session)) == 1
            assert evidence_count(session) == 1
