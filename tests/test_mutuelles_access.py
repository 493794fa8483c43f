"""Staff kept to one mutuelle: every admin route with an id answers 404 for another mutuelle's row (and changes
nothing), and every list, export and report shows only their own rows (issue 24's access tests)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

import models
from models.access.agents import create_agent
from models.access.devices import register_device
from models.access.staff import create_staff_user
from models.access.tables import Agent, ApiToken, CollectionDevice, StaffUser
from models.access.tokens import issue_token
from models.base import StaffRole, utcnow
from models.db import get_engine
from models.enrolment.campaigns import Campaign
from models.enrolment.tables import Enrolment
from models.members.household import Household, Network
from models.payments.payment import Payment
from models.payments.statement import StatementImport
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme
from models.views.scheme_reports import Grouping, scheme_report
from models.views.scope import scope_session
from tests.admin_helpers import PASSWORDS, admin_app, csrf_token, login, seeded_url

__all__ = ["admin_app", "seeded_url"]  # the shared seeded database fixtures

PASSWORD = "mutuelle-pass-123"
OWN, OTHER = "SN-TN", "SN-PK"
FOREIGN_PREFIXES = ("SN-PK-", "SN-MR-", "KH-PP-")  # household and member numbers of the other mutuelles
# Users created here: (role, mutuelles); "admin" of tests/admin_helpers.py is a union's (every mutuelle).
USERS = {
    "tn-viewer": (StaffRole.VIEWER, [OWN]),
    "tn-operator": (StaffRole.OPERATOR, [OWN]),
    "tn-admin": (StaffRole.ADMIN, [OWN]),
    "tn-spare": (StaffRole.VIEWER, [OWN]),  # deactivated by tn-admin
    "pk-operator": (StaffRole.OPERATOR, [OTHER]),
    "pk-admin": (StaffRole.ADMIN, [OTHER]),
}

# Every admin route taking an id: the kind of row it names, its method, the role that may use it, the form sent.
ID_ROUTES: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "admin.household": ("household", "GET", "tn-viewer", {}),
    "admin.suspend": ("household", "POST", "tn-operator", {"reason": "access test"}),
    "admin.unsuspend": ("household", "POST", "tn-operator", {"reason": "access test"}),
    "admin.remind_household": ("household", "POST", "tn-operator", {}),
    "admin.network": ("network", "GET", "tn-viewer", {}),
    "admin.edit_network": ("network", "POST", "tn-operator", {"match_members_phone": "1"}),
    "admin.edit_network_grant": ("network", "POST", "tn-operator", {"grant_amount": "5000000"}),
    "admin.payment": ("payment", "GET", "tn-viewer", {}),
    "admin.match_payment": ("payment", "POST", "tn-operator", {"target": "household", "number": "x", "reason": "t"}),
    "admin.refund_payment": ("payment", "POST", "tn-operator", {"reason": "access test"}),
    "admin.unmatch": ("payment", "POST", "tn-operator", {"reason": "access test"}),
    "admin.statement": ("statement", "GET", "tn-viewer", {}),
    "admin.unlock_agent_view": ("agent", "POST", "tn-admin", {}),
    "admin.revoke_token_view": ("token", "POST", "tn-admin", {}),
    "admin.rotate_device_key": ("device", "POST", "tn-admin", {}),
    "admin.revoke_device_key_view": ("device", "POST", "tn-admin", {}),
    "admin.trust_device": ("device", "POST", "tn-admin", {"trusted": "1"}),
    "admin.deactivate_staff": ("staff", "POST", "tn-admin", {}),
    "admin.enrolment": ("enrolment", "GET", "tn-viewer", {}),
    "admin.validate_enrolment_view": ("enrolment", "POST", "tn-operator", {}),
    "admin.reject_enrolment_view": ("enrolment", "POST", "tn-operator", {"reason": "access test"}),
    "admin.ask_for_changes_view": ("enrolment", "POST", "tn-operator", {"reason": "access test"}),
    "admin.campaign": ("campaign", "GET", "tn-viewer", {}),
    "admin.campaign_csv": ("campaign", "GET", "tn-viewer", {}),
    "admin.campaign_days_csv": ("campaign", "GET", "tn-viewer", {}),
    "admin.edit_campaign": ("campaign", "GET", "tn-operator", {}),
    "admin.update_campaign_view": ("campaign", "POST", "tn-operator", {"name": "Renamed", "start_on": "x"}),
    "admin.campaign_targets_view": ("campaign", "POST", "tn-operator", {}),
    "admin.add_campaign_session_view": ("campaign", "POST", "tn-operator", {"place": "x"}),
    "admin.remove_campaign_session_view": ("campaign", "POST", "tn-operator", {"session_id": "0"}),
}
# Pages a user kept to some mutuelles may not open: they act on or show every mutuelle at once.
UNION_ONLY = {"admin.simulator", "admin.simulator_outbox", "admin.queues"}
NOT_PAGES = {"admin.login", "admin.static"}


@dataclass(frozen=True)
class Rows:
    """Ids and visible names of each kind of row, per mutuelle code."""

    ids: dict[tuple[str, str], int | str]
    foreign_markers: tuple[str, ...]


def _id_of(session: Session, model: type, code: str, extra: object = None) -> int:
    mutuelle = session.scalars(select(Mutuelle).where(Mutuelle.code == code)).one()
    query = select(model.id).where(model.mutuelle_id == mutuelle.id).order_by(model.id)  # type: ignore[attr-defined]
    if extra is not None:
        query = query.where(extra)  # type: ignore[arg-type]
    found = session.scalars(query).first()
    assert found is not None, f"no {model.__name__} in {code}"
    return int(found)


def _seed_scoped_rows(session: Session) -> Rows:
    """Add the users, and per mutuelle a statement, token, agent and device; attribute the demo's payments."""
    mutuelle_ids = {m.code: m.id for m in session.scalars(select(Mutuelle))}
    # Matching attributes a payment to its household's mutuelle; the demo's payments predate that.
    for model in (Household, Network):
        owner = Payment.household_id if model is Household else Payment.network_id
        session.execute(
            update(Payment)
            .where(Payment.mutuelle_id.is_(None), owner.is_not(None))
            .values(mutuelle_id=select(model.mutuelle_id).where(model.id == owner).scalar_subquery())
        )
    for username, (role, codes) in USERS.items():
        create_staff_user(session, username, PASSWORD, role, language="en", mutuelles=codes)
    markers: list[str] = []
    for code in (OWN, OTHER):
        slug = code.lower()
        session.add(
            StatementImport(
                provider="wave",
                filename=f"{slug}.csv",
                sha256=hashlib.sha256(slug.encode()).hexdigest(),
                imported_by="test",
                period_start=date(2026, 1, 1),
                period_end=date(2026, 1, 31),
                mutuelle_id=mutuelle_ids[code],
            )
        )
        token, _ = issue_token(session, name=f"token-{slug}", facility=f"Facility {slug}", now=utcnow())
        token.mutuelle_id = mutuelle_ids[code]
        phone = "+221760000101" if code == OWN else "+221760000102"
        agent = create_agent(session, facility=f"Poste {slug}", phone=phone, pin="4821", country="SN")
        agent.mutuelle_id = mutuelle_ids[code]
        device, _ = register_device(
            session, device_key=f"device-{slug}", label=f"Phone {slug}", senders=["Wave"], scheme_id=None, trusted=False
        )
        device.mutuelle_id = mutuelle_ids[code]
        session.add(
            Campaign(
                scheme_id=session.get(Mutuelle, mutuelle_ids[code]).scheme_id,  # type: ignore[union-attr]
                mutuelle_id=mutuelle_ids[code],
                name=f"campaign-{slug}",
                start_on=date(2026, 1, 1),
                end_on=date(2026, 12, 31),
            )
        )
        if code == OTHER:
            markers += [f"token-{slug}", phone, f"device-{slug}", f"{slug}.csv", f"campaign-{slug}"]
    session.flush()
    ids: dict[tuple[str, str], int | str] = {}
    for code in (OWN, OTHER):
        ids["household", code] = _id_of(session, Household, code)
        ids["network", code] = _id_of(session, Network, code)
        ids["payment", code] = _id_of(session, Payment, code)
        ids["statement", code] = _id_of(session, StatementImport, code)
        ids["token", code] = _id_of(session, ApiToken, code)
        ids["agent", code] = _id_of(session, Agent, code)
        ids["device", code] = _id_of(session, CollectionDevice, code)
        ids["enrolment", code] = _id_of(session, Enrolment, code)  # the demo's: one per CMU mutuelle
        ids["campaign", code] = _id_of(session, Campaign, code)
    ids["staff", OWN] = "tn-spare"
    ids["staff", OTHER] = "pk-operator"
    markers += ["pk-operator", "pk-admin"]
    foreign_networks = session.scalars(
        select(Network.code).where(Network.mutuelle_id.not_in([mutuelle_ids[OWN]]))
    ).all()
    foreign_payments = (Payment.mutuelle_id.is_not(None), Payment.mutuelle_id != mutuelle_ids[OWN])
    foreign_txns = session.scalars(select(Payment.provider_txn_id).where(*foreign_payments)).all()
    markers += [*foreign_networks, *foreign_txns]
    session.commit()
    return Rows(ids, (*FOREIGN_PREFIXES, *markers))


@pytest.fixture(scope="module")
def rows(seeded_url: str) -> Rows:
    """Return the ids and foreign markers of the scoped rows, added once per seeded database."""
    with Session(get_engine(seeded_url), expire_on_commit=False) as session:
        return _seed_scoped_rows(session)


def signed(app: Flask, username: str) -> FlaskClient:
    """Return a client signed in as one of this module's users (or a demo role user)."""
    client = app.test_client()
    response = login(client, username, PASSWORDS.get(username, PASSWORD))
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def snapshot(engine: Engine) -> dict[str, str]:
    """Return a digest of every table's rows but the sign-in sessions (Core, unscoped)."""
    digests = {}
    with engine.connect() as connection:
        for table in models.Base.metadata.sorted_tables:
            if table.name in ("staff_sessions",):
                continue
            found = connection.execute(select(table).order_by(*table.primary_key.columns)).all()
            digests[table.name] = hashlib.sha256(repr(found).encode()).hexdigest()
    return digests


def admin_rules(app: Flask) -> Iterator[tuple[str, str, set[str]]]:
    """Yield each admin rule's endpoint, path and methods."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin.") and rule.endpoint not in NOT_PAGES:
            yield rule.endpoint, rule.rule, set(rule.methods or ()) - {"HEAD", "OPTIONS"}


def test_every_admin_route_with_an_id_is_covered(admin_app: Flask) -> None:
    taking_ids = {e for e, _path, _m in admin_rules(admin_app) if "<" in _path}
    assert taking_ids == set(ID_ROUTES), "a new admin route takes an id: add it to ID_ROUTES"


def _url(app: Flask, endpoint: str, value: int | str) -> str:
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    [name] = rule.arguments
    return app.url_map.bind("localhost").build(endpoint, {name: value})


@pytest.mark.parametrize("endpoint", sorted(ID_ROUTES))
def test_another_mutuelle_s_id_is_not_found_and_untouched(admin_app: Flask, rows: Rows, endpoint: str) -> None:
    kind, method, username, form = ID_ROUTES[endpoint]
    client = signed(admin_app, username)
    engine = get_engine(admin_app.config["DATABASE_URL"])
    foreign = _url(admin_app, endpoint, rows.ids[kind, OTHER])
    own = _url(admin_app, endpoint, rows.ids[kind, OWN])
    if method == "GET":
        assert client.get(foreign).status_code == 404
        assert client.get(own).status_code == 200
        return
    token = csrf_token(client, "/admin/")
    before = snapshot(engine)
    refused = client.post(foreign, data={"csrf_token": token, **form})
    assert refused.status_code == 404, refused.get_data(as_text=True)[:500]
    after = snapshot(engine)
    assert [t for t in before if before[t] != after[t]] == []
    assert client.post(own, data={"csrf_token": token, **form}).status_code != 404


def _pages(app: Flask) -> list[tuple[str, str]]:
    return sorted((e, path) for e, path, methods in admin_rules(app) if "GET" in methods and "<" not in path)


@pytest.mark.parametrize("username", ["tn-viewer", "tn-admin"])
def test_lists_exports_and_reports_show_only_their_own_rows(admin_app: Flask, rows: Rows, username: str) -> None:
    client = signed(admin_app, username)
    seen_own: set[str] = set()
    problems: list[tuple[object, ...]] = []
    for endpoint, path in _pages(admin_app):
        response = client.get(path)
        if endpoint in UNION_ONLY:
            if response.status_code != 404:
                problems.append((path, response.status_code))
            continue
        if response.status_code == 403 and username == "tn-viewer":
            continue  # an admin-only page: tn-admin reads it
        body = response.get_data(as_text=True)
        leaked = [marker for marker in rows.foreign_markers if marker in body]
        if response.status_code != 200 or leaked:
            problems.append((path, response.status_code, *leaked[:4]))
        if f"{OWN}-" in body:
            seen_own.add(endpoint)
    assert problems == [], "\n".join(map(str, problems))
    assert {"admin.households", "admin.export_households", "admin.export_members"} <= seen_own


def test_a_union_user_sees_every_mutuelle(admin_app: Flask, rows: Rows) -> None:
    client = signed(admin_app, "admin")
    body = client.get("/admin/exports/households.csv").get_data(as_text=True)
    assert all(f"{code}-" in body for code in ("SN-TN", "SN-PK", "SN-MR"))
    assert client.get("/admin/simulator").status_code == 200
    assert client.get(_url(admin_app, "admin.payment", rows.ids["payment", OTHER])).status_code == 200


def test_staff_of_one_mutuelle_cannot_read_another_s_staff(admin_app: Flask, rows: Rows) -> None:
    with Session(get_engine(admin_app.config["DATABASE_URL"])) as session:
        assert session.scalar(select(StaffUser.active).where(StaffUser.username == "pk-operator"))


@pytest.mark.parametrize("path", ["/admin/simulator/ussd", "/admin/simulator/sms", "/admin/simulator/pay"])
def test_the_simulator_acts_for_a_union_user_only(admin_app: Flask, rows: Rows, path: str) -> None:
    client = signed(admin_app, "tn-operator")
    token = csrf_token(client, "/admin/")
    engine = get_engine(admin_app.config["DATABASE_URL"])
    before = snapshot(engine)
    answer = client.post(
        path, json={"phone": "+221770000002", "text": "", "amount": 3500}, headers={"X-CSRFToken": token}
    )
    assert answer.status_code == 404
    assert snapshot(engine) == before


def _staff_mutuelles(app: Flask, username: str) -> list[str] | None:
    with Session(get_engine(app.config["DATABASE_URL"])) as session:
        user = session.scalar(select(StaffUser).where(StaffUser.username == username))
        return None if user is None else [m.code for m in user.mutuelles]


def test_a_scoped_admin_grants_only_their_own_mutuelles(admin_app: Flask, rows: Rows) -> None:
    client = signed(admin_app, "tn-admin")
    token = csrf_token(client, "/admin/staff")
    page = client.get("/admin/staff").get_data(as_text=True)
    assert 'value="SN-TN"' in page and 'value="SN-PK"' not in page
    user = {"csrf_token": token, "role": "viewer", "language": "en", "password": PASSWORD}
    foreign = client.post("/admin/staff", data={**user, "username": "tn-grab", "mutuelle": ["SN-TN", "SN-PK"]})
    assert foreign.status_code == 400 and "not one of your mutuelles: SN-PK" in foreign.get_data(as_text=True)
    unscoped = client.post("/admin/staff", data={**user, "username": "tn-union"})
    assert unscoped.status_code == 400 and "Choose at least one of your mutuelles" in unscoped.get_data(as_text=True)
    assert _staff_mutuelles(admin_app, "tn-grab") is None and _staff_mutuelles(admin_app, "tn-union") is None
    done = client.post("/admin/staff", data={**user, "username": "tn-new", "mutuelle": "SN-TN"})
    assert done.status_code == 302
    assert _staff_mutuelles(admin_app, "tn-new") == ["SN-TN"]
    listed = client.get("/admin/staff").get_data(as_text=True)
    assert "tn-new" in listed and "SN-TN" in listed


def test_a_union_admin_creates_union_and_several_mutuelle_users(admin_app: Flask, rows: Rows) -> None:
    client = signed(admin_app, "admin")
    token = csrf_token(client, "/admin/staff")
    user = {"csrf_token": token, "role": "viewer", "language": "en", "password": PASSWORD}
    assert client.post("/admin/staff", data={**user, "username": "union-new"}).status_code == 302
    both = {**user, "username": "tn-pk", "mutuelle": ["SN-PK", "SN-TN"]}
    assert client.post("/admin/staff", data=both).status_code == 302
    assert _staff_mutuelles(admin_app, "union-new") == []
    assert _staff_mutuelles(admin_app, "tn-pk") == ["SN-PK", "SN-TN"]
    # A member who also sees SN-PK is beyond a SN-TN admin's reach.
    assert "tn-pk" not in signed(admin_app, "tn-admin").get("/admin/staff").get_data(as_text=True)


def test_tokens_agents_and_devices_get_their_creator_s_mutuelle(admin_app: Flask, rows: Rows) -> None:
    client = signed(admin_app, "tn-admin")
    token = csrf_token(client, "/admin/tokens")
    created = client.post("/admin/tokens", data={"csrf_token": token, "name": "tn-made", "facility": "Poste TN"})
    assert created.status_code == 200
    agent = {"csrf_token": token, "facility": "Poste TN", "phone": "+221760000199", "pin": "4821"}
    assert client.post("/admin/agents", data=agent).status_code == 302
    device = {"csrf_token": token, "device_key": "tn-made", "label": "TN phone", "senders": "Wave"}
    assert client.post("/admin/devices", data=device).status_code == 200
    refused = client.post("/admin/tokens", data={"csrf_token": token, "name": "x", "facility": "y", "mutuelle": OTHER})
    assert refused.status_code == 400
    with Session(get_engine(admin_app.config["DATABASE_URL"])) as session:
        tn = session.scalars(select(Mutuelle.id).where(Mutuelle.code == OWN)).one()
        assert session.scalar(select(ApiToken.mutuelle_id).where(ApiToken.name == "tn-made")) == tn
        assert session.scalar(select(Agent.mutuelle_id).where(Agent.phone == "+221760000199")) == tn
        assert (
            session.scalar(select(CollectionDevice.mutuelle_id).where(CollectionDevice.device_key == "tn-made")) == tn
        )
    assert OWN in client.get("/admin/tokens").get_data(as_text=True)


def test_a_union_report_puts_mutuelles_side_by_side_and_a_scoped_one_only_theirs(admin_app: Flask, rows: Rows) -> None:
    sessions = admin_app.extensions["sessions"]  # the app's factory: its sessions can be scoped
    with sessions() as union, sessions() as kept:
        tn = union.scalars(select(Mutuelle).where(Mutuelle.code == OWN)).one()
        scope_session(kept, [tn.id])
        scheme = union.get(Scheme, tn.scheme_id)
        assert scheme is not None
        today = scheme.local_today(utcnow())
        whole = scheme_report(union, scheme, today, grouping=Grouping.MUTUELLE)
        by_code = {line.key: line.figures for line in whole.lines}
        assert {"SN-TN", "SN-PK", "SN-MR"} <= set(by_code)
        own_scheme = kept.get(Scheme, tn.scheme_id)
        assert own_scheme is not None
        own = scheme_report(kept, own_scheme, today, grouping=Grouping.MUTUELLE)
        assert [line.key for line in own.lines] == ["SN-TN"]
        assert own.lines[0].figures == by_code["SN-TN"]
    union_page = signed(admin_app, "admin").get(f"/admin/reports?scheme={tn.scheme_id}").get_data(as_text=True)
    assert all(f"({code})" in union_page for code in ("SN-TN", "SN-PK", "SN-MR"))
    own_page = signed(admin_app, "tn-viewer").get(f"/admin/reports?scheme={tn.scheme_id}&by=mutuelle")
    assert "(SN-TN)" in own_page.get_data(as_text=True) and "(SN-PK)" not in own_page.get_data(as_text=True)
    bad = signed(admin_app, "tn-viewer").get(f"/admin/reports?scheme={tn.scheme_id}&mutuelle=SN-PK")
    assert bad.status_code == 400 and "mutuelle" in bad.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/admin/tokens", {"name": "token-sn-pk", "facility": "Poste TN"}),
        ("/admin/agents", {"facility": "Poste TN", "phone": "+221760000102", "pin": "4821"}),
        ("/admin/devices", {"device_key": "device-sn-pk", "label": "TN phone", "senders": "Wave"}),
        ("/admin/staff", {"username": "pk-operator", "password": PASSWORD, "role": "viewer", "mutuelle": OWN}),
    ],
)
def test_a_name_taken_in_another_mutuelle_is_refused_not_a_crash(
    admin_app: Flask, rows: Rows, path: str, fields: dict[str, str]
) -> None:
    """Names, phones and keys are unique across mutuelles: a scoped admin reusing another's gets a 400."""
    client = signed(admin_app, "tn-admin")
    engine = get_engine(admin_app.config["DATABASE_URL"])
    before = snapshot(engine)
    response = client.post(path, data={"csrf_token": csrf_token(client, path), **fields})
    assert response.status_code == 400
    assert "already" in response.get_data(as_text=True)
    assert snapshot(engine) == before
