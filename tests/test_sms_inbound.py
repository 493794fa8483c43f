"""`POST /sms/inbound`: commands in each keyword language through the real HTTP contract and RQ jobs."""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from dateutil.relativedelta import relativedelta
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.access.agents import create_agent
from models.access.tables import EligibilityCheck
from models.base import CheckChannel, HouseholdStatus, Language, MessageDirection, MessageStatus, PaymentStatus
from models.members.household import Household
from models.messaging.message import Message
from models.payments.payment import Payment, PaymentRequest
from models.payments.references import is_valid_reference
from models.schemes.scheme import Scheme
from redis_keys import inbound_job_id
from tests import factories
from tests.conftest import CALLBACK_TOKEN, FIXTURES
from tests.payment_helpers import add_device
from tests.sms_helpers import cmu, job_env, queue, replies, run_jobs, sms

__all__ = ["cmu", "job_env", "queue"]  # the fixtures

PHONE = "+221771234567"
AGENT_PHONE = "+221761230000"
STRANGER = "+221781112233"
COLLECTOR = "+221770001122"
AGENT_PIN = "4821"
HOUSEHOLD_NO = "SN-TN-000123"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def household(session: Session, cmu: Scheme) -> Household:
    """Return a registered household of two (never paid) whose head's phone is PHONE, and an agent."""
    created = factories.make_household(session, cmu, size=2, phone=PHONE, household_no=HOUSEHOLD_NO)
    create_agent(session, facility="Poste de santé Thiès Nord", phone=AGENT_PHONE, pin=AGENT_PIN, country="SN")
    session.commit()
    return created


def fixture_lines() -> list[dict[str, str]]:
    """Return the form fields of every line of at_sms_inbound.txt."""
    lines = (FIXTURES / "at_sms_inbound.txt").read_text(encoding="utf-8").splitlines()
    return [
        {key: values[0] for key, values in urllib.parse.parse_qs(line, keep_blank_values=True).items()}
        for line in lines
        if line.strip() and not line.startswith("#")
    ]


def inbound(session: Session) -> list[Message]:
    """Return the inbound messages, oldest first, as stored now."""
    session.commit()
    query = select(Message).where(Message.direction == MessageDirection.INBOUND).order_by(Message.id)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def ask(client: FlaskClient, queue: Queue, session: Session, phone: str, text: str) -> Message:
    """Send one SMS, run the jobs, and return the one new reply."""
    before = len(replies(session))
    assert sms(client, phone, text).status_code == 200
    run_jobs(queue)
    after = replies(session)
    assert len(after) == before + 1, [m.body for m in after[before:]]
    return after[-1]


# ---------------------------------------------------------------- the "done when"


def test_fixture_lines_get_the_right_replies(
    client: FlaskClient, session: Session, household: Household, queue: Queue, job_env: None
) -> None:
    for fields in fixture_lines():
        response = client.post(f"/sms/inbound?token={CALLBACK_TOKEN}", data=fields)
        assert (response.status_code, response.get_data(as_text=True)) == (200, "OK")
    assert sorted(queue.job_ids) == sorted(inbound_job_id(m.id) for m in inbound(session))

    run_jobs(queue)

    out = replies(session)
    assert [m.template for m in out] == ["status_pending", "payment_reference_for", "check_not_covered", "help"]
    status, pay, check, help_ = out
    # Two members at 3,500 F each (the state pays the other half) and the 1,000 F membership fee.
    assert status.body == "Ménage SN-TN-000123 pas encore couvert. Payez 8 000 F CFA pour commencer : envoyez PAYER."
    request = session.scalars(select(PaymentRequest)).one()
    assert (request.amount, request.channel, request.payer_phone) == (7000, "sms", PHONE)
    assert is_valid_reference(request.reference)
    expected = f"Ménage {HOUSEHOLD_NO} (Awa) : référence {request.reference}, payez 7 000 F CFA. Wave: payez"
    assert pay.body.startswith(expected)
    assert check.phone == AGENT_PHONE
    assert check.body == "SN-TN-000123-01 Awa, né(e) en 1980 : NON couvert (PENDING)."
    assert help_.body.startswith("Envoyez STATUT, PAYER, SOLDE")
    for reply in out:
        assert (reply.status, reply.segments, reply.encoding) == (MessageStatus.NOT_SENT, 1, "GSM-7")
    logged = session.scalars(select(EligibilityCheck)).one()
    assert (logged.channel, logged.member_no, logged.facility) == (
        CheckChannel.SMS,
        "SN-TN-000123-01",
        "Poste de santé Thiès Nord",
    )
    stored = inbound(session)
    assert [m.status for m in stored] == [MessageStatus.HANDLED] * 4
    assert stored[2].body == "Verif SN-TN-000123-01 xxxx"  # the PIN never reaches the database
    assert stored[0].dedupe_key == "at-in-2f9c1e7a-5b1d-4a7e-9d55-0a8e4c1b2d01"
    assert (stored[0].short_code, stored[0].link_id, stored[0].household_id) == (
        "21555",
        "SampleLinkId123",
        household.id,
    )


# ---------------------------------------------------------------- every command in each keyword language

COMMANDS = {
    "fr": [
        "STATUT",
        "payer",
        "PAYER 2000",
        "solde",
        "verif SN-TN-000123-01 1357",
        "aide",
        "n'importe quoi",
        "STOP",
        "START",
    ],
    "en": ["status", "Pay", "pay 2000", "BALANCE", "check SN-TN-000123-01 1357", "HELP", "hello?", "stop", "start"],
    "wo": [
        "xool",
        "fey",
        "Fey 2000",
        "xaalis",
        "seet SN-TN-000123-01 1357",
        "ndimbal",
        "nanga def",
        "bayil",
        "tambali",
    ],
}
EXPECTED = [
    "status_pending",
    "payment_reference_for",
    "payment_reference_for",
    "balance",
    "agent_only",  # the household's phone is not an agent's
    "help",
    "help",
    "stop_done",
    "start_done",
]


@pytest.mark.parametrize("keywords", sorted(COMMANDS))
def test_every_command_in_each_keyword_language(
    client: FlaskClient, session: Session, household: Household, queue: Queue, job_env: None, keywords: str
) -> None:
    for text in COMMANDS[keywords]:
        assert sms(client, PHONE, text).status_code == 200
    run_jobs(queue)

    out = replies(session, PHONE)
    assert [m.template for m in out] == EXPECTED
    assert {m.language for m in out} == {"fr"}  # the household's language, whatever the keyword language
    today = factories.scheme(session, "cmu-thies").local_today().strftime("%d/%m/%Y")
    assert out[3].body == (
        "Ménage SN-TN-000123 : crédit 0 F CFA. Montant à payer : 8 000 F CFA. "
        f"Prochain paiement : 8 000 F CFA avant le {today}."
    )
    amounts = sorted(r.amount for r in session.scalars(select(PaymentRequest)))
    assert amounts == [2000, 8000]
    session.refresh(household)
    assert household.sms_opt_in is True  # STOP then START


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("LANGUE wo", "wo", "Lakk wi denc nanu ko: Wolof."),
        ("lang en", "en", "Language saved: English."),
        ("làkk km", "km", "បានរក្សាទុកភាសា៖ ខ្មែរ។"),
    ],
)
def test_language_command_changes_the_language_of_later_replies(
    client: FlaskClient,
    session: Session,
    household: Household,
    queue: Queue,
    job_env: None,
    text: str,
    language: str,
    expected: str,
) -> None:
    reply = ask(client, queue, session, PHONE, text)
    assert (reply.language, reply.body) == (language, expected)
    session.refresh(household)
    assert household.language == Language(language)
    assert ask(client, queue, session, PHONE, "AIDE").language == language


def test_bad_arguments_get_the_usage(
    client: FlaskClient, session: Session, household: Household, queue: Queue, job_env: None
) -> None:
    assert ask(client, queue, session, PHONE, "langue de").template == "language_usage"
    assert ask(client, queue, session, PHONE, "payer beaucoup").template == "pay_usage"
    assert ask(client, queue, session, PHONE, "statut SN-TN-000123-01").template == "status_usage"
    assert ask(client, queue, session, AGENT_PHONE, "verif SN-TN-000123-01").template == "check_usage"


def test_status_of_a_covered_household(
    client: FlaskClient, session: Session, household: Household, cmu: Scheme, queue: Queue, job_env: None
) -> None:
    today = cmu.local_today()
    factories.pay(session, household, 8000, today - timedelta(days=300))
    status = ask(client, queue, session, PHONE, "statut")
    assert status.template == "status_active"
    until = (today - timedelta(days=300) + relativedelta(years=1) - timedelta(days=1)).strftime("%d/%m/%Y")
    assert status.body == (
        f"Ménage SN-TN-000123 : couvert jusqu'au {until}. Prochain paiement : 7 000 F CFA avant le {until}."
    )
    balance = ask(client, queue, session, PHONE, "solde")
    assert balance.body == (
        f"Ménage SN-TN-000123 : crédit 0 F CFA. Montant à payer : 0 F CFA. "
        f"Prochain paiement : 7 000 F CFA avant le {until}."
    )
    # Paying ahead stays possible: PAYER offers the next period.
    pay = ask(client, queue, session, PHONE, "payer")
    assert pay.template == "payment_reference_for" and "payez 7 000 F CFA" in pay.body


def test_partly_paid_household_reads_what_is_missing(
    client: FlaskClient, session: Session, household: Household, cmu: Scheme, queue: Queue, job_env: None
) -> None:
    factories.pay(session, household, 3000, cmu.local_today())  # the fee, and 2,000 of the 7,000 premium
    status = ask(client, queue, session, PHONE, "statut")
    assert status.template == "status_partly_paid"
    assert (
        status.body == "Ménage SN-TN-000123 : payé en partie, pas encore couvert. Il manque 5 000 F CFA. Envoyez PAYER."
    )
    pay = ask(client, queue, session, PHONE, "payer")
    assert "payez 5 000 F CFA" in pay.body


def test_suspended_household_is_told_why_it_cannot_pay(
    client: FlaskClient, session: Session, household: Household, queue: Queue, job_env: None
) -> None:
    household.status = HouseholdStatus.SUSPENDED
    session.commit()
    reply = ask(client, queue, session, PHONE, "PAYER")
    assert reply.body == (
        "Ménage SN-TN-000123 suspendu : aucun paiement n'est accepté. Contactez le bureau de votre mutuelle."
    )
    assert session.scalar(select(func.count(PaymentRequest.id))) == 0


def test_fully_subsidised_household_has_nothing_to_pay(
    client: FlaskClient, session: Session, cmu: Scheme, queue: Queue, job_env: None
) -> None:
    factories.make_household(session, cmu, size=3, category="bsf", phone=STRANGER, household_no="SN-TN-000777")
    reply = ask(client, queue, session, STRANGER, "PAYER")
    assert reply.body == (
        "Ménage SN-TN-000777 : votre couverture est entièrement payée par la subvention. Vous n'avez rien à payer."
    )
    assert session.scalar(select(func.count(PaymentRequest.id))) == 0


def test_unknown_phone_checks_a_member_by_date_of_birth_rate_limited(
    client: FlaskClient, session: Session, household: Household, queue: Queue, job_env: None
) -> None:
    assert ask(client, queue, session, STRANGER, "STATUT").template == "not_registered"
    right = ask(client, queue, session, STRANGER, "statut SN-TN-000123-01 01011980")
    assert right.template == "status_pending" and "SN-TN-000123" in right.body
    wrong = ask(client, queue, session, STRANGER, "statut SN-TN-000123-01 02011980")
    unknown = ask(client, queue, session, STRANGER, "statut SN-TN-999999-01 01011980")
    assert wrong.template == unknown.template == "member_not_found"  # an unknown number looks like a wrong date
    for _ in range(2):
        assert ask(client, queue, session, STRANGER, "statut SN-TN-000123-01 03011980").template == "member_not_found"
    # Five checks an hour per phone: the sixth is refused even with the right date.
    assert ask(client, queue, session, STRANGER, "statut SN-TN-000123-01 01011980").template == "rate_limited"
    bodies = [m.body for m in inbound(session)]
    assert not any("1980" in body for body in bodies)


# ---------------------------------------------------------------- agents


def test_agent_lockout_after_five_wrong_pins_by_sms(
    client: FlaskClient, session: Session, household: Household, queue: Queue, job_env: None
) -> None:
    wrong = "VERIF SN-TN-000123-01 1357"
    first = sms(client, AGENT_PHONE, wrong, at_id="wrong-1")
    assert first.status_code == 200
    assert sms(client, AGENT_PHONE, wrong, at_id="wrong-1").status_code == 200  # AT's retry counts once
    run_jobs(queue)
    bodies = [replies(session, AGENT_PHONE)[-1].body]
    for _ in range(4):
        bodies.append(ask(client, queue, session, AGENT_PHONE, wrong).body)
    assert bodies[:4] == [
        f"PIN incorrect. Encore {left} essai(s) avant le blocage des vérifications." for left in (4, 3, 2, 1)
    ]
    assert bodies[4].startswith("Trop de PIN incorrects : vérifications bloquées jusqu'à ")
    # Locked: even the right PIN is refused, and nothing is checked or logged.
    assert ask(client, queue, session, AGENT_PHONE, f"verif SN-TN-000123-01 {AGENT_PIN}").template == "pin_locked"
    assert session.scalar(select(func.count(EligibilityCheck.id))) == 0


def test_agent_checks_a_covered_member_and_an_unknown_one(
    client: FlaskClient, session: Session, household: Household, cmu: Scheme, queue: Queue, job_env: None
) -> None:
    factories.pay(session, household, 8000, cmu.local_today().replace(year=cmu.local_today().year - 1))
    reply = ask(client, queue, session, AGENT_PHONE, f"CHECK sn-tn-000123-02 {AGENT_PIN}")
    assert reply.template in {"check_covered", "check_not_covered"}
    assert reply.body.startswith("SN-TN-000123-02 Moussa, né(e) en 1981 : ")
    missing = ask(client, queue, session, AGENT_PHONE, f"seet SN-TN-999999-01 {AGENT_PIN}")
    assert missing.template == "member_not_found"
    assert session.scalar(select(func.count(EligibilityCheck.id))) == 2


# ---------------------------------------------------------------- AT retries


def test_retry_storm_executes_one_command_and_sends_one_reply(
    app: Flask, client: FlaskClient, session: Session, household: Household, queue: Queue, job_env: None
) -> None:
    at_id = "2f9c1e7a-5b1d-4a7e-9d55-0a8e4c1b2d02"

    def post(_: int) -> int:
        return int(sms(app.test_client(), PHONE, "payer 7000", at_id=at_id).status_code)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(post, range(20))) == {200}  # concurrent duplicates
    run_jobs(queue)
    for _ in range(20):  # AT keeps retrying after the answer
        assert sms(client, PHONE, "payer 7000", at_id=at_id).status_code == 200
    run_jobs(queue)

    assert len(inbound(session)) == 1
    assert [m.template for m in replies(session)] == ["payment_reference_for"]
    assert session.scalar(select(func.count(PaymentRequest.id))) == 1


def test_the_job_run_twice_answers_once(
    client: FlaskClient, session: Session, household: Household, job_env: None
) -> None:
    from workers.inbound import handle_inbound

    assert sms(client, PHONE, "payer").status_code == 200
    message = inbound(session)[0]
    assert handle_inbound(message.id) == "pay"
    assert handle_inbound(message.id) == "already handled"
    assert len(replies(session)) == 1


def test_wrong_token_is_refused_and_nothing_is_stored(client: FlaskClient, session: Session, queue: Queue) -> None:
    assert sms(client, PHONE, "STATUT", token="nope").status_code == 403
    assert sms(client, PHONE, "STATUT", token=None).status_code == 403
    assert client.post(f"/sms/inbound?token={CALLBACK_TOKEN}", data={"text": "STATUT"}).status_code == 400
    assert inbound(session) == [] and queue.job_ids == []


# ---------------------------------------------------------------- collection phones


def test_text_from_a_collection_phone_goes_to_the_payments_parser(
    client: FlaskClient, session: Session, household: Household, queue: Queue, job_env: None
) -> None:
    add_device(session, key=COLLECTOR, senders=["OrangeMoney"])
    text = (
        "Vous avez recu un transfert de 7000 FCFA du 771234567. ID: PP261120.1041.A12345. "
        "Votre solde est de 152500 FCFA."
    )
    assert sms(client, COLLECTOR, text).status_code == 200
    run_jobs(queue)

    payment = session.scalars(select(Payment)).one()
    assert (payment.provider, payment.provider_txn_id, payment.amount) == ("orange_money", "PP261120.1041.A12345", 7000)
    assert payment.status is PaymentStatus.PROVISIONAL  # a forwarded text alone never funds cover
    assert replies(session) == []  # the collector is not answered with member help
    message = inbound(session)[0]
    assert (message.body, message.template, message.status) == (text, "payment_forward", MessageStatus.HANDLED)


# ---------------------------------------------------------------- a real worker process


def test_real_worker_answers_statut(
    client: FlaskClient,
    session: Session,
    household: Household,
    queue: Queue,
    run_worker: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    assert sms(client, PHONE, "Statut").status_code == 200
    result = run_worker()
    assert result.returncode == 0, result.stderr
    reply = replies(session)[0]
    assert (reply.template, reply.status, reply.transport) == ("status_pending", MessageStatus.NOT_SENT, "console")
    assert PHONE not in result.stdout + result.stderr
