"""Payment references: a check digit that catches typing slips, and idempotent payment requests."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import RequestStatus
from models.db import get_engine
from models.imports.members import import_members
from models.members.household import Household, Network
from models.payments.payment import PaymentRequest
from models.payments.references import (
    create_payment_request,
    damm_check_digit,
    expire_payment_requests,
    is_valid_reference,
    make_reference,
)
from models.schemes.scheme import Scheme
from tests.conftest import FIXTURES
from tests.members_helpers import load_schemes

NOW = datetime(2026, 11, 23, 9, 30)
bodies = st.integers(min_value=100_000, max_value=999_999).map(str)


def test_damm_known_value() -> None:
    assert damm_check_digit("572") == "4"  # the textbook example
    assert is_valid_reference("5724") is False  # right digit, wrong length


@given(bodies)
def test_every_reference_is_valid(body: str) -> None:
    assert is_valid_reference(body + damm_check_digit(body))


@given(bodies)
def test_every_single_digit_error_is_caught(body: str) -> None:
    reference = body + damm_check_digit(body)
    for position in range(len(reference)):
        for digit in "0123456789":
            if digit != reference[position]:
                typo = reference[:position] + digit + reference[position + 1 :]
                assert not is_valid_reference(typo), typo


@given(bodies)
def test_every_adjacent_swap_is_caught(body: str) -> None:
    reference = body + damm_check_digit(body)
    for position in range(len(reference) - 1):
        a, b = reference[position], reference[position + 1]
        if a != b:
            swapped = reference[:position] + b + a + reference[position + 2 :]
            assert not is_valid_reference(swapped), swapped


def test_luhn_blind_spot_is_caught() -> None:
    # Luhn cannot tell 09 from 90; Damm can.
    for body in ("109000", "190000", "550990"):
        reference = body + damm_check_digit(body)
        swapped = reference.replace("09", "90", 1) if "09" in reference else reference.replace("90", "09", 1)
        assert swapped != reference and not is_valid_reference(swapped)


@given(st.randoms(use_true_random=False))
def test_made_references_are_seven_digits_without_leading_zero(rng: random.Random) -> None:
    reference = make_reference(rng)
    assert len(reference) == 7 and reference[0] != "0" and is_valid_reference(reference)


@pytest.mark.parametrize("text", ["", "123456", "12345678", "12345a7", "１２３４５６７", " 1234567"])
def test_malformed_references_are_invalid(text: str) -> None:
    assert not is_valid_reference(text)


# ---------------------------------------------------------------- payment requests


def enrolled(session: Session) -> tuple[Scheme, Household, Network]:
    load_schemes(session)
    assert import_members(session, FIXTURES / "members_sample.csv").ok
    session.commit()
    scheme = session.scalars(select(Scheme).where(Scheme.code == "cmu-thies")).one()
    household = session.scalars(select(Household).where(Household.household_no == "SN-TN-000123")).one()
    assert household.network is not None
    return scheme, household, household.network


def request_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(PaymentRequest)) or 0


def test_request_is_open_with_a_valid_reference(session: Session) -> None:
    scheme, household, _ = enrolled(session)
    request = create_payment_request(
        session, scheme=scheme, household=household, amount=4500, payer_phone="+221771234567", channel="ussd", now=NOW
    )
    session.commit()
    assert is_valid_reference(request.reference)
    assert request.status is RequestStatus.OPEN
    assert (request.amount, request.currency, request.periods) == (4500, "XOF", 1)
    assert request.expires_at == NOW + timedelta(hours=72)
    assert request.household_id == household.id and request.network_id is None


def test_network_request(session: Session) -> None:
    scheme, _, network = enrolled(session)
    request = create_payment_request(session, scheme=scheme, network=network, amount=875_000, channel="sms", now=NOW)
    assert request.network_id == network.id and request.household_id is None


def test_same_caller_key_returns_the_same_request(session: Session) -> None:
    scheme, household, _ = enrolled(session)
    first = create_payment_request(
        session, scheme=scheme, household=household, amount=4500, channel="ussd", caller_key="ATUid_1:3", now=NOW
    )
    session.commit()
    again = create_payment_request(
        session, scheme=scheme, household=household, amount=4500, channel="ussd", caller_key="ATUid_1:3", now=NOW
    )
    session.commit()
    assert again.id == first.id and again.reference == first.reference
    other_hop = create_payment_request(
        session, scheme=scheme, household=household, amount=4500, channel="ussd", caller_key="ATUid_1:4", now=NOW
    )
    session.commit()
    assert other_hop.id != first.id and request_count(session) == 2


def test_reference_collision_draws_another(session: Session) -> None:
    scheme, household, _ = enrolled(session)
    first = create_payment_request(
        session, scheme=scheme, household=household, amount=4500, channel="ussd", now=NOW, rng=random.Random(7)
    )
    # The same seed draws the same first reference, which is open: the second draw is used.
    second = create_payment_request(
        session, scheme=scheme, household=household, amount=4500, channel="ussd", now=NOW, rng=random.Random(7)
    )
    session.commit()
    assert second.reference != first.reference and is_valid_reference(second.reference)
    assert request_count(session) == 2


def test_expiry_frees_the_reference(session: Session) -> None:
    scheme, household, _ = enrolled(session)
    old = create_payment_request(
        session, scheme=scheme, household=household, amount=4500, channel="ussd", now=NOW, rng=random.Random(7)
    )
    session.commit()
    assert expire_payment_requests(session, NOW + timedelta(hours=71)) == 0
    assert expire_payment_requests(session, NOW + timedelta(hours=72)) == 1
    session.commit()
    assert expire_payment_requests(session, NOW + timedelta(hours=73)) == 0
    session.refresh(old)
    assert old.status is RequestStatus.EXPIRED
    later = NOW + timedelta(days=5)
    reused = create_payment_request(
        session, scheme=scheme, household=household, amount=4500, channel="ussd", now=later, rng=random.Random(7)
    )
    session.commit()
    assert reused.reference == old.reference and reused.status is RequestStatus.OPEN


def test_request_arguments_are_checked(session: Session) -> None:
    scheme, household, network = enrolled(session)
    with pytest.raises(ValueError, match="exactly one"):
        create_payment_request(session, scheme=scheme, amount=100, channel="ussd", now=NOW)
    with pytest.raises(ValueError, match="exactly one"):
        create_payment_request(
            session, scheme=scheme, household=household, network=network, amount=100, channel="ussd", now=NOW
        )
    with pytest.raises(ValueError, match="positive integer"):
        create_payment_request(session, scheme=scheme, household=household, amount=0, channel="ussd", now=NOW)
    sky = session.scalars(select(Scheme).where(Scheme.code == "sky-cambodia")).one()
    with pytest.raises(ValueError, match="not in scheme sky-cambodia"):
        create_payment_request(session, scheme=sky, household=household, amount=100, channel="ussd", now=NOW)


def test_concurrent_replays_of_a_hop_make_one_request(pg_url: str) -> None:
    engine = get_engine(pg_url)
    with Session(engine, expire_on_commit=False) as setup:
        scheme, household, _ = enrolled(setup)
    key = "ATUid_race:2"
    with Session(engine, expire_on_commit=False) as first_session:
        first = create_payment_request(
            first_session, scheme=scheme, household=household, amount=4500, channel="ussd", caller_key=key, now=NOW
        )
        # Not committed yet: a replayed hop in another process finds nothing and inserts, blocking on the key.
        results: list[PaymentRequest | BaseException] = []

        def replay() -> None:
            with Session(engine, expire_on_commit=False) as other:
                try:
                    results.append(
                        create_payment_request(
                            other,
                            scheme=scheme,
                            household=household,
                            amount=4500,
                            channel="ussd",
                            caller_key=key,
                            now=NOW,
                        )
                    )
                    other.commit()
                except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
                    results.append(exc)

        thread = threading.Thread(target=replay)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), results  # blocked on the unique caller_key
        first_session.commit()
        thread.join(10)
    assert len(results) == 1 and isinstance(results[0], PaymentRequest), results
    assert results[0].id == first.id and results[0].reference == first.reference
    with Session(engine) as check:
        assert request_count(check) == 1
