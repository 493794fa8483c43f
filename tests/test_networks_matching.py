"""Networks for matching (issue 18): staff set the contact phone and aliases in the admin or the CLI, and a payment
naming an alias, or from the contact, pays the network."""

from __future__ import annotations

import uuid

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.members.household import Network
from models.members.networks import parse_aliases
from models.messaging.outbox import attach_dispatch
from models.reconciliation.batch import reconcile_payment
from models.schemes.mutuelle import home_mutuelle
from models.schemes.scheme import Scheme
from tests import factories
from tests.admin_helpers import admin_app, csrf_token, db_session, seeded_url, signed_in, text_of
from tests.payment_helpers import json_body, store_report

__all__ = ["admin_app", "db_session", "seeded_url"]  # the shared seeded database fixtures


def test_parse_aliases_trims_and_drops_duplicates() -> None:
    assert parse_aliases(" GIE Keur  Moussa\nKM;gie keur moussa\n\n") == ["GIE Keur Moussa", "KM"]


def test_operator_sets_contact_and_aliases(admin_app: Flask, db_session: Session) -> None:
    scheme = db_session.scalars(select(Scheme).where(Scheme.country == "SN")).first()
    assert scheme is not None
    suffix = uuid.uuid4().hex[:6]
    network = Network(
        scheme_id=scheme.id,
        mutuelle_id=home_mutuelle(db_session, scheme.id, None).id,
        code=f"reseau-test-{suffix}",
        name=f"Reseau Test {suffix}",
    )
    db_session.add(network)
    db_session.commit()
    page = f"/admin/networks/{network.id}"
    client = signed_in(admin_app, "operator")
    assert "Aliases" in text_of(client.get(page))

    form = {"csrf_token": csrf_token(client, page), "contact_phone": "12", "aliases": "GIE Test"}
    refused = client.post(f"{page}/matching", data=form)
    assert refused.status_code == 400 and "contact phone '12'" in text_of(refused)
    form = {"csrf_token": csrf_token(client, page), "contact_phone": "77 555 00 09", "aliases": f"GIE Test {suffix}"}
    assert client.post(f"{page}/matching", data=form).status_code == 302

    db_session.rollback()
    db_session.refresh(network)
    assert (network.contact_phone, network.aliases) == ("+221775550009", [f"GIE Test {suffix}"])
    assert f"GIE Test {suffix}" in text_of(client.get(page))
    viewer = signed_in(admin_app, "viewer")
    assert viewer.post(f"{page}/matching", data=form).status_code in {400, 403}


def test_cli_sets_an_alias_and_a_payment_naming_it_pays_the_network(app: Flask, session: Session) -> None:
    attach_dispatch(session, lambda ids: None)
    cmu = factories.scheme(session, "cmu-thies")
    network = factories.make_network(session, cmu, code="reseau-keur-moussa")
    factories.make_household(session, cmu, network=network)
    factories.make_household(session, cmu, phone="+221771234567")  # the payer is a member elsewhere

    runner = app.test_cli_runner()
    result = runner.invoke(args=["members", "network", "RESEAU-KEUR-MOUSSA", "--alias", "GIE Keur Moussa"])
    assert result.exit_code == 0, result.output
    assert "aliases\tGIE Keur Moussa" in result.output
    clash = runner.invoke(args=["members", "network", "reseau-keur-moussa", "--alias", "ab"])
    assert clash.exit_code != 0 and "too short" in clash.output

    payment = store_report(
        session, amount=60_000, txn="T_ALIAS", reference="gie  keur-moussa novembre", payer="+221771234567"
    )
    session.commit()
    assert reconcile_payment(session, payment.id) == "allocated"
    session.commit()
    session.refresh(payment)
    assert (payment.network_id, payment.household_id, payment.match_rule) == (network.id, None, "network_name")


def test_daraja_validation_accepts_a_network_name_or_alias(client: FlaskClient, session: Session) -> None:
    from tests.payment_helpers import fixture_payload, post_json

    cmu = factories.scheme(session, "cmu-thies")
    network = factories.make_network(session, cmu, code="reseau-keur-moussa")
    network.name, network.aliases = "Réseau Keur Moussa", ["GIE Keur Moussa"]
    session.commit()
    for typed, answer in [("Reseau keur moussa", "0"), ("GIE KEUR-MOUSSA", "0"), ("Keur", "C2B00012")]:
        payload = dict(fixture_payload("mpesa_c2b_validation.json"), BillRefNumber=typed)
        assert json_body(post_json(client, "/payments/daraja/validate", payload))["ResultCode"] == answer, typed
