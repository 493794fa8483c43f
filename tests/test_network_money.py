"""Networks' own money (issue 27): collected on the network's account, paid for its members, balance and savings
against the scheme's share of its grant — a table of cases on both databases, read through the CLI, the network's
admin page and the campaign's CSV, and kept to a manager's own mutuelle."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy.orm import Session

from models.access.staff import create_staff_user
from models.base import StaffRole
from models.coverage.allocation import network_payout_ref, pay_network_households, refund, reverse
from models.coverage.ledger import get_or_create_account
from models.members.household import Household, Network
from models.schemes.amounts import format_amount
from models.schemes.scheme_file import SchemeFileError, parse_scheme_file
from tests import factories
from tests.admin_helpers import login
from tests.members_helpers import cli

__all__ = ["cli"]

PASSWORD = "network-money-123"
CMU_FILE = Path(__file__).resolve().parent.parent / "schemes" / "cmu-thies.toml"
# The day of the first network payment (past: the pages count up to today); a CMU year costs 3,500 a person, the
# membership fee 1,000.
D = date(2026, 3, 2)
ON = D + timedelta(days=60)  # the day the figures are read
CODE = "RES-MONEY"

# A step: ("pay", amount, days after D, run ref) receives a network payment and pays the households due from it;
# ("reverse" | "refund", ref) takes back a network payment; ("undo_payout", run ref, household index) reverses what
# one run paid a household.
Step = tuple[Any, ...]


@dataclass(frozen=True)
class Case:
    sizes: tuple[int, ...]  # the network's households, none paid yet
    steps: tuple[Step, ...]
    expected: dict[str, str]  # `networks money` fields
    grant: int | None = None
    share_bp: int | None = 1000  # the scheme's savings share (None: no target)
    since: int | None = None  # count collections and payouts from D + this many days (None: all)
    campaign_expected: dict[str, str] = field(default_factory=dict)


CASES = {
    "a payment pays two households, the rest stays": Case(
        sizes=(2, 2),
        steps=(("pay", 19_000, 0, "net:1"),),
        expected={
            "payments": "1",
            "received": "19000",
            "taken_back": "0",
            "collected": "19000",
            "paid_households": "2",
            "paid_periods": "2",
            "paid_amount": "16000",  # 2 × (fee 1,000 + 2 × 3,500)
            "balance": "3000",
            "grant": "-",
            "savings_target": "-",
            "saved": "19000",
            "saved_percent": "-",
        },
    ),
    "a household too dear for the rest waits; saved reaches the target": Case(
        sizes=(2, 4),
        steps=(("pay", 10_000, 0, "net:1"),),
        grant=100_000,
        expected={
            "paid_households": "1",
            "paid_amount": "8000",  # the four-person household's 15,000 does not fit in 2,000
            "balance": "2000",
            "grant": "100000",
            "savings_target": "10000",
            "saved": "10000",
            "saved_percent": "100.0",
        },
    ),
    "a payout reversed gives the network its money back": Case(
        sizes=(2, 2),
        steps=(("pay", 19_000, 0, "net:1"), ("undo_payout", "net:1", 0)),
        grant=1_000_000,
        expected={
            "received": "19000",
            "paid_households": "1",
            "paid_periods": "1",
            "paid_amount": "8000",
            "balance": "11000",
            "savings_target": "100000",
            "saved": "19000",
            "saved_percent": "19.0",
        },
    ),
    "a network payment refunded is taken back": Case(
        sizes=(4,),
        steps=(("pay", 5_000, 0, "net:1"), ("refund", "net:1")),
        grant=50_000,
        expected={
            "payments": "1",
            "received": "5000",
            "taken_back": "5000",
            "collected": "0",
            "paid_households": "0",
            "balance": "0",
            "savings_target": "5000",
            "saved": "0",
            "saved_percent": "0.0",
        },
    ),
    "a grant but the scheme sets no share: no target": Case(
        sizes=(2,),
        steps=(("pay", 8_500, 0, "net:1"),),
        grant=100_000,
        share_bp=None,
        expected={"paid_households": "1", "balance": "500", "grant": "100000", "savings_target": "-", "saved": "8500"},
    ),
    "a window counts its own flows; savings count everything": Case(
        sizes=(2, 4),
        steps=(("pay", 10_000, 0, "net:1"), ("pay", 3_000, 40, "net:2")),
        grant=200_000,
        since=10,
        expected={
            "payments": "1",
            "received": "3000",
            "collected": "3000",
            "paid_households": "0",
            "paid_amount": "0",
            "balance": "5000",
            "savings_target": "20000",
            "saved": "13000",
            "saved_percent": "65.0",
        },
    ),
}


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def fields_of(output: str) -> dict[str, str]:
    return {line.split("\t")[0]: line.split("\t")[1] for line in output.strip().splitlines()}


def build(session: Session, cli: Callable[..., Result], case: Case) -> tuple[Network, list[Household]]:
    """Create the case's network and households, set the scheme's share and the grant, and run its steps."""
    scheme = factories.scheme(session, "cmu-thies")
    assert scheme.network_savings_bp == 1000  # schemes/cmu-thies.toml: `[networks] savings_share_of_grant = 10`
    scheme.network_savings_bp = case.share_bp
    network = factories.make_network(session, scheme, CODE)
    households = [
        factories.make_household(session, scheme, size=size, network=network, enrolled_on=D - timedelta(days=40))
        for size in case.sizes
    ]
    if case.grant is not None:
        assert "grant" in ok(cli("networks", "grant", CODE, str(case.grant), "--on", str(D - timedelta(days=30))))
    account = get_or_create_account(session, network=network)
    session.commit()
    for step in case.steps:
        kind, *args = step
        if kind == "pay":
            amount, days, ref = args
            factories.pay(session, network, amount, D + timedelta(days=days), ref=ref)
            pay_network_households(session, account, D + timedelta(days=days), run_ref=ref)
        elif kind == "undo_payout":
            ref, index = args
            reverse(session, network_payout_ref(ref, households[index].id), "payout cancelled", D + timedelta(days=1))
        elif kind in ("reverse", "refund"):
            undo = reverse if kind == "reverse" else refund
            undo(session, args[0], "taken back", D + timedelta(days=1))
        session.commit()
    return network, households


@pytest.mark.parametrize("name", list(CASES))
def test_network_money_cases_through_the_cli_the_network_page_and_the_campaign_csv(
    name: str, cli: Callable[..., Result], app: Flask, session: Session
) -> None:
    case = CASES[name]
    network, _ = build(session, cli, case)
    args = ["networks", "money", CODE, "--on", str(ON)]
    if case.since is not None:
        args += ["--since", str(D + timedelta(days=case.since))]
    shown = fields_of(ok(cli(*args)))
    assert {key: shown[key] for key in case.expected} == case.expected, name
    # Every case keeps: balance = collected (all time) − paid for members (all time), saved = balance + paid.
    everything = fields_of(ok(cli("networks", "money", CODE, "--on", str(ON))))
    collected, paid, balance = (int(everything[k]) for k in ("collected", "paid_amount", "balance"))
    assert (balance, int(everything["saved"])) == (collected - paid, collected)

    # The campaign over the same window: its CSV (signed in), and `campaigns money`.
    start = D + timedelta(days=case.since if case.since is not None else -10)
    created = ok(
        cli("campaigns", "create", "Épargne", "--scheme", "cmu-thies", "--start", str(start), "--end", "2027-12-31")
    )
    campaign_id = created.split()[1]
    ok(cli("campaigns", "target", campaign_id, "--network", CODE))
    create_staff_user(session, "money-viewer", PASSWORD, StaffRole.VIEWER, language="en")
    session.commit()
    client = app.test_client()
    assert login(client, "money-viewer", PASSWORD).status_code == 302
    download = client.get(f"/admin/campaigns/{campaign_id}.csv", query_string={"on": str(ON)})
    rows = {r["level"]: r for r in csv.DictReader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff")))}
    columns = {
        "payments": "network_payments",
        "received": "network_payments_amount",
        "taken_back": "network_payments_taken_back_amount",
        "collected": "collected_amount",
        "paid_households": "paid_for_members_households",
        "paid_periods": "paid_for_members_periods",
        "paid_amount": "paid_for_members_amount",
        "balance": "network_balance",
        "savings_target": "savings_target",
        "saved": "saved",
        "saved_percent": "saved_percent_of_target",
    }
    for level in ("network", "commune", "campaign"):
        for key, column in columns.items():
            if key in case.expected:
                assert rows[level][column] == case.expected[key].replace("-", ""), (name, level, column)
    lines = ok(cli("campaigns", "money", campaign_id, "--on", str(ON))).strip().splitlines()
    header, line = lines[0].split("\t"), lines[1].split("\t")
    assert dict(zip(header, line, strict=True))["balance"] == shown["balance"]

    # The network's page: its money up to today (the same all-time figures: nothing happens after ON).
    page = client.get(f"/admin/networks/{network.id}").get_data(as_text=True)
    money = page[page.index('id="network-money"') :]
    for key in ("balance", "paid_amount", "saved"):
        assert format_amount(int(everything[key]), "XOF", 0, "fr") in money, key
    target = everything["savings_target"]
    if target == "-":
        assert "no savings target" in money or "sets no savings target" in money
    else:
        assert f"of the target {format_amount(int(target), 'XOF', 0, 'fr')}" in money


def test_the_grant_from_the_network_page_and_the_cli(cli: Callable[..., Result], app: Flask, session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    network = factories.make_network(session, scheme, CODE)
    create_staff_user(session, "money-operator", PASSWORD, StaffRole.OPERATOR, language="en")
    session.commit()
    client = app.test_client()
    assert login(client, "money-operator", PASSWORD).status_code == 302
    page = client.get(f"/admin/networks/{network.id}").get_data(as_text=True)
    assert "no grant recorded: no savings target" in page and 'id="network-grant-form"' in page
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    url = f"/admin/networks/{network.id}/grant"

    saved = client.post(url, data={"csrf_token": token, "grant_amount": "20 000 000", "grant_on": "2026-01-15"})
    assert saved.status_code == 302
    session.commit()  # end the read: SQLite keeps a reader's snapshot
    session.expire_all()
    assert (network.grant_amount, network.grant_on) == (20_000_000, date(2026, 1, 15))
    page = client.get(f"/admin/networks/{network.id}").get_data(as_text=True)
    assert f"of the target {format_amount(2_000_000, 'XOF', 0, 'fr')}" in page  # 10 % of the grant

    for form, message in (
        ({"grant_amount": "lots"}, "Give the grant as a whole amount"),
        ({"grant_amount": "-5"}, "above 0"),
        ({"grant_amount": "1000", "grant_on": "2999-01-01"}, "after today"),
    ):
        refused = client.post(url, data={"csrf_token": token, **form})
        assert refused.status_code == 400 and message in refused.get_data(as_text=True), form
    session.commit()
    session.expire_all()
    assert network.grant_amount == 20_000_000
    assert client.post(f"/admin/networks/{network.id + 999}/grant", data={"csrf_token": token}).status_code == 404
    cleared = client.post(url, data={"csrf_token": token, "grant_amount": ""})
    assert cleared.status_code == 302
    session.commit()
    session.expire_all()
    assert network.grant_amount is None and network.grant_on is None

    assert "grant 5000000 XOF on 2026-02-01" in ok(
        cli("networks", "grant", CODE.lower(), "5000000", "--on", "2026-02-01")
    )
    assert cli("networks", "grant", "NOPE", "1").exit_code != 0
    assert "after today" in cli("networks", "grant", CODE, "1", "--on", "2999-01-01").output
    assert "no grant" in ok(cli("networks", "grant", CODE, "0"))


def test_a_manager_of_another_mutuelle_sees_none_of_the_network_money(
    cli: Callable[..., Result], app: Flask, session: Session
) -> None:
    network, _ = build(session, cli, CASES["a payment pays two households, the rest stays"])
    created = ok(cli("campaigns", "create", "Épargne", "--scheme", "cmu-thies", "--start", str(D), "--end", str(ON)))
    campaign_id = created.split()[1]
    ok(cli("campaigns", "target", campaign_id, "--network", CODE))
    create_staff_user(session, "pk-money", PASSWORD, StaffRole.OPERATOR, language="en", mutuelles=["SN-PK"])
    create_staff_user(session, "tn-money", PASSWORD, StaffRole.VIEWER, language="en", mutuelles=["SN-TN"])
    session.commit()

    own = app.test_client()
    assert login(own, "tn-money", PASSWORD).status_code == 302
    assert "Réseau" in own.get(f"/admin/campaigns/{campaign_id}", query_string={"on": str(ON)}).get_data(as_text=True)
    assert own.get(f"/admin/networks/{network.id}").status_code == 200

    other = app.test_client()
    assert login(other, "pk-money", PASSWORD).status_code == 302
    assert other.get(f"/admin/networks/{network.id}").status_code == 404
    page = other.get(f"/admin/campaigns/{campaign_id}", query_string={"on": str(ON)}).get_data(as_text=True)
    table = page[page.index('id="campaign-money"') : page.index("</table>", page.index('id="campaign-money"'))]
    assert network.name not in table and "No network in this campaign." in table
    download = other.get(f"/admin/campaigns/{campaign_id}.csv").get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(download)))
    assert [r["level"] for r in rows] == ["campaign"] and rows[0]["network_balance"] == ""
    token = page.split('name="csrf_token" value="')[1].split('"')[0] if 'name="csrf_token"' in page else ""
    refused = other.post(f"/admin/networks/{network.id}/grant", data={"csrf_token": token, "grant_amount": "1"})
    assert refused.status_code in (400, 404)
    session.commit()
    session.expire_all()
    assert network.grant_amount is None

    # The CLI kept to a mutuelle the same way.
    assert "no network" in cli("networks", "money", CODE, "--mutuelle", "SN-PK").output
    assert "no network" in cli("networks", "grant", CODE, "1", "--mutuelle", "SN-PK").output
    assert ok(cli("campaigns", "money", campaign_id, "--on", str(ON), "--mutuelle", "SN-PK")).strip().count("\n") == 0
    assert CODE in ok(cli("campaigns", "money", campaign_id, "--on", str(ON), "--mutuelle", "SN-TN"))
    assert CODE not in ok(cli("campaigns", "progress", campaign_id, "--mutuelle", "SN-PK"))
    assert ok(cli("campaigns", "list", "--mutuelle", "SN-PK")).strip().split("\t")[-2] == "0"  # no target of its own
    assert "no network" in cli("campaigns", "target", campaign_id, "--network", CODE, "--mutuelle", "SN-MR").output
    assert "no mutuelle XX" in cli("campaigns", "money", campaign_id, "--mutuelle", "XX").output


@pytest.mark.parametrize(
    ("table", "bp"),
    [
        ("", None),
        ("[networks]\nsavings_share_of_grant = 10\n", 1000),
        ("[networks]\nsavings_share_of_grant = 2.5\n", 250),
    ],
)
def test_the_scheme_file_sets_the_savings_share(tmp_path: Path, table: str, bp: int | None) -> None:
    source = CMU_FILE.read_text(encoding="utf-8")
    start = source.index("[networks]")
    without = source[:start] + source[source.index("[reminders]") :]
    path = tmp_path / "scheme.toml"
    path.write_text(without.replace("[reminders]", table + "[reminders]"), encoding="utf-8")
    assert parse_scheme_file(path).values["network_savings_bp"] == bp


@pytest.mark.parametrize("value", ["0", "101", '"10"', "true"])
def test_a_bad_savings_share_is_refused(tmp_path: Path, value: str) -> None:
    source = CMU_FILE.read_text(encoding="utf-8")
    path = tmp_path / "scheme.toml"
    path.write_text(source.replace("savings_share_of_grant = 10 ", f"savings_share_of_grant = {value} "), "utf-8")
    with pytest.raises(SchemeFileError, match=r"networks\.savings_share_of_grant"):
        parse_scheme_file(path)
