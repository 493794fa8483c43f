"""The staff validation queue through the admin's HTTP contract (both databases) and in Chromium: the queue, an
enrolment beside its candidates, validate / reject / ask for changes, a collector's resubmission, numbering races."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from commands.demo_data import LOOK_ALIKE_OF
from models.access.staff import create_staff_user
from models.base import MessageStatus, StaffRole, utcnow
from models.db import get_engine
from models.enrolment.collectors import create_collector
from models.enrolment.tables import Enrolment, EnrolmentEvent, EnrolmentStatus
from models.enrolment.validate import validate_enrolment
from models.members.household import Household, Member
from models.messaging.message import Message
from models.schemes.mutuelle import Mutuelle
from tests import backends
from tests.admin_helpers import admin_app, csrf_token, db_session, login, seeded_url, signed_in, text_of
from tests.browser_helpers import Server, demo_server, launch_chromium, serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["admin_app", "db_session", "seeded_url"]  # the shared seeded database fixtures

OTHER_MUTUELLE_USER = ("pk-operator", "pk-operator-pass-123")
_forms = itertools.count(1)
_phones = itertools.count(1)


def new_collector(session: Session, mutuelle: str = "SN-TN") -> str:
    """Create a collector of a mutuelle and return its key."""
    _, key = create_collector(session, name=f"Collector {mutuelle}", mutuelle_code=mutuelle)
    session.commit()
    return key


def form(client_id: str, first_name: str = "Yacine", **head: str) -> dict[str, Any]:
    """Return a valid CMU enrolment of a head (a phone of its own) and a child."""
    phone = f"+2217702{next(_phones):05d}"
    return {
        "client_id": client_id,
        "commune": "Thies Nord",
        "subsidy_category": "standard",
        "members": [
            {
                "first_name": first_name,
                "last_name": "Kane",
                "sex": "F",
                "date_of_birth": "1988-07-23",
                "relationship": "head",
                "phone": phone,
                "id_number": f"2 788 1988 {next(_phones):05d}",
                **head,
            },
            {
                "first_name": "Omar",
                "last_name": "Kane",
                "sex": "M",
                "date_of_birth": "2017-01-30",
                "relationship": "child",
            },
        ],
    }


def submit(app: Flask, key: str, body: dict[str, Any]) -> TestResponse:
    """Post a form to the enrolment API as the collector's phone does."""
    return app.test_client().post("/api/enrolments", json=body, headers={"Authorization": f"Bearer {key}"})


def enrol(app: Flask, session: Session, mutuelle: str = "SN-TN") -> tuple[int, str, dict[str, Any]]:
    """Submit a new enrolment by a new collector; return its id, the key and the form."""
    key = new_collector(session, mutuelle)
    body = form(f"queue-{next(_forms)}")
    if mutuelle == "SN-PK":
        body["commune"] = "Pekesse"
    response = submit(app, key, body)
    assert response.status_code == 201, json_of(response)
    return int(json_of(response)["id"]), key, body


def json_of(response: TestResponse) -> dict[str, Any]:
    """Return a JSON answer's body."""
    body = response.get_json()
    assert isinstance(body, dict), response.get_data(as_text=True)[:200]
    return body


def post_form(client: FlaskClient, page: str, action: str, **data: str) -> TestResponse:
    """Post a form found on a page with that page's CSRF token."""
    return client.post(action, data={"csrf_token": csrf_token(client, page), **data})


def fresh(session: Session) -> None:
    """End the test session's read transaction (SQLite reads a snapshot) and forget what it loaded."""
    session.commit()
    session.expire_all()


def status_of(session: Session, enrolment_id: int) -> EnrolmentStatus:
    fresh(session)
    enrolment = session.get(Enrolment, enrolment_id)
    assert enrolment is not None
    return enrolment.status


def test_the_queue_lists_the_waiting_enrolments_by_default_and_filters(admin_app: Flask, db_session: Session) -> None:
    client = signed_in(admin_app, "operator")
    waiting = text_of(client.get("/admin/enrolments"))
    # The demo's: a near-duplicate waiting in Thiès Nord, one sent back in Pékesse, one validated in Mont Rolland.
    assert "SUBMITTED" in waiting and "NEEDS_CHANGES" in waiting and "Photo de la carte" in waiting
    assert "Lamine Mbaye" not in waiting
    validated = text_of(client.get("/admin/enrolments?status=VALIDATED"))
    assert "Lamine Mbaye" in validated and re.search(r"SN-MR-000001-\d", validated)
    only_pk = text_of(client.get("/admin/enrolments?mutuelle=SN-PK&status=any"))
    assert "Bineta Gueye" in only_pk and "Lamine Mbaye" not in only_pk
    assert client.get("/admin/enrolments?status=DONE").status_code == 400
    assert client.get("/admin/enrolments?collector=x").status_code == 400
    # The menu counts the enrolments waiting for staff.
    assert re.search(r'Enrolments <span class="count"[^>]*>\d+</span>', client.get("/admin/").get_data(as_text=True))


def test_an_enrolment_is_shown_beside_its_candidates_with_why(admin_app: Flask, db_session: Session) -> None:
    demo = db_session.scalars(select(Enrolment).where(Enrolment.client_id == "demo-tn-1")).one()
    client = signed_in(admin_app, "viewer")
    page = client.get(f"/admin/enrolments/{demo.id}")
    assert page.status_code == 200
    text = text_of(page)
    household = LOOK_ALIKE_OF.rsplit("-", 1)[0]
    assert f"member {LOOK_ALIKE_OF}" in text and f"household {household}" in text
    assert "name 100% alike" in text and "date of birth" in text
    assert "submit by collector:" in text  # the audit trail
    # A viewer sees, but is offered no decision.
    assert "validate-form" not in page.get_data(as_text=True)


def test_validating_creates_the_household_and_queues_the_welcome_sms(admin_app: Flask, db_session: Session) -> None:
    enrolment_id, key, body = enrol(admin_app, db_session)
    page = f"/admin/enrolments/{enrolment_id}"
    client = signed_in(admin_app, "operator")
    assert "Validate and number the household" in text_of(client.get(page))
    done = post_form(client, page, f"{page}/validate")
    assert done.status_code == 302, text_of(done)[:500]
    fresh(db_session)
    enrolment = db_session.get(Enrolment, enrolment_id)
    assert enrolment is not None and enrolment.status is EnrolmentStatus.VALIDATED
    made = db_session.get(Household, enrolment.household_id)
    assert made is not None and re.fullmatch(r"SN-TN-\d{6}-\d", made.household_no)
    assert done.headers["Location"] == f"/admin/households/{made.id}"
    landed = text_of(client.get(done.headers["Location"]))
    assert f"Enrolment #{enrolment_id} validated: household {made.household_no}; welcome SMS queued." in landed
    members = db_session.scalars(select(Member.member_no).where(Member.household_id == made.id)).all()
    assert sorted(members) == [f"{made.household_no}-01", f"{made.household_no}-02"]
    head_phone = body["members"][0]["phone"]
    welcome = db_session.scalars(select(Message).where(Message.phone == head_phone)).one()
    assert welcome.template == "welcome" and made.household_no in welcome.body
    assert welcome.status in (MessageStatus.QUEUED, MessageStatus.NOT_SENT, MessageStatus.SUCCESS)
    shown = text_of(client.get(page))
    assert made.household_no in shown and "SUBMITTED → VALIDATED validate by operator" in shown
    again = post_form(client, page, f"{page}/validate")
    assert again.status_code == 400 and "it cannot be validated" in text_of(again)
    read = admin_app.test_client().get(f"/api/enrolments/{enrolment_id}", headers={"Authorization": f"Bearer {key}"})
    assert json_of(read)["household_no"] == made.household_no


def test_rejecting_needs_a_reason(admin_app: Flask, db_session: Session) -> None:
    enrolment_id, key, _ = enrol(admin_app, db_session)
    page = f"/admin/enrolments/{enrolment_id}"
    client = signed_in(admin_app, "operator")
    refused = post_form(client, page, f"{page}/reject", reason="   ")
    assert refused.status_code == 400 and "Give a reason: the collector reads it." in text_of(refused)
    assert status_of(db_session, enrolment_id) is EnrolmentStatus.SUBMITTED
    done = post_form(client, page, f"{page}/reject", reason="Already a member of Pekesse")
    assert done.status_code == 302
    assert status_of(db_session, enrolment_id) is EnrolmentStatus.REJECTED
    read = admin_app.test_client().get(f"/api/enrolments/{enrolment_id}", headers={"Authorization": f"Bearer {key}"})
    assert (json_of(read)["status"], json_of(read)["reason"]) == ("REJECTED", "Already a member of Pekesse")


def test_asked_for_changes_the_collector_resubmits_and_it_is_submitted_again(
    admin_app: Flask, db_session: Session
) -> None:
    enrolment_id, key, body = enrol(admin_app, db_session)
    page = f"/admin/enrolments/{enrolment_id}"
    client = signed_in(admin_app, "operator")
    refused = post_form(client, page, f"{page}/needs-changes", reason="")
    assert refused.status_code == 400 and "Say what to fix" in text_of(refused)
    done = post_form(client, page, f"{page}/needs-changes", reason="The child's date of birth is wrong")
    assert done.status_code == 302
    assert status_of(db_session, enrolment_id) is EnrolmentStatus.NEEDS_CHANGES

    broken = {**body, "members": [{**body["members"][0], "date_of_birth": "1988-13-01"}, body["members"][1]]}
    bad = submit(admin_app, key, broken)
    assert bad.status_code == 422 and "members[0].date_of_birth" in json_of(bad)["errors"]
    assert status_of(db_session, enrolment_id) is EnrolmentStatus.NEEDS_CHANGES  # nothing changed

    corrected = {**body, "members": [body["members"][0], {**body["members"][1], "date_of_birth": "2018-01-30"}]}
    again = submit(admin_app, key, corrected)
    assert again.status_code == 200 and json_of(again)["id"] == enrolment_id
    assert json_of(again)["status"] == "SUBMITTED" and isinstance(json_of(again)["duplicates"], list)
    fresh(db_session)
    enrolment = db_session.get(Enrolment, enrolment_id)
    assert enrolment is not None and enrolment.status is EnrolmentStatus.SUBMITTED and enrolment.reason is None
    assert [m.date_of_birth.isoformat() for m in enrolment.members] == ["1988-07-23", "2018-01-30"]
    actions = db_session.scalars(
        select(EnrolmentEvent.action).where(EnrolmentEvent.enrolment_id == enrolment_id).order_by(EnrolmentEvent.id)
    ).all()
    assert actions == ["submit", "needs-changes", "resubmit"]
    assert "NEEDS_CHANGES → SUBMITTED resubmit by collector:" in text_of(client.get(page))

    # Sent again once validated: answered as it is, nothing replaced.
    assert post_form(client, page, f"{page}/validate").status_code == 302
    late = submit(admin_app, key, {**corrected, "members": [corrected["members"][0]]})
    assert late.status_code == 200 and json_of(late)["status"] == "VALIDATED"
    fresh(db_session)
    enrolment = db_session.get(Enrolment, enrolment_id)
    assert enrolment is not None and len(enrolment.members) == 2


def test_a_viewer_cannot_decide(admin_app: Flask, db_session: Session) -> None:
    enrolment_id, _, _ = enrol(admin_app, db_session)
    page = f"/admin/enrolments/{enrolment_id}"
    client = signed_in(admin_app, "viewer")
    for action, data in (("validate", {}), ("reject", {"reason": "no"}), ("needs-changes", {"reason": "no"})):
        assert post_form(client, page, f"{page}/{action}", **data).status_code == 403, action
    assert status_of(db_session, enrolment_id) is EnrolmentStatus.SUBMITTED


def test_staff_of_another_mutuelle_get_404(admin_app: Flask, db_session: Session) -> None:
    enrolment_id, _, _ = enrol(admin_app, db_session)
    username, password = OTHER_MUTUELLE_USER
    create_staff_user(db_session, username, password, StaffRole.OPERATOR, language="en", mutuelles=["SN-PK"])
    db_session.commit()
    client = admin_app.test_client()
    assert login(client, username, password).status_code == 302
    page = f"/admin/enrolments/{enrolment_id}"
    assert client.get(page).status_code == 404
    assert post_form(client, "/admin/", f"{page}/validate").status_code == 404
    assert status_of(db_session, enrolment_id) is EnrolmentStatus.SUBMITTED
    listed = text_of(client.get("/admin/enrolments?status=any"))
    assert "Bineta Gueye" in listed and f"Enrolment #{enrolment_id} " not in listed


def test_two_validations_racing_for_a_serial_both_succeed(admin_app: Flask, db_session: Session) -> None:
    first, _, _ = enrol(admin_app, db_session)
    second, _, _ = enrol(admin_app, db_session)
    sessions = admin_app.extensions["sessions"]  # with the outbox attached: validation queues the welcome SMS
    today = utcnow().date()
    outcome: dict[str, object] = {}

    def validate_second() -> None:
        with sessions() as other:
            try:
                done = validate_enrolment(other, second, "racer", today, "*384*123#")
                other.commit()
                outcome["number"] = done.household.household_no
            except SQLAlchemyError as exc:  # reported below, with its type
                outcome["error"] = exc

    with sessions() as session:
        number = validate_enrolment(session, first, "first", today, "*384*123#").household.household_no
        racer = threading.Thread(target=validate_second)
        racer.start()
        time.sleep(0.5)  # the racer now waits for the mutuelle's lock (PostgreSQL) or the write lock (SQLite)
        assert racer.is_alive()
        session.commit()
    racer.join(30)
    assert "error" not in outcome, repr(outcome.get("error"))
    assert outcome["number"] != number
    fresh(db_session)
    serials = db_session.scalars(select(Enrolment.serial).where(Enrolment.id.in_([first, second]))).all()
    assert len(set(serials)) == 2


def test_the_cli_says_clearly_when_the_database_refuses_a_validation(
    admin_app: Flask, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrolment_id, _, _ = enrol(admin_app, db_session)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    monkeypatch.setattr("commands.enrolments.validate_enrolment", refuse)
    result = admin_app.test_cli_runner().invoke(args=["enrolments", "validate", str(enrolment_id)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"enrolment {enrolment_id} not validated: the database refused it (IntegrityError)" in result.output
    assert status_of(db_session, enrolment_id) is EnrolmentStatus.SUBMITTED


# ---------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_space: backends.RedisSpace) -> Iterator[Server]:
    """Yield a running server on a demo-seeded SQLite database with an operator account."""
    running = demo_server(tmp_path_factory.mktemp("queue"), redis_space)
    with Session(get_engine(running.db_url)) as session:
        create_staff_user(session, "queue-operator", "operator-pass-123", StaffRole.OPERATOR, language="en")
        session.commit()
    yield from serve(running, redis_space)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    """Yield a headless Debian Chromium driven by Playwright."""
    with launch_chromium() as chromium:
        yield chromium


@pytest.mark.browser
def test_an_operator_validates_the_near_duplicate_from_the_queue(browser: Browser, server: Server) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{server.url}/admin/login")
    page.fill("input[name=username]", "queue-operator")
    page.fill("input[name=password]", "operator-pass-123")
    page.click("form[action$='/login'] button[type=submit]")
    page.wait_for_url(f"{server.url}/admin/")
    page.goto(f"{server.url}/admin/enrolments")
    page.locator("main tbody tr", has_text="SUBMITTED").locator("td.lead a").first.click()
    page.wait_for_url(re.compile(r"/admin/enrolments/\d+$"))
    candidate = page.locator("#candidates tbody tr", has_text=LOOK_ALIKE_OF)
    assert candidate.is_visible() and "alike" in candidate.inner_text()
    page.click("#validate-form button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/households/\d+$"))
    flash = page.locator(".flash").inner_text()
    number = re.search(r"household (SN-TN-\d{6}-\d)", flash)
    assert number, flash
    assert number.group(1) in page.locator("h1").inner_text()
    context.close()


def test_a_household_change_goes_through_the_same_queue_and_resubmission(admin_app: Flask, db_session: Session) -> None:
    """A birth reported by a collector: listed as a change, shown change by change, sent back, corrected, validated."""
    key = new_collector(db_session, "SN-TN")
    household = db_session.scalars(
        select(Household).join(Mutuelle).where(Mutuelle.code == "SN-TN").order_by(Household.id)
    ).first()
    assert household is not None
    number = household.household_no
    before = {m.member_no for m in household.members}
    birth = {
        "first_name": "Awa",
        "last_name": "Sow",
        "sex": "F",
        "date_of_birth": "2026-11-17",
        "relationship": "child",
    }
    body = {"client_id": f"change-{next(_forms)}", "household_no": number, "changes": [
        {"action": "add_member", "member": birth}]}  # fmt: skip
    created = submit(admin_app, key, body)
    assert created.status_code == 201, json_of(created)
    enrolment_id = int(json_of(created)["id"])

    client = signed_in(admin_app, "operator")
    assert f"change of {number}" in text_of(client.get("/admin/enrolments"))
    page = f"/admin/enrolments/{enrolment_id}"
    shown = text_of(client.get(page))
    assert "add_member Awa Sow (child, 2026-11-17)" in shown and number in shown
    assert post_form(client, page, f"{page}/needs-changes", reason="Born on the 18th").status_code == 302

    corrected = {**body, "changes": [{"action": "add_member", "member": {**birth, "date_of_birth": "2026-11-18"}}]}
    again = submit(admin_app, key, corrected)
    answer = json_of(again)
    assert again.status_code == 200 and (answer["id"], answer["status"]) == (enrolment_id, "SUBMITTED")
    assert "add_member Awa Sow (child, 2026-11-18)" in text_of(client.get(page))

    done = post_form(client, page, f"{page}/validate")
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/admin/households/{household.id}")
    fresh(db_session)
    added = {m.member_no for m in db_session.get(Household, household.id).members} - before  # type: ignore[union-attr]
    assert len(added) == 1 and added.pop().startswith(f"{number}-")
