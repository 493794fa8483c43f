"""Outbound SMS: text measurement, templates, the message log, the AT transport at the HTTP level, RQ jobs."""

from __future__ import annotations

import json
import math
import re
import subprocess
import tomllib
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from urllib3.exceptions import ProtocolError

from models.base import Language, MessageStatus
from models.members.household import Household
from models.messaging.message import Message
from models.messaging.outbox import OutboxNotAttached, attach_dispatch, compose, queue_messages, send_sms
from models.payments.references import LANGUAGE_FALLBACKS
from models.schemes.amounts import Amount, format_amount
from models.schemes.mutuelle import home_mutuelle
from models.schemes.scheme_file import load_scheme, parse_scheme_file
from models.texts.i18n import LANGUAGES, SMS_TEMPLATES, TemplateError, placeholders, render, translations
from models.texts.sms_text import GSM7, UCS2, is_gsm7, measure, segments
from redis_keys import drain_job_id, sms_group_job_id, sms_job_id
from tests.backends import RECONCILE_QUEUE, RQ_QUEUE
from tests.conftest import FIXTURES, ROOT
from workers import runtime
from workers import sms as sms_jobs
from workers.sms import deliver, requeue_stuck
from workers.sms_queue import rq_dispatch
from workers.sms_transport import AfricasTalkingTransport, ConsoleTransport, TransientSendError

AT_SMS_URL = "https://api.sandbox.africastalking.com/version1/messaging"
AT_API_KEY = "at-test-api-key-0123456789"
PHONE = "+221771234567"
BLACKLISTED = "+221761234500"
VALUES: dict[str, Any] = {  # a template's values, as `send_sms(**values)` takes them
    "reference": "4827316",
    "amount": "3500 F",
    "how_to_pay": "Wave 77 000 11 22",
    "household_no": "THN-000123",
    "until": date(2026, 12, 31),
    "due": "3500 F",
    "ussd_code": "*384*123#",
    # Replies to SMS commands
    "member_no": "THN-000123-01",
    "first_name": "Aminata",
    "birth_year": 1985,
    "status": "LAPSED",
    "attempts": 3,
    "time": "10:45",
    "credit": "0 F",
    "language_name": "Wolof",
    "network": "RES-THIES-NORD",
    "households": 12,
    "remaining": "1500 F",
    "waiting": date(2026, 12, 19),
    "next": "3500 F",
    "next_due": date(2026, 12, 31),
    "choices": "THN-000123 (Aminata), THN-000912 (Ndeye Fatou)",
    # A collector's evening summary
    "day": date(2026, 12, 7),
    "submitted": 6,
    "validated": 4,
    "pending": 2,
    "to_fix": 1,
    "fixes": "Sow Mariama",
}


def at_answer(*recipients: dict[str, object]) -> dict[str, object]:
    """Return an AT `SMS.send` JSON answer for these recipients."""
    return {"SMSMessageData": {"Message": f"Sent to {len(recipients)}/1", "Recipients": list(recipients)}}


FIXTURE_ANSWER = json.loads((FIXTURES / "at_sms_send_response.json").read_text())
SUCCESS = FIXTURE_ANSWER["SMSMessageData"]["Recipients"][0]
BLACKLIST = FIXTURE_ANSWER["SMSMessageData"]["Recipients"][1]


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    """Yield the default RQ queue on the test's Redis."""
    connection = Redis.from_url(redis_url)
    yield Queue(RQ_QUEUE, connection=connection)
    connection.close()


@pytest.fixture
def outbox(session: Session, redis_url: str, queue: Queue) -> Session:
    """Return the test session wired like the app's: queued SMS are enqueued after commit."""
    attach_dispatch(session, rq_dispatch(redis_url, RQ_QUEUE))
    return session


@pytest.fixture
def at() -> AfricasTalkingTransport:
    """Return the real AT transport on the sandbox."""
    return AfricasTalkingTransport("sandbox", AT_API_KEY, timeout_seconds=10)


@pytest.fixture
def mocked_at() -> Iterator[responses.RequestsMock]:
    """Intercept HTTP to AT (and only AT) for the real SDK."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def queue_one(session: Session, to: str = PHONE, template: str = "help", **kwargs: Any) -> Message:
    """Queue one SMS and commit."""
    values = {name: VALUES[name] for name in placeholders(template)}
    message = send_sms(session, to, template, **{**values, **kwargs})
    session.commit()
    return message


def reload(session: Session, message: Message) -> Message:
    """Return the message as stored now (ending the session's read snapshot first)."""
    session.commit()
    fresh = session.get(Message, message.id, populate_existing=True)
    assert fresh is not None
    return fresh


def no_sleep(_seconds: float) -> None:
    """Skip backoff waits in tests."""


# ---------------------------------------------------------------- text measurement


@pytest.mark.parametrize(
    ("text", "encoding", "length", "parts"),
    [
        ("", GSM7, 0, 1),
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),
        ("a" * 306, GSM7, 306, 2),
        ("a" * 307, GSM7, 307, 3),
        ("é è à ù ì ò Ç É ñ ü", GSM7, 19, 1),  # all in the GSM basic set
        ("é" * 160, GSM7, 160, 1),
        ("ê", UCS2, 1, 1),  # not GSM: ê ô â ç
        ("Votre fenêtre", UCS2, 13, 1),
        ("ç" * 70, UCS2, 70, 1),
        ("ô" * 71, UCS2, 71, 2),
        ("â" * 134, UCS2, 134, 2),
        ("â" * 135, UCS2, 135, 3),
        ("Jërëjëf", UCS2, 7, 1),  # Wolof ë
        ("ŋ" * 10, UCS2, 10, 1),
        ("បានទទួល", UCS2, 7, 1),  # Khmer
        ("ក" * 71, UCS2, 71, 2),
        ("€" * 80, GSM7, 160, 1),  # extension characters count double
        ("€" * 81, GSM7, 162, 2),
        ("[]{}~^|\\", GSM7, 16, 1),
        ("a" * 152 + "€" * 77, GSM7, 306, 3),  # an escape pair is never split across parts
        ("🙂" * 35, UCS2, 70, 1),  # outside the BMP: two UTF-16 units
        ("🙂" * 36, UCS2, 72, 2),
    ],
)
def test_encoding_and_segments(text: str, encoding: str, length: int, parts: int) -> None:
    shape = measure(text)
    assert (shape.encoding, shape.length, shape.segments) == (encoding, length, parts)
    assert segments(text) == parts
    assert is_gsm7(text) is (encoding == GSM7)


@given(st.text(max_size=500))
def test_segments_hold_the_text(text: str) -> None:
    shape = measure(text)
    single, per_part = (160, 153) if shape.encoding == GSM7 else (70, 67)
    if shape.length <= single:
        assert shape.segments == 1
    else:
        assert math.ceil(shape.length / per_part) <= shape.segments <= math.ceil(shape.length / (per_part - 1))


# ---------------------------------------------------------------- templates


def test_every_template_is_translated_with_the_same_placeholders() -> None:
    for language in LANGUAGES:
        catalogue = translations(language)
        for key, english in SMS_TEMPLATES.items():
            text = str(catalogue.pgettext(key, english))
            assert text, (language, key)
            if language != "en":
                assert text != english, f"{key} not translated to {language}"
            assert set(re.findall(r"%\((\w+)\)s", text)) == placeholders(key), (language, key)


@pytest.mark.parametrize("language", LANGUAGES)
def test_templates_fit_one_sms_with_typical_values(language: str) -> None:
    for key in SMS_TEMPLATES:
        body = render(key, language, VALUES)
        shape = measure(body)
        if language == "km":  # Khmer is UCS-2 (70 characters): a reminder may take two
            assert shape.segments <= 2, (key, body)
        else:
            assert (shape.encoding, shape.segments) == (GSM7, 1), (key, body)


def worst_values(language: str) -> dict[str, object]:
    """Return the longest realistic value of every placeholder, written as the language's members read it.

    Amounts of six figures in the scheme's currency (XOF for fr/wo/en, riel for km), the longest household
    number format, a long first name, and the longest first instruction of the shipped schemes' channels.
    """
    currency = "KHR" if language == "km" else "XOF"
    money = Amount(999_999, currency, 0)
    instructions = []
    for path in sorted((ROOT / "schemes").glob("*.toml")):
        scheme = tomllib.loads(path.read_text(encoding="utf-8"))
        first = (scheme.get("channels") or [{}])[0]
        texts = first.get("instructions") or {}
        # Khmer is read in the scheme that speaks it (SKY), not in a French one's instructions.
        other = "" if language == "km" else next(iter(texts.values()), "")
        text = texts.get(language) or texts.get(LANGUAGE_FALLBACKS.get(language, "")) or other
        if text:
            amount = format_amount(money.value, money.currency, money.exponent, language)
            instructions.append(text.format(account=first["account"], reference="4827316", amount=amount))
    household_no = "SN-MRL-0001234"
    return {
        "reference": "4827316",
        "amount": money,
        "next": money,
        "due": money,
        "credit": money,
        "remaining": Amount(99_999_999, currency, 0),
        "how_to_pay": max(instructions, key=len),
        "household_no": household_no,
        "until": date(2027, 12, 31),
        "waiting": date(2027, 12, 31),
        "next_due": date(2027, 12, 31),
        "ussd_code": "*384*1234#",
        "member_no": f"{household_no}-12",
        "first_name": "Ndeye Fatoumata Bint",
        "birth_year": 1985,
        "status": "SUSPENDED",
        "attempts": 3,
        "time": "10:45",
        "language_name": "Français",
        "network": "reseau-thies-nord-1",
        "households": 250,
        # A phone two households share (their heads' first names cut as the reply cuts them).
        "choices": f"{household_no} (Ndeye Fatoum), SN-MRL-0001235 (Ndeye Fatoum)",
        # A collector's summary: the forms to correct are named only when that fits (else the counts alone).
        "day": date(2027, 12, 31),
        "submitted": 999,
        "validated": 999,
        "pending": 999,
        "to_fix": 99,
        "fixes": "Ndiaye Ndeye Fatoum",
    }


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("key", sorted(SMS_TEMPLATES))
def test_every_template_fits_its_budget_with_worst_case_values(language: str, key: str) -> None:
    """fr/wo/en: one GSM-7 segment (no narrow no-break space turning it into UCS-2); km: two UCS-2 at most."""
    body = render(key, language, worst_values(language))
    shape = measure(body)
    if language == "km":
        assert shape.segments <= 2, (shape, body)
    elif key == "language_set":  # a language's own name ("Français") may be outside GSM-7: still one SMS
        assert shape.segments == 1, (shape, body)
    else:
        assert (shape.encoding, shape.segments) == (GSM7, 1), (shape, body)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "fr",
            "Paiement de 3500 F enregistré pour THN-000123. Couvert jusqu'au 31/12/2026. "
            "Prochain paiement : 3500 F avant le 31/12/2026.",
        ),
        (
            "en",
            "Payment of 3500 F received for THN-000123. Covered until 31/12/2026. "
            "Next payment: 3500 F before 31/12/2026.",
        ),
        (
            "wo",
            "Jot nanu 3500 F ngir THN-000123. Am na couverture ba 31/12/2026. Fey bu ci topp: 3500 F balaa 31/12/2026.",
        ),
        ("km", "បានទទួល 3500 F THN-000123។ ធានារ៉ាប់រងដល់ 31/12/2026។ ការបង់បន្ទាប់ 3500 F មុន 31/12/2026។"),
    ],
)
def test_receipt_reads_in_each_language(language: str, expected: str) -> None:
    assert render("receipt_covered", language, VALUES) == expected


def test_missing_value_and_unknown_template_are_refused() -> None:
    with pytest.raises(TemplateError, match="until"):
        render("receipt_covered", "fr", {"amount": "1", "household_no": "X"})
    with pytest.raises(TemplateError, match="nope"):
        render("nope", "fr", {})


def test_compiled_catalogue_is_used_when_fresh(tmp_path: Path) -> None:
    mo = ROOT / "locales" / "wo" / "LC_MESSAGES" / "messages.mo"
    assert mo.exists(), "conftest compiles the catalogues"
    translations.cache_clear()
    assert "Bindal STATUT" in render("help", "wo", VALUES)


# ---------------------------------------------------------------- the message log


def make_household(
    session: Session, language: Language = Language.WO, scheme_file: str = "cmu-thies.toml"
) -> Household:
    """Return a household of a shipped scheme."""
    scheme = load_scheme(session, parse_scheme_file(ROOT / "schemes" / scheme_file))
    household = Household(
        household_no=f"HH-{scheme.code}",
        scheme_id=scheme.id,
        mutuelle_id=home_mutuelle(session, scheme.id, None).id,
        subsidy_category="standard" if scheme.code == "cmu-thies" else scheme.subsidy_categories[0].code,
        plan=scheme.plans[0].code,
        language=language,
        enrolled_on=date(2026, 1, 1),
    )
    session.add(household)
    session.flush()
    return household


def test_send_sms_stores_a_queued_message_and_enqueues_after_commit(outbox: Session, queue: Queue) -> None:
    message = send_sms(outbox, PHONE, "reminder_before", language="fr", **VALUES)
    assert message.status is MessageStatus.QUEUED
    assert queue.job_ids == []  # nothing is enqueued before the commit
    outbox.commit()
    assert queue.job_ids == [sms_job_id(message.id)]
    stored = reload(outbox, message)
    assert stored.body.startswith("Ménage THN-000123 : couvert jusqu'au 31/12/2026. Prochain paiement : 3500 F")
    assert (stored.encoding, stored.segments, stored.language, stored.template) == (GSM7, 1, "fr", "reminder_before")


def test_rollback_sends_nothing(outbox: Session, queue: Queue) -> None:
    send_sms(outbox, PHONE, "help", ussd_code="*1#")
    outbox.rollback()
    outbox.commit()
    assert queue.job_ids == []
    assert outbox.scalar(select(func.count()).select_from(Message)) == 0


def test_language_comes_from_the_household_then_the_scheme(outbox: Session) -> None:
    household = make_household(outbox, Language.WO)
    assert send_sms(outbox, PHONE, "help", household=household, ussd_code="*1#").language == "wo"
    assert send_sms(outbox, PHONE, "help", household=household, language="km", ussd_code="*1#").language == "km"
    assert send_sms(outbox, PHONE, "help", language="xx", ussd_code="*1#").language == "fr"
    assert send_sms(outbox, PHONE, "help", ussd_code="*1#").language == "fr"
    message = send_sms(outbox, PHONE, "receipt_review", household=household, amount="3500 F")
    assert (message.body, message.household_id) == (
        "Jot nanu sa fey bu 3500 F. Ñu ngi koy seet, dinanu la yonne SMS.",
        household.id,
    )


def test_dedupe_key_makes_send_sms_idempotent(outbox: Session, queue: Queue) -> None:
    first = send_sms(outbox, PHONE, "receipt_review", dedupe_key="receipt:42:review", amount="3500 F")
    outbox.commit()
    again = send_sms(outbox, PHONE, "receipt_review", dedupe_key="receipt:42:review", amount="3500 F")
    outbox.commit()
    assert again.id == first.id
    assert outbox.scalar(select(func.count()).select_from(Message)) == 1
    assert queue.job_ids == [sms_job_id(first.id)]


def test_a_session_without_dispatch_refuses_to_queue(session: Session) -> None:
    with pytest.raises(OutboxNotAttached):
        send_sms(session, PHONE, "help", ussd_code="*1#")


def test_redis_down_at_commit_keeps_the_message_for_the_sweeper(session: Session, queue: Queue) -> None:
    attach_dispatch(session, rq_dispatch("redis://127.0.0.1:1/0", RQ_QUEUE))
    message = queue_one(session)  # the commit succeeds; the enqueue failure is logged
    assert reload(session, message).status is MessageStatus.QUEUED
    assert requeue_stuck(session, queue, older_than=timedelta(0)) == [sms_job_id(message.id)]
    # A job already there is not enqueued twice.
    assert requeue_stuck(session, queue, older_than=timedelta(0)) == []


def _columns(message: Message) -> dict[str, object]:
    """Return what a queued message stores, its id and timestamps left out."""
    skip = {"id", "created_at", "updated_at"}
    return {c.key: getattr(message, c.key) for c in Message.__table__.columns if c.key not in skip}


def test_queued_rows_are_the_rows_send_sms_writes_and_are_enqueued_after_commit(outbox: Session, queue: Queue) -> None:
    household = make_household(outbox, Language.WO)
    text = compose("receipt_review", household=household, amount="3500 F")
    queue_messages(outbox, [text.row(PHONE, "receipt:7:review"), text.row("+221770000002", "receipt:7:review:1")])
    assert queue.job_ids == []  # nothing is enqueued before the commit
    outbox.commit()
    first, second = outbox.scalars(select(Message).order_by(Message.id)).all()
    assert queue.job_ids == [sms_group_job_id(first.id, 2)]
    one = send_sms(outbox, PHONE, "receipt_review", household=household, dedupe_key="k", amount="3500 F")
    outbox.commit()
    assert _columns(first) == {**_columns(one), "dedupe_key": "receipt:7:review"}
    assert (second.phone, second.body, second.attempts) == ("+221770000002", one.body, 0)
    assert first.created_at is not None and first.updated_at is not None


def test_queued_rows_rolled_back_are_never_sent(outbox: Session, queue: Queue) -> None:
    row = compose("help", ussd_code="*1#").row(PHONE)
    queue_messages(outbox, [row])
    outbox.rollback()
    with outbox.begin_nested():  # in a savepoint that rolls back alone
        queue_messages(outbox, [row])
        outbox.flush()
        outbox.get_nested_transaction().rollback()  # type: ignore[union-attr]
    outbox.commit()
    assert queue.job_ids == []
    assert outbox.scalar(select(func.count()).select_from(Message)) == 0


def test_a_queued_row_whose_key_is_taken_fails_as_an_integrity_error(outbox: Session, queue: Queue) -> None:
    send_sms(outbox, PHONE, "help", dedupe_key="once", ussd_code="*1#")
    outbox.commit()
    with pytest.raises(IntegrityError):
        queue_messages(outbox, [compose("help", ussd_code="*1#").row(PHONE, "once")])
        outbox.flush()
    outbox.rollback()
    outbox.commit()
    assert outbox.scalar(select(func.count()).select_from(Message)) == 1


# ---------------------------------------------------------------- AT transport (real SDK, HTTP mocked)


def test_success_stores_the_provider_id_status_and_cost(
    outbox: Session, at: AfricasTalkingTransport, mocked_at: responses.RequestsMock
) -> None:
    household = make_household(outbox, Language.FR)
    message = queue_one(outbox, template="receipt_covered", household=household)
    mocked_at.post(AT_SMS_URL, json=at_answer(SUCCESS))

    deliver(outbox, message.id, at, default_sender="IGNORED")

    stored = reload(outbox, message)
    assert stored.status is MessageStatus.SENT
    assert (stored.provider_message_id, stored.provider_status_code, stored.cost) == (
        "ATXid_5d1b0c7e2a",
        101,
        "XOF 25.0000",
    )
    assert (stored.transport, stored.attempts, stored.sent_at is not None) == ("africastalking", 1, True)
    (call,) = mocked_at.calls
    body = call.request.body
    assert isinstance(body, str)  # a form-encoded body
    form = urllib.parse.parse_qs(body)
    assert form["username"] == ["sandbox"] and form["to"] == [PHONE]
    assert form["message"] == [stored.body]
    assert form["from"] == ["MUT-TN"]  # the household's mutuelle's sender id (Thiès Nord)
    assert call.request.headers["apiKey"] == AT_API_KEY


def test_rejected_recipient_is_recorded_and_not_retried(
    outbox: Session, at: AfricasTalkingTransport, mocked_at: responses.RequestsMock
) -> None:
    message = queue_one(outbox, to=BLACKLISTED)
    mocked_at.post(AT_SMS_URL, json=at_answer(BLACKLIST))

    deliver(outbox, message.id, at, sleep=no_sleep)
    deliver(outbox, message.id, at, sleep=no_sleep)  # the job running again sends nothing

    stored = reload(outbox, message)
    assert stored.status is MessageStatus.REJECTED
    assert (stored.provider_status_code, stored.failure_reason, stored.provider_message_id) == (
        406,
        "UserInBlacklist",
        None,
    )
    assert len(mocked_at.calls) == 1


def test_invalid_phone_number_is_rejected_without_calling_at(
    outbox: Session, at: AfricasTalkingTransport, mocked_at: responses.RequestsMock
) -> None:
    message = queue_one(outbox, to="0771234567")
    deliver(outbox, message.id, at)
    stored = reload(outbox, message)
    assert (stored.status, stored.provider_status_code, stored.failure_reason) == (
        MessageStatus.REJECTED,
        403,
        "InvalidPhoneNumber",
    )
    assert len(mocked_at.calls) == 0


def test_server_error_then_success_is_retried_in_the_job(
    outbox: Session, at: AfricasTalkingTransport, mocked_at: responses.RequestsMock
) -> None:
    message = queue_one(outbox)
    mocked_at.post(AT_SMS_URL, status=500, body="Internal Server Error")
    mocked_at.post(AT_SMS_URL, json=at_answer(SUCCESS))
    waits: list[float] = []

    deliver(outbox, message.id, at, backoff=(0.5, 2.0), sleep=waits.append)

    stored = reload(outbox, message)
    assert (stored.status, stored.provider_message_id, stored.attempts) == (MessageStatus.SENT, "ATXid_5d1b0c7e2a", 2)
    assert waits == [0.5]
    assert len(mocked_at.calls) == 2


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 503, "body": "Service Unavailable"},
        {"body": requests.ConnectionError("connection refused")},
        {"body": requests.ConnectTimeout("connect timeout")},
    ],
)
def test_errors_that_prove_nothing_was_sent_go_back_to_queued_for_rq(
    outbox: Session, at: AfricasTalkingTransport, mocked_at: responses.RequestsMock, failure: dict[str, object]
) -> None:
    message = queue_one(outbox)
    mocked_at.post(AT_SMS_URL, **failure)

    with pytest.raises(TransientSendError):
        deliver(outbox, message.id, at, backoff=(0, 0), sleep=no_sleep)
    stored = reload(outbox, message)
    assert (stored.status, stored.attempts, stored.provider_message_id) == (MessageStatus.QUEUED, 3, None)
    assert stored.failure_reason

    mocked_at.replace(responses.POST, AT_SMS_URL, json=at_answer(SUCCESS))
    deliver(outbox, message.id, at)  # RQ's retry
    assert reload(outbox, message).status is MessageStatus.SENT


def test_client_error_is_recorded_not_retried(
    outbox: Session, at: AfricasTalkingTransport, mocked_at: responses.RequestsMock
) -> None:
    message = queue_one(outbox)
    mocked_at.post(AT_SMS_URL, status=401, body="The supplied authentication is invalid")
    deliver(outbox, message.id, at, sleep=no_sleep)
    stored = reload(outbox, message)
    assert (stored.status, stored.provider_status_code) == (MessageStatus.REJECTED, 401)
    assert "authentication is invalid" in (stored.failure_reason or "")
    assert len(mocked_at.calls) == 1


@pytest.mark.parametrize(
    "failure",
    [requests.ReadTimeout("read timed out"), requests.ConnectionError(ProtocolError("Connection aborted."))],
)
def test_read_timeout_leaves_the_message_unknown_and_never_resends(
    outbox: Session, at: AfricasTalkingTransport, mocked_at: responses.RequestsMock, failure: Exception
) -> None:
    message = queue_one(outbox)
    mocked_at.post(AT_SMS_URL, body=failure)

    deliver(outbox, message.id, at, sleep=no_sleep)
    mocked_at.replace(responses.POST, AT_SMS_URL, json=at_answer(SUCCESS))
    deliver(outbox, message.id, at, sleep=no_sleep)  # the job running again

    stored = reload(outbox, message)
    assert (stored.status, stored.provider_message_id, stored.attempts) == (MessageStatus.UNKNOWN, None, 1)
    assert len(mocked_at.calls) == 1


def test_message_sent_once_even_if_the_job_runs_twice(
    outbox: Session, at: AfricasTalkingTransport, mocked_at: responses.RequestsMock
) -> None:
    message = queue_one(outbox)
    mocked_at.post(AT_SMS_URL, json=at_answer(SUCCESS))
    deliver(outbox, message.id, at)
    deliver(outbox, message.id, at)
    assert len(mocked_at.calls) == 1
    assert reload(outbox, message).attempts == 1


def test_console_outbox_logs_masked_and_marks_not_sent(outbox: Session, caplog: pytest.LogCaptureFixture) -> None:
    message = queue_one(outbox)
    with caplog.at_level("WARNING"):
        deliver(outbox, message.id, ConsoleTransport())
    stored = reload(outbox, message)
    assert (stored.status, stored.transport, stored.provider_message_id) == (MessageStatus.NOT_SENT, "console", None)
    line = next(r.getMessage() for r in caplog.records if "CONSOLE OUTBOX (not sent)" in r.getMessage())
    assert "+221*******67" in line and PHONE not in line
    assert stored.body in line


# ---------------------------------------------------------------- RQ workers


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch, db_url: str, redis_url: str) -> Iterator[None]:
    """Configure this process as a job process on the test database and Redis, with AT on the sandbox."""
    for name, value in {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "AT_USERNAME": "sandbox",
        "AT_API_KEY": AT_API_KEY,
        "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    runtime.settings.cache_clear()
    yield
    runtime.settings.cache_clear()


def run_burst(queue: Queue) -> None:
    """Run an in-process burst worker on the queue (so `responses` sees the SDK's requests)."""
    SimpleWorker([queue], connection=queue.connection).work(burst=True, with_scheduler=False)


def test_rq_job_sends_through_at_with_a_retry_after_500(
    job_env: None, outbox: Session, queue: Queue, mocked_at: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sms_jobs, "IN_JOB_BACKOFF_SECONDS", (0.0,))
    message = queue_one(outbox, template="receipt_review", amount="3500 F")
    mocked_at.post(AT_SMS_URL, status=500, body="oops")
    mocked_at.post(AT_SMS_URL, json=at_answer(SUCCESS))

    run_burst(queue)

    stored = reload(outbox, message)
    assert (stored.status, stored.provider_message_id) == (MessageStatus.SENT, "ATXid_5d1b0c7e2a")
    job = queue.fetch_job(sms_job_id(message.id))
    assert job is not None and job.get_status() == "finished"
    assert len(mocked_at.calls) == 2


def test_messages_committed_together_are_sent_by_one_job_each_claimed_once(
    job_env: None, outbox: Session, queue: Queue, mocked_at: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sms_jobs, "IN_JOB_BACKOFF_SECONDS", ())
    values = {name: VALUES[name] for name in placeholders("help")}
    messages = [send_sms(outbox, f"+22177000000{i}", "help", **values) for i in range(3)]
    outbox.commit()
    assert queue.job_ids == [sms_group_job_id(messages[0].id, 3)]  # one job, not a fork per message
    mocked_at.post(AT_SMS_URL, json=at_answer(SUCCESS))
    mocked_at.post(AT_SMS_URL, status=502, body="Bad Gateway")  # the second one: proves nothing left
    mocked_at.post(AT_SMS_URL, json=at_answer(SUCCESS))

    run_burst(queue)

    # The second one got a job of its own (RQ retries it with its intervals), which sent it.
    assert [reload(outbox, m).status for m in messages] == [MessageStatus.SENT] * 3
    assert len(mocked_at.calls) == 4
    assert queue.fetch_job(sms_job_id(messages[1].id)) is not None
    assert sms_jobs.send_messages([m.id for m in messages]) == {"Sent": 3}  # nothing is sent twice
    assert len(mocked_at.calls) == 4


def test_a_group_job_hands_its_remaining_messages_on_when_a_drain_waits(
    job_env: None, outbox: Session, queue: Queue, mocked_at: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {name: VALUES[name] for name in placeholders("help")}
    messages = [send_sms(outbox, f"+22177000000{i}", "help", **values) for i in range(3)]
    outbox.commit()
    queue.empty()
    Queue(RECONCILE_QUEUE, connection=queue.connection).enqueue("workers.reconcile.drain", job_id=drain_job_id(9))
    for _ in messages:
        mocked_at.post(AT_SMS_URL, json=at_answer(SUCCESS))

    # A drain waits: the job sends one message, then gives the worker back with the rest first in line.
    assert sms_jobs.send_messages([m.id for m in messages]) == {"Sent": 1, "handed on": 2}
    assert queue.job_ids == [sms_group_job_id(messages[1].id, 2)]
    run_burst(queue)  # the drain still waits: one message per job, each claimed and sent once

    assert [reload(outbox, m).status for m in messages] == [MessageStatus.SENT] * 3
    assert len(mocked_at.calls) == 3


def test_rq_retries_later_then_gives_up(
    job_env: None, outbox: Session, queue: Queue, mocked_at: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sms_jobs, "IN_JOB_BACKOFF_SECONDS", ())
    message = queue_one(outbox)
    mocked_at.post(AT_SMS_URL, status=502, body="Bad Gateway")

    run_burst(queue)

    job_id = sms_job_id(message.id)
    assert job_id in ScheduledJobRegistry(queue=queue).get_job_ids()  # RQ retries it later
    assert reload(outbox, message).status is MessageStatus.QUEUED

    with pytest.raises(TransientSendError):
        sms_jobs.send_message(message.id)  # the last try (no retries left)
    stored = reload(outbox, message)
    assert stored.status is MessageStatus.FAILED
    assert (stored.failure_reason or "").startswith("gave up: HTTP 502")


def test_real_worker_process_sends_to_the_console_outbox(
    outbox: Session, queue: Queue, run_worker: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    message = queue_one(outbox, template="payment_reference", language="fr")
    assert queue.job_ids == [sms_job_id(message.id)]

    result = run_worker()

    assert result.returncode == 0, result.stderr
    stored = reload(outbox, message)
    assert (stored.status, stored.transport) == (MessageStatus.NOT_SENT, "console")
    output = result.stdout + result.stderr
    assert "CONSOLE OUTBOX (not sent) to +221*******67" in output
    assert "Référence de paiement 4827316 : payez 3500 F." in output
    assert PHONE not in output


def test_cli_queues_an_sms_for_the_worker(app: Flask, session: Session, queue: Queue) -> None:
    result = app.test_cli_runner().invoke(args=["sms", "send", PHONE, "help", "--lang", "wo"])
    assert result.exit_code == 0, result.output
    message = session.scalars(select(Message)).one()
    assert result.output.startswith(f"queued SMS {message.id} (wo, GSM-7, 1 segment(s))")
    assert message.body.endswith("Walla jaar ci *384*123#")
    assert queue.job_ids == [sms_job_id(message.id)]

    missing = app.test_cli_runner().invoke(args=["sms", "send", PHONE, "receipt_due"])
    assert missing.exit_code != 0 and "needs amount, due, household_no" in missing.output
