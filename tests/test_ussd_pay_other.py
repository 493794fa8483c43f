"""USSD `6 Pay another household` (issue 18) over the real HTTP contract: a reference for the household a number
names, whoever dials; rate-limited like the member checks."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.messaging.message import Message
from models.payments.payment import PaymentRequest
from tests.ussd_helpers import PHONE, cmu_household, hops

OTHER_PHONE = "+221781112233"


def test_pay_another_household_gives_a_reference_for_it_and_names_it(session: Session, client: FlaskClient) -> None:
    own = cmu_household(session)
    other = cmu_household(session, phone=OTHER_PHONE, size=2)
    replies = hops(client, PHONE, "6", other.household_no.lower())

    assert "6 Payer pour un autre ménage" in replies[0]
    assert replies[1] == "CON Numéro du ménage pour qui payer :\n0 Retour"
    request = session.scalars(select(PaymentRequest)).one()
    # A household of two: 1,000 fee + 2 × 3,500.
    assert (request.household_id, request.amount, request.payer_phone) == (other.id, 8_000, PHONE)
    assert replies[2].startswith(
        f"END Ménage {other.household_no} (Awa): référence {request.reference}, payez 8 000 F CFA par\n"
    )
    sms = session.scalars(select(Message)).one()
    assert (sms.phone, sms.template, sms.household_id) == (PHONE, "payment_reference_for", other.id)
    assert sms.body.startswith(f"Ménage {other.household_no} (Awa) : référence {request.reference}")
    assert own.id != other.id


def test_pay_another_household_unknown_number_and_rate_limit(session: Session, client: FlaskClient) -> None:
    cmu_household(session)
    assert hops(client, PHONE, "6", "SN-XX-999999")[-1] == "END Aucun ménage SN-XX-999999."
    assert hops(client, PHONE, "6", "??")[-1].startswith("CON Numéro de ménage invalide.")
    for _ in range(4):
        hops(client, PHONE, "6", "SN-XX-999998")
    assert hops(client, PHONE, "6", "SN-XX-999997")[-1].startswith("END Trop de")
    assert session.scalars(select(PaymentRequest)).all() == []
