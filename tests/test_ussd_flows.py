"""USSD flows over the real HTTP contract: Pay, agents' checks with a PIN, unknown phones' checks by date of birth."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from dateutil.relativedelta import relativedelta
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from commands.access import agents_group
from menus.data import scheme_today
from menus.render import format_date
from models.access.agents import create_agent
from models.access.rate_limit import MEMBER_CHECK_PER_PHONE
from models.access.tables import Agent, EligibilityCheck
from models.base import CheckChannel, HouseholdStatus, Language, RequestStatus
from models.members.household import Household
from models.messaging.message import Message, UssdSessionRecord
from models.payments.payment import PaymentRequest
from models.payments.references import is_valid_reference
from redis_keys import rate_limit_key, ussd_session_key
from tests.conftest import CALLBACK_TOKEN
from tests.factories import make_household, pay, scheme
from tests.ussd_helpers import PHONE, cmu_household, hops, post_hop

SKY_PHONE = "+85512345678"
AGENT_PHONE = "+221760000001"
AGENT_PIN = "4821"
STRANGER = "+221700000000"


def count(session: Session, model: type) -> int:
    session.commit()  # end the read transaction: see what the app committed since
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


# ---------------------------------------------------------------- 2 Pay


def test_pay_shows_choices_creates_a_request_and_sends_the_same_by_sms(session: Session, client: FlaskClient) -> None:
    household = cmu_household(session)  # four people, standard: 1,000 fee + 4 × 3,500 a year
    replies = hops(client, PHONE, "2", "2")
    assert replies[1] == (
        "CON Montant à payer: 15 000 F CFA\n"
        "1 15 000 F CFA (12 mois)\n2 29 000 F CFA (24 mois)\n3 Autre montant\n0 Retour"
    )
    request = session.scalars(select(PaymentRequest)).one()
    assert (request.household_id, request.amount, request.periods, request.channel) == (household.id, 29_000, 2, "ussd")
    assert request.status == RequestStatus.OPEN and is_valid_reference(request.reference)
    assert request.payer_phone == PHONE and request.caller_key and request.caller_key.startswith("ussd:ATUid_")
    assert replies[2] == (
        f"END Référence {request.reference}: payez 29 000 F CFA par\nWave: M-221-THIES-NORD\n"
        "Orange Money: #144*4*6*203040#\nEnvoyé aussi par SMS."
    )
    sms = session.scalars(select(Message)).one()
    assert (sms.phone, sms.template, sms.language, sms.household_id) == (
        PHONE,
        "payment_reference_for",
        "fr",
        household.id,
    )
    assert sms.body == (
        f"Ménage {household.household_no} (Awa) : référence {request.reference}, payez 29 000 F CFA. "
        f"Wave: payez 29 000 F CFA au marchand M-221-THIES-NORD, ref {request.reference}"
    )
    assert (sms.encoding, sms.segments) == ("GSM-7", 1)
    assert sms.dedupe_key == f"payment_reference:{request.id}"


def test_pay_replayed_creates_one_request_and_one_sms(
    session: Session, client: FlaskClient, clear_redis: Callable[[], None]
) -> None:
    cmu_household(session)
    sid = "ATUid_pay_replay"
    for text in ("", "2"):
        post_hop(client, sid, PHONE, text)
    first = post_hop(client, sid, PHONE, "2*1")
    assert post_hop(client, sid, PHONE, "2*1") == first  # AT retried the hop
    clear_redis()
    assert post_hop(client, sid, PHONE, "2*1") == first  # the session was lost: replayed from `text`
    clear_redis()
    post_hop(client, sid, PHONE, "2")  # a text that does not extend the stored one: replayed too
    assert post_hop(client, sid, PHONE, "2*1") == first
    assert count(session, PaymentRequest) == 1
    assert count(session, Message) == 1
    # Another session is another request.
    other = hops(client, PHONE, "2", "1")[-1]
    assert other != first and count(session, PaymentRequest) == 2 and count(session, Message) == 2


def test_pay_another_amount(session: Session, client: FlaskClient) -> None:
    cmu_household(session)
    replies = hops(client, PHONE, "2", "3", "abc", "5000")
    assert replies[2] == "CON Montant à payer en F CFA:\n0 Retour\n00 Accueil"
    assert replies[3].startswith("CON Montant invalide.\nMontant à payer en F CFA:")
    assert replies[4].startswith("END Référence ") and "payez 5 000 F CFA par" in replies[4]
    request = session.scalars(select(PaymentRequest)).one()
    assert (request.amount, request.periods) == (5_000, 1)


def test_pay_is_not_offered_to_a_fully_subsidised_household(session: Session, client: FlaskClient) -> None:
    cmu_household(session, category="bsf")  # the state pays everything
    assert hops(client, PHONE, "2")[-1] == (
        "END Votre couverture est entièrement payée par la subvention. Vous n'avez rien à payer."
    )
    assert count(session, PaymentRequest) == 0


def test_pay_is_not_offered_to_a_suspended_household_but_a_lapsed_one_pays(
    session: Session, client: FlaskClient
) -> None:
    household = cmu_household(session)
    household.status = HouseholdStatus.SUSPENDED
    session.commit()
    assert hops(client, PHONE, "2")[-1] == (
        "END Votre ménage est suspendu : aucun paiement n'est accepté. Contactez le bureau de votre mutuelle."
    )
    household.status = HouseholdStatus.ACTIVE
    session.commit()
    assert hops(client, PHONE, "2")[-1].startswith("CON Montant à payer: 15 000 F CFA")
    assert count(session, PaymentRequest) == 0


def test_a_household_that_just_paid_reads_covered_and_its_next_payment(session: Session, client: FlaskClient) -> None:
    household = cmu_household(session)
    today = scheme_today("Africa/Dakar")
    pay(session, household, 15_000, today - timedelta(days=40))  # past the month of waiting
    until = format_date(today - timedelta(days=40) + relativedelta(years=1) - timedelta(days=1), "fr")
    coverage = hops(client, PHONE, "1")[-1]
    assert f"Couvert jusqu'au {until}.\nProchain paiement : 14 000 F CFA avant le {until}." in coverage
    # Pay offers the next period ahead (nothing is due now), within the advance cap.
    assert hops(client, PHONE, "2")[-1].startswith(f"CON Prochain paiement : 14 000 F CFA avant le {until}.\n1 14 000")


@pytest.mark.parametrize(
    ("scheme_code", "phone", "language", "screen", "done"),
    [
        ("cmu-thies", PHONE, Language.WO, "CON Li nga war a fey: 15 000 F CFA\n1 15 000 F CFA (12 weer)", "Référence "),
        ("sky-cambodia", SKY_PHONE, Language.EN, "CON Amount due: 6,400 riel\n1 6,400 riel (1 month)", "Reference "),
        ("sky-cambodia", SKY_PHONE, Language.KM, "CON ត្រូវបង់: 6 400 រៀល\n1 6 400 រៀល (1 ខែ)", "លេខយោង "),
    ],
)
def test_pay_in_each_language(
    session: Session,
    client: FlaskClient,
    scheme_code: str,
    phone: str,
    language: Language,
    screen: str,
    done: str,
) -> None:
    household = make_household(session, scheme(session, scheme_code), size=4, phone=phone)
    household.language = language
    session.commit()
    replies = hops(client, phone, "2", "1")
    assert replies[1].startswith(screen)
    assert replies[2].startswith(f"END {done}")
    request = session.scalars(select(PaymentRequest)).one()
    assert request.reference in replies[2]
    sms = session.scalars(select(Message)).one()
    assert sms.language == language.value and request.reference in sms.body


# ---------------------------------------------------------------- agents


@pytest.fixture
def agent(session: Session) -> Agent:
    scheme(session, "cmu-thies")
    facility = "Poste de sante Thies Nord"
    created = create_agent(session, facility=facility, phone=AGENT_PHONE, pin=AGENT_PIN, country="SN")
    session.commit()
    return created


def covered_member(session: Session) -> Household:
    today = scheme_today("Africa/Dakar")
    household = cmu_household(session, enrolled_on=today - timedelta(days=70))
    pay(session, household, 15_000, today - timedelta(days=60))
    return household


def test_an_agent_checks_a_member_and_the_check_is_logged(session: Session, client: FlaskClient, agent: Agent) -> None:
    household = covered_member(session)
    member_no = f"{household.household_no}-02"
    replies = hops(client, AGENT_PHONE, "1", member_no.lower(), AGENT_PIN)
    assert replies[0] == "CON Poste de sante Thies Nord\n1 Vérifier un membre"
    assert replies[2] == "CON Votre PIN agent:\n0 Retour\n00 Accueil"
    assert replies[3].startswith("END Moussa, né(e) en 1981\nCouvert: OUI (actif)\nValable jusqu'au ")
    check = session.scalars(select(EligibilityCheck)).one()
    assert (check.channel, check.agent_id, check.facility) == (CheckChannel.USSD, agent.id, agent.facility)
    assert (check.member_no, check.covered, check.status) == (member_no, True, "ACTIVE")


def test_an_agent_checking_an_unknown_member_is_told_and_it_is_logged(
    session: Session, client: FlaskClient, agent: Agent
) -> None:
    reply = hops(client, AGENT_PHONE, "1", "SN999999-01", AGENT_PIN)[-1]
    assert reply == "END Aucun membre SN999999-01."
    assert session.scalars(select(EligibilityCheck)).one().status == "UNKNOWN"


def test_five_wrong_pins_lock_the_agent_once_each_even_replayed(
    session: Session, client: FlaskClient, clear_redis: Callable[[], None], agent: Agent, app: Flask
) -> None:
    household = covered_member(session)
    member_no = f"{household.household_no}-01"
    sid = "ATUid_pins"
    inputs = ["1", member_no]
    for text in ("", "1", f"1*{member_no}"):
        post_hop(client, sid, AGENT_PHONE, text)
    for attempt in range(1, 5):
        inputs.append("1111")
        reply = post_hop(client, sid, AGENT_PHONE, "*".join(inputs))
        assert reply.startswith(f"CON PIN erroné. Essais restants: {5 - attempt}.\nVotre PIN agent:")
        assert post_hop(client, sid, AGENT_PHONE, "*".join(inputs)) == reply  # duplicate hop
        clear_redis()
        assert post_hop(client, sid, AGENT_PHONE, "*".join(inputs)) == reply  # lost session, replayed
        session.commit()
        session.expire_all()
        assert session.get_one(Agent, agent.id).failed_attempts == attempt
    inputs.append("2222")
    locked = post_hop(client, sid, AGENT_PHONE, "*".join(inputs))
    assert locked == "END Trop de PIN erronés. Réessayez dans 15 min."
    # Locked: even the right PIN is refused, and nothing is checked.
    assert hops(client, AGENT_PHONE, "1", member_no, AGENT_PIN)[-1] == locked
    assert count(session, EligibilityCheck) == 0
    result = app.test_cli_runner().invoke(agents_group, ["unlock", AGENT_PHONE])
    assert result.exit_code == 0, result.output
    assert hops(client, AGENT_PHONE, "1", member_no, AGENT_PIN)[-1].startswith("END Awa, né(e) en 1980")
    # The PIN hops are masked in the end-of-session record, from the state.
    form = {"sessionId": sid, "phoneNumber": AGENT_PHONE, "status": "Success", "input": "*".join(inputs)}
    assert client.post(f"/ussd/events?token={CALLBACK_TOKEN}", data=form).status_code == 200
    session.commit()
    record = session.scalars(select(UssdSessionRecord)).one()
    assert record.input == f"1*{member_no}*xxxx*xxxx*xxxx*xxxx*xxxx"
    assert "1111" not in str(record.raw) and "2222" not in str(record.raw)


def test_a_khmer_agent_checks_in_khmer(session: Session, client: FlaskClient) -> None:
    sky = scheme(session, "sky-cambodia")
    create_agent(session, facility="Health centre", phone="+85516000001", pin="4821", country="KH")
    household = make_household(session, sky, size=2)
    session.commit()
    replies = hops(client, "+85516000001", "1", f"{household.household_no}-01", "4821")
    assert replies[0] == "CON Health centre\n1 ពិនិត្យសមាជិក"
    assert replies[3].startswith("END Awa កើតឆ្នាំ 1980\nធានា: គ្មាន (មិនដែលបង់)")


def test_a_replayed_check_of_a_member_with_a_long_khmer_name_answers_as_the_first_time(
    session: Session, client: FlaskClient, redis_client: Redis
) -> None:
    """The check's outcome is stored whole: escaped, this name alone passed the 200 characters it was cut at."""
    sky = scheme(session, "sky-cambodia")
    create_agent(session, facility="Health centre", phone="+85516000002", pin="4821", country="KH")
    household = make_household(session, sky, size=2)
    household.members[0].first_name = "ព្រះករុណាសម្តេចព្រះនរោត្តមសីហមុនី"
    session.commit()
    member_no, sid = f"{household.household_no}-01", "ATUid_khmer_replay"
    first = hops(client, "+85516000002", "1", member_no, "4821", session_id=sid)[-1]
    assert first.startswith("END ព្រះករុណាសម្តេចព្រះនរោត្តមសីហមុនី កើតឆ្នាំ 1980\n")
    redis_client.delete(ussd_session_key(sid))  # the session was lost: the check is replayed from its stored outcome
    assert hops(client, "+85516000002", "1", member_no, "4821", session_id=sid)[-1] == first
    assert count(session, EligibilityCheck) == 1


# ---------------------------------------------------------------- unknown phones


def test_an_unknown_phone_checks_a_member_by_date_of_birth(session: Session, client: FlaskClient) -> None:
    household = covered_member(session)
    member_no = f"{household.household_no}-01"  # Awa, born 01/01/1980
    replies = hops(client, STRANGER, member_no, "01011980")
    assert replies[0] == ("CON Ce numéro n'est pas enregistré. Pour vérifier un membre, entrez son numéro de membre:")
    assert replies[1] == "CON Date de naissance (JJMMAAAA):\n0 Retour"
    assert replies[2].startswith(f"END Awa ({member_no})\nCouvert: OUI (actif)\nValable jusqu'au ")
    assert "XOF" not in replies[2] and "Diop" not in replies[2]  # no amounts, no surname
    wrong = hops(client, STRANGER, member_no, "02011980")[-1]
    assert wrong == "END Aucun membre avec ce numéro et cette date de naissance."


def test_date_of_birth_checks_are_rate_limited_per_phone(
    session: Session, client: FlaskClient, redis_client: Redis
) -> None:
    household = covered_member(session)
    member_no = f"{household.household_no}-01"
    sid = "ATUid_dob"
    first = hops(client, STRANGER, member_no, "01011980", session_id=sid)[-1]
    redis_client.delete(ussd_session_key(sid))
    assert hops(client, STRANGER, member_no, "01011980", session_id=sid)[-1] == first  # replayed: not counted
    assert redis_client.zcard(rate_limit_key(MEMBER_CHECK_PER_PHONE.name, STRANGER)) == 1
    for _ in range(MEMBER_CHECK_PER_PHONE.limit - 1):
        assert hops(client, STRANGER, member_no, "09091999")[-1].startswith("END Aucun membre")
    limited = hops(client, STRANGER, member_no, "01011980")[-1]
    assert limited == "END Trop de vérifications depuis ce numéro. Réessayez dans une heure."
    assert 0 < redis_client.ttl(rate_limit_key(MEMBER_CHECK_PER_PHONE.name, STRANGER)) <= 3600
    # Another phone has its own allowance.
    assert hops(client, "+221700000002", member_no, "01011980")[-1] == first


def test_an_unknown_cambodian_phone_is_answered_in_khmer(session: Session, client: FlaskClient) -> None:
    scheme(session, "sky-cambodia")
    reply = hops(client, "+85599000000")[0]
    assert reply.startswith("CON លេខនេះមិនបានចុះឈ្មោះ។")
