"""Helpers of the campaign tests: the module's case (a campaign of two networks, five enrolments, one payment)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.enrolment.tables import Collector, Enrolment
from models.members.household import Household
from tests import factories
from tests.enrolment_helpers import household_form, post


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def key_of(cli: Callable[..., Result], network: str, name: str) -> str:
    return ok(cli("collectors", "create", name, "--mutuelle", "SN-TN", "--network", network)).strip().splitlines()[-1]


def form(client_id: str, last_name: str, number: int, **changes: Any) -> dict[str, Any]:
    """Return a three-person household unlike the others (its own names, phone and ID)."""
    body = household_form(client_id, **changes)
    for person in body["members"]:
        person["last_name"] = last_name
    body["members"][0].update(phone=f"77 100 00 {number:02d}", id_number=f"1 234 1986 001{number:02d}")
    return body


@pytest.fixture
def case(cli: Callable[..., Result], app: Flask, client: FlaskClient, session: Session) -> dict[str, Any]:
    """Build the campaign of the module's case: network A (target 10) and B (250), five enrolments, one payment.

    A: three households of three — validated and paid, validated never paid, rejected. B: one submitted, one
    PNBSF household validated (its cover funded by the state, no payment). 60 days, today the 11th.
    """
    scheme = factories.scheme(session, "cmu-thies")
    today = scheme.local_today(utcnow())
    for code in ("RES-A", "RES-B"):
        factories.make_network(session, scheme, code)
    start, end = today - timedelta(days=10), today + timedelta(days=49)
    out = ok(
        cli("campaigns", "create", "Campagne test", "--scheme", "cmu-thies", "--start", str(start), "--end", str(end))
    )
    campaign_id = int(out.split()[1])
    assert "target 10 beneficiaries" in ok(
        cli("campaigns", "target", str(campaign_id), "--network", "RES-A", "--beneficiaries", "10")
    )
    assert "target 250 beneficiaries" in ok(cli("campaigns", "target", str(campaign_id), "--network", "RES-B"))
    key_a, key_b = key_of(cli, "RES-A", "Awa A"), key_of(cli, "RES-B", "Binta B")
    collector = session.scalars(select(Collector).where(Collector.name == "Awa A")).one()
    planned = ok(
        cli(
            "campaigns",
            "session",
            str(campaign_id),
            "--date",
            str(today),
            "--place",
            "Marché central",
            "--network",
            "RES-A",
            "--collector",
            str(collector.id),
        )
    )
    assert "Marché central (RES-A)" in planned
    ids = {}
    for client_id, key, last_name, number, extra in (
        ("a-paid", key_a, "Ndiaye", 1, {}),
        ("a-unpaid", key_a, "Fall", 2, {}),
        ("a-rejected", key_a, "Seck", 3, {}),
        ("b-waiting", key_b, "Gaye", 4, {}),
        ("b-bsf", key_b, "Kane", 5, {"subsidy_category": "bsf"}),
    ):
        body = form(client_id, last_name, number, **extra)
        if client_id == "b-bsf":
            body["members"][0]["card_number"] = "PNBSF-0042"
        created = post(client, key, body)
        assert created.status_code == 201, created.json
        ids[client_id] = created.json["id"]
    for name in ("a-paid", "a-unpaid", "b-bsf"):
        ok(cli("enrolments", "validate", str(ids[name])))
    ok(cli("enrolments", "reject", str(ids["a-rejected"]), "--reason", "hors zone"))
    session.commit()
    paid = session.get(Enrolment, ids["a-paid"])
    assert paid is not None and paid.household is not None
    factories.pay(session, paid.household, 11_500, today)
    return {"campaign_id": campaign_id, "today": today, "ids": ids, "scheme": scheme}


def household_of(session: Session, enrolment_id: int) -> Household:
    enrolment = session.get(Enrolment, enrolment_id)
    assert enrolment is not None and enrolment.household is not None
    return enrolment.household
