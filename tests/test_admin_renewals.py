"""The Renewals page through the admin's HTTP contract: who has not renewed, its CSV, and "send a reminder now"
(opt-out, daytime hours, once per household, kind and period with the clock's reminders, audited, sent by the worker).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from sqlalchemy import Engine, event, select, update
from sqlalchemy.orm import Session

import handlers.admin.renewals as renewals_handlers
import models.views.renewals as renewal_views
from models.access.staff import create_staff_user
from models.base import HouseholdStatus, Language, MessageStatus, StaffRole
from models.coverage.periods import book_subsidised_period
from models.coverage.premiums import amount_due
from models.db import get_engine
from models.members.household import Household, HouseholdEvent
from models.messaging.message import Message
from models.messaging.outbox import attach_dispatch
from models.messaging.reminders import manual_reminder_kind, send_due_reminders
from models.views.renewals import RENEWAL_COLUMNS
from redis_keys import sms_job_id
from tests import factories
from tests.admin_helpers import PASSWORDS, csrf_token, login, signed_in, text_of
from tests.backends import RQ_QUEUE
from tests.sms_helpers import job_env, run_jobs
from workers.sms_queue import rq_dispatch

__all__ = ["job_env"]  # the job-process environment fixture, for the worker test

NOW = datetime(2026, 12, 20, 10, 0)  # UTC: 10:00 in Dakar (UTC all year), 17:00 in Phnom Penh
TODAY = NOW.date()
USSD = "*384*123#"
ENROLLED = date(2025, 7, 1)

# The cast, in creation order (so in household-number order), with the day each paid its yearly 8,000 F
# (1,000 F fee + a household of two's 7,000 F share; the cover runs a year from the payment).
CAST: list[tuple[str, date | None]] = [
    ("ending", date(2026, 1, 1)),  # cover ends 2026-12-31: 11 days left
    ("stop", date(2026, 1, 1)),  # the same, but it sent STOP
    ("network", date(2026, 1, 10)),  # ends 2027-01-09, network RES-A, commune Pekesse
    ("ending-later", date(2026, 1, 15)),  # ends 2027-01-14: 25 days left
    ("grace", date(2025, 12, 1)),  # ended 2026-11-30: in CMU's 30 days of grace
    ("lapsed", date(2025, 10, 25)),  # ended 2026-10-24, lapsed on 2026-11-24: 26 days ago
    ("lapsed-long", date(2025, 8, 1)),  # lapsed on 2026-08-31: 111 days ago
    ("covered", date(2026, 6, 1)),  # ends 2027-05-31
    ("renewed", date(2026, 1, 1)),  # paid again on 2026-12-10: covered until 2027-12-31
    ("suspended", date(2026, 1, 1)),  # suspended by staff
    ("bsf", None),  # fully subsidised: the state's period ends 2026-12-31
    ("pending", None),  # enrolled, never paid
]
CAST_END = {
    "ending": date(2026, 12, 31),
    "stop": date(2026, 12, 31),
    "network": date(2027, 1, 9),
    "ending-later": date(2027, 1, 14),
    "grace": date(2026, 11, 30),
    "lapsed": date(2026, 10, 24),
    "lapsed-long": date(2026, 7, 31),
    "covered": date(2027, 5, 31),
}


@pytest.fixture
def staff(session: Session) -> None:
    """Create the viewer, operator and admin of `tests.admin_helpers` in the test's database."""
    for role, password in PASSWORDS.items():
        create_staff_user(session, role, password, StaffRole(role), language="en")
    create_staff_user(session, "awa", "awa-pass-1234", StaffRole.OPERATOR)  # French, the admin's default
    session.commit()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Set the admin's clock (UTC) to NOW; return a function to move it."""

    def set_now(now: datetime) -> None:
        monkeypatch.setattr(renewals_handlers, "utcnow", lambda: now)

    set_now(NOW)
    return set_now


@pytest.fixture
def cast(session: Session, staff: None, clock: Callable[[datetime], None]) -> dict[str, Household]:
    """Create the CMU households of CAST, each with its head's phone; return them by label."""
    cmu = factories.scheme(session, "cmu-thies")
    network = factories.make_network(session, cmu, code="RES-A")
    households = {}
    for index, (label, paid_on) in enumerate(CAST, start=1):
        household = factories.make_household(
            session,
            cmu,
            size=2,
            phone=f"+2217712300{index:02d}",
            enrolled_on=ENROLLED,
            category="bsf" if label == "bsf" else "standard",
            network=network if label == "network" else None,
        )
        if paid_on is not None:
            factories.pay(session, household, 8000, paid_on)
        households[label] = household
    factories.pay(session, households["renewed"], 7000, date(2026, 12, 10))
    book_subsidised_period(session, households["bsf"], date(2026, 1, 1))
    session.execute(update(Household).where(Household.id == households["network"].id).values(commune="Pekesse"))
    session.execute(update(Household).where(Household.id == households["stop"].id).values(sms_opt_in=False))
    suspended = households["suspended"].id
    session.execute(update(Household).where(Household.id == suspended).values(status=HouseholdStatus.SUSPENDED))
    session.commit()
    return households


def labels_of(cast: dict[str, Household]) -> dict[str, str]:
    """Return the cast's labels by household number."""
    return {household.household_no: label for label, household in cast.items()}


def renewal_csv(client: FlaskClient, query: str) -> list[dict[str, str]]:
    """Return the rows of the renewal list's CSV for a query string."""
    with client.get(f"/admin/renewals.csv?{query}") as response:  # closed: its request context and session end
        assert response.status_code == 200, response.get_data(as_text=True)
        return list(csv.DictReader(io.StringIO(response.get_data(as_text=True).removeprefix("\ufeff"))))


def remind(client: FlaskClient, path: str) -> str:
    """Post a reminder form from the renewals page as a browser does; return the flash message shown after."""
    response = client.post(path, data={"csrf_token": csrf_token(client, "/admin/renewals")}, follow_redirects=True)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    start = page.index('<p class="flash">') + len('<p class="flash">')
    return text_of_html(page[start : page.index("</p>", start)])


def text_of_html(fragment: str) -> str:
    """Return an HTML fragment's text with the entities Jinja escapes undone."""
    return fragment.replace("&#39;", "'").replace("&amp;", "&").replace("&#34;", '"')


def reminders_of(session: Session, household: Household) -> list[Message]:
    """Return the reminders stored for a household, oldest first."""
    session.commit()
    query = select(Message).where(Message.household_id == household.id, Message.template.like("reminder_%"))
    return list(session.scalars(query.order_by(Message.id).execution_options(populate_existing=True)))


class QueryCounter:
    """Count the SQL statements an engine runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0

    def __enter__(self) -> QueryCounter:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: object) -> None:
        self.count += 1


# ---------------------------------------------------------------- the list


LIST_CASES = [
    ("", ["lapsed", "grace", "ending", "stop", "network", "ending-later"]),
    ("kind=ending", ["ending", "stop", "network", "ending-later"]),
    ("kind=ending&days=15", ["ending", "stop"]),
    ("kind=ending&days=200", ["ending", "stop", "network", "ending-later", "covered"]),
    ("kind=grace", ["grace"]),
    ("kind=lapsed", ["lapsed"]),
    ("kind=lapsed&days=25", []),
    ("kind=lapsed&days=120", ["lapsed-long", "lapsed"]),
    ("network=RES-A", ["network"]),
    ("network=res-a&kind=ending", ["network"]),
    ("network=RES-A&kind=grace", []),
    ("commune=Pekesse", ["network"]),
    ("commune=Thiès Nord&kind=ending&days=15", ["ending", "stop"]),
    ("plan=half-yearly", []),
    ("category=standard&kind=grace", ["grace"]),
]


@pytest.mark.parametrize(("query", "expected"), LIST_CASES, ids=[q or "default" for q, _ in LIST_CASES])
def test_the_list_holds_who_has_not_renewed_oldest_end_first(
    app: Flask, cast: dict[str, Household], query: str, expected: list[str]
) -> None:
    client = signed_in(app, "viewer")
    rows = renewal_csv(client, query)
    labels = labels_of(cast)
    assert [labels[row["household_no"]] for row in rows] == expected
    for row in rows:
        label = labels[row["household_no"]]
        kind = "ending" if CAST_END[label] >= TODAY else "grace" if label == "grace" else "lapsed"
        assert (row["kind"], row["cover_end"], row["on"]) == (kind, CAST_END[label].isoformat(), TODAY.isoformat())
    page = text_of(client.get(f"/admin/renewals?{query}"))
    assert f"Households in this list: {len(expected)}" in page


def test_the_count_stops_beyond_its_limit_and_the_page_still_lists_its_rows(
    app: Flask, cast: dict[str, Household], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The count reads at most COUNT_LIMIT + 1 households (10,000 in the app), here 3: the default list holds 6.
    monkeypatch.setattr(renewal_views, "COUNT_LIMIT", 3)
    monkeypatch.setattr(renewals_handlers, "COUNT_LIMIT", 3)
    page = signed_in(app, "operator").get("/admin/renewals").get_data(as_text=True)
    assert "Households in this list: more than 3" in text_of_html(page)
    assert "Remind all (more than 3)" in text_of_html(page)
    assert page.count("Remind now") == 6  # every row of the page, not the counted ones only
    assert "Households in this list: 1" in text_of(signed_in(app, "viewer").get("/admin/renewals?kind=grace"))
    # At the limit itself the count is exact (4 households, counted up to 5).
    monkeypatch.setattr(renewal_views, "COUNT_LIMIT", 4)
    monkeypatch.setattr(renewals_handlers, "COUNT_LIMIT", 4)
    assert "Households in this list: 4" in text_of(signed_in(app, "viewer").get("/admin/renewals?kind=ending"))


def test_each_row_has_the_heads_phone_the_amount_the_last_payment_and_the_last_reminder(
    app: Flask, cast: dict[str, Household], session: Session
) -> None:
    client = signed_in(app, "operator")
    assert remind(client, f"/admin/renewals/{cast['grace'].id}/remind").endswith("reminder queued.")
    rows = {row["household_no"]: row for row in renewal_csv(client, "")}
    grace, ending = rows[cast["grace"].household_no], rows[cast["ending"].household_no]
    assert grace["head_phone"] == "+221771230005" and grace["head_name"] == "Awa Diop"
    assert (grace["coverage_status"], grace["amount"], grace["due_on"], grace["currency"]) == (
        "GRACE",
        "7000",
        TODAY.isoformat(),
        "XOF",
    )
    assert (grace["last_payment_on"], grace["last_payment_amount"]) == ("2025-12-01", "8000")
    assert (grace["last_reminder_kind"], grace["last_reminder_status"]) == ("lapsed", "QUEUED")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", grace["last_reminder_at"])  # when it was queued, UTC
    assert (ending["coverage_status"], ending["amount"], ending["due_on"]) == ("ACTIVE", "7000", "2026-12-31")
    assert (ending["last_reminder_kind"], ending["last_reminder_at"]) == ("", "")
    assert rows[cast["stop"].household_no]["sms_opt_in"] == "false"
    assert rows[cast["network"].household_no]["network_code"] == "RES-A"

    page = text_of(client.get("/admin/renewals"))
    assert f"{cast['grace'].household_no} Thiès Nord grace 2026-11-30 Awa Diop +221771230005" in page
    assert "7 000 F CFA by 2026-12-20 2025-12-01 8 000 F CFA" in page
    assert "lapsed · QUEUED" in page
    assert "+221771230002 STOP" in page


@pytest.mark.parametrize(
    ("role", "buttons"), [("viewer", False), ("operator", True), ("admin", True)], ids=["viewer", "operator", "admin"]
)
def test_only_operators_see_the_reminder_buttons(
    app: Flask, cast: dict[str, Household], role: str, buttons: bool
) -> None:
    page = signed_in(app, role).get("/admin/renewals").get_data(as_text=True)
    assert ("Remind now" in page) is buttons
    assert ('id="remind-all"' in page) is buttons


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("kind=soon", "kind must be one of ending, grace, lapsed"),
        ("days=-1", "days must be a whole number"),
        ("days=99999", "days must be between 0 and 3660"),
        ("network=NOPE", "network: no network has the code 'NOPE'"),
        ("scheme=x", "scheme must be a whole number"),
    ],
)
def test_a_bad_filter_is_refused_naming_it(app: Flask, cast: dict[str, Household], query: str, message: str) -> None:
    client = signed_in(app, "viewer")
    for path in ("/admin/renewals", "/admin/renewals.csv"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 400
        assert message in text_of(response)


def test_the_page_runs_the_same_queries_for_2_rows_as_for_100(
    app: Flask, cast: dict[str, Household], db_url: str
) -> None:
    client = signed_in(app, "viewer")
    counts = []
    for per in (2, 100):
        with QueryCounter(get_engine(db_url)) as counter:
            response = client.get(f"/admin/renewals?days=400&per={per}")
        assert response.status_code == 200
        counts.append(counter.count)
    assert counts[0] == counts[1], counts
    assert counts[1] <= 20, counts


def test_the_csv_is_streamed_with_the_documented_header(app: Flask, cast: dict[str, Household]) -> None:
    with signed_in(app, "viewer").get("/admin/renewals.csv?sep=semicolon") as response:
        assert response.is_streamed and response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"].startswith('attachment; filename="renewals-')
        text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:]), delimiter=";"))
    assert rows[0] == [name for name, _ in RENEWAL_COLUMNS]
    assert len(rows) == 1 + 6


# ---------------------------------------------------------------- send a reminder now

REMIND_CASES = [
    # label, flash, kind of the dedupe key, template
    ("ending", "reminder queued.", "before-14", "reminder_before"),  # 11 days left: the clock's 14-day reminder
    ("ending-later", "reminder queued.", "before-14", "reminder_before"),  # 25 days: the first the clock would send
    ("network", "reminder queued.", "before-14", "reminder_before"),
    ("grace", "reminder queued.", "lapsed", "reminder_lapsed"),  # CMU's grace does not cover
    ("lapsed", "reminder queued.", "lapsed", "reminder_lapsed"),
    ("lapsed-long", "reminder queued.", "lapsed", "reminder_lapsed"),  # too late for the clock, not for staff
    ("stop", "not sent: opted out (STOP).", None, None),
    ("suspended", "not sent: suspended or closed.", None, None),
    ("bsf", "not sent: fully subsidised (nothing to ask).", None, None),
    ("pending", "not sent: never covered.", None, None),
]


@pytest.mark.parametrize(("label", "flash", "kind", "template"), REMIND_CASES, ids=[c[0] for c in REMIND_CASES])
def test_a_reminder_sent_by_hand_follows_the_clocks_rules_and_is_audited(
    app: Flask,
    cast: dict[str, Household],
    session: Session,
    label: str,
    flash: str,
    kind: str | None,
    template: str | None,
) -> None:
    household = cast[label]
    client = signed_in(app, "operator")
    assert remind(client, f"/admin/renewals/{household.id}/remind?kind=ending") == (
        f"Household {household.household_no}: {flash}"
    )
    sent = reminders_of(session, household)
    events = list(session.scalars(select(HouseholdEvent).where(HouseholdEvent.household_id == household.id)))
    if kind is None:
        assert sent == [] and events == []
        return
    end, head = CAST_END[label], household.head
    assert head is not None
    assert [(m.dedupe_key, m.template, m.phone, m.status) for m in sent] == [
        (f"reminder:{household.id}:{kind}:{end.isoformat()}", template, head.phone, MessageStatus.QUEUED)
    ]
    assert [(e.actor, e.action, e.before_status, e.after_status) for e in events] == [
        ("operator", "reminder", "ACTIVE", "ACTIVE")
    ]
    assert f"{kind} reminder for the cover ending {end.isoformat()} sent by hand" in events[0].note
    assert "7 000 F CFA" in sent[0].body


def test_a_french_operator_reads_the_outcome_in_french(app: Flask, cast: dict[str, Household]) -> None:
    client = app.test_client()
    assert login(client, "awa", "awa-pass-1234").status_code == 302
    page = text_of(client.get("/admin/renewals?kind=ending"))
    assert "Renouvellements" in page and "Ménages dans cette liste : 4" in page and "Rappeler les 4" in page
    assert remind(client, f"/admin/renewals/{cast['stop'].id}/remind") == (
        f"Ménage {cast['stop'].household_no} : non envoyé : désinscrit (STOP)."
    )


def test_the_reminder_goes_out_through_the_outbox_after_the_commit(
    app: Flask, cast: dict[str, Household], session: Session, redis_url: str, job_env: None
) -> None:
    queue = Queue(RQ_QUEUE, connection=Redis.from_url(redis_url))
    remind(signed_in(app, "operator"), f"/admin/renewals/{cast['ending'].id}/remind")
    [message] = reminders_of(session, cast["ending"])
    assert queue.job_ids == [sms_job_id(message.id)]
    run_jobs(queue)
    [message] = reminders_of(session, cast["ending"])
    assert message.status is MessageStatus.NOT_SENT  # the console outbox "sent" it: no Africa's Talking account
    assert message.body == (
        f"Ménage {cast['ending'].household_no} : couvert jusqu'au 31/12/2026. "
        "Prochain paiement : 7 000 F CFA avant le 31/12/2026. Composez *384*123#"
    )


@pytest.mark.parametrize(
    ("now", "sent"),
    [
        (datetime(2026, 12, 20, 7, 59), False),
        (datetime(2026, 12, 20, 8, 0), True),
        (datetime(2026, 12, 20, 19, 59), True),
        (datetime(2026, 12, 20, 20, 0), False),
        (datetime(2026, 12, 20, 23, 30), False),
        (datetime(2026, 12, 21, 2, 0), False),
    ],
    ids=["07:59", "08:00", "19:59", "20:00", "23:30", "02:00"],
)
def test_outside_the_schemes_daytime_hours_a_reminder_is_refused_with_the_hours(
    app: Flask,
    cast: dict[str, Household],
    session: Session,
    clock: Callable[[datetime], None],
    now: datetime,
    sent: bool,
) -> None:
    clock(now)
    household = cast["ending"]
    flash = remind(signed_in(app, "operator"), f"/admin/renewals/{household.id}/remind")
    if sent:
        assert flash == f"Household {household.household_no}: reminder queued."
        assert len(reminders_of(session, household)) == 1
    else:
        assert flash == (
            f"Household {household.household_no}: not sent: refused outside daytime hours. Reminders go out in the "
            f"scheme's daytime hours only (Mutuelle CMU Thies: {now:%H:%M} there, daytime 08:00–20:00): try again then."
        )
        assert reminders_of(session, household) == []


@pytest.fixture
def outbox(session: Session, redis_url: str) -> Session:
    """Return the test session wired like a job's, for the clock's reminder run."""
    attach_dispatch(session, rq_dispatch(redis_url, RQ_QUEUE))
    return session


def test_a_reminder_sent_by_hand_is_not_sent_again_by_hand_nor_by_the_clock(
    app: Flask, cast: dict[str, Household], outbox: Session
) -> None:
    household = cast["ending"]
    client = signed_in(app, "operator")
    path = f"/admin/renewals/{household.id}/remind"
    assert remind(client, path).endswith("reminder queued.")
    assert remind(client, path).endswith("not sent: already sent for this period.")
    send_due_reminders(outbox, NOW + timedelta(hours=1), USSD)  # the clock's hourly run: its 14-day reminder is due
    outbox.commit()
    assert [m.dedupe_key for m in reminders_of(outbox, household)] == [f"reminder:{household.id}:before-14:2026-12-31"]


def test_a_reminder_the_clock_sent_is_not_sent_again_by_hand_but_the_next_kind_is(
    app: Flask, cast: dict[str, Household], outbox: Session, clock: Callable[[datetime], None]
) -> None:
    household = cast["ending"]
    send_due_reminders(outbox, NOW, USSD)  # 11 days before the end: the 14-day reminder
    outbox.commit()
    client = signed_in(app, "operator")
    path = f"/admin/renewals/{household.id}/remind"
    assert remind(client, path).endswith("not sent: already sent for this period.")
    clock(datetime(2026, 12, 29, 9, 0))  # 2 days before the end: the 3-day reminder's turn
    assert remind(client, path).endswith("reminder queued.")
    assert remind(client, path).endswith("not sent: already sent for this period.")
    assert [m.dedupe_key for m in reminders_of(outbox, household)] == [
        f"reminder:{household.id}:before-14:2026-12-31",
        f"reminder:{household.id}:before-3:2026-12-31",
    ]


def test_the_whole_filtered_list_is_reminded_once(app: Flask, cast: dict[str, Household], session: Session) -> None:
    client = signed_in(app, "operator")
    assert remind(client, "/admin/renewals/remind?kind=ending&network=RES-A") == "Reminders: 1 queued."
    assert (
        remind(client, "/admin/renewals/remind?kind=ending")
        == "Reminders: 2 queued, 1 already sent for this period, 1 opted out (STOP)."
    )
    assert remind(client, "/admin/renewals/remind?kind=ending") == (
        "Reminders: 3 already sent for this period, 1 opted out (STOP)."
    )
    assert remind(client, "/admin/renewals/remind?kind=grace&network=RES-A") == "No household to remind in this list."
    reminded = {label for label, household in cast.items() if reminders_of(session, household)}
    assert reminded == {"ending", "network", "ending-later"}
    events = session.scalars(select(HouseholdEvent).where(HouseholdEvent.action == "reminder")).all()
    assert len(events) == 3


def test_the_list_is_reminded_outside_daytime_never(
    app: Flask, cast: dict[str, Household], session: Session, clock: Callable[[datetime], None]
) -> None:
    clock(datetime(2026, 12, 20, 21, 15))
    flash = remind(signed_in(app, "operator"), "/admin/renewals/remind")
    assert flash.startswith("Reminders: 6 refused outside daytime hours.")
    assert "(Mutuelle CMU Thies: 21:15 there, daytime 08:00–20:00)" in flash
    assert session.scalars(select(Message).where(Message.template.like("reminder_%"))).all() == []


def test_in_a_grace_that_covers_the_reminder_says_covered_until_the_end_of_grace(
    app: Flask, session: Session, staff: None, clock: Callable[[datetime], None]
) -> None:
    sky = factories.scheme(session, "sky-cambodia")  # 15 days of grace that cover; daytime 07:00-19:00 UTC+7
    household = factories.make_household(session, sky, size=2, phone="+85512345678", enrolled_on=ENROLLED)
    household.language = Language.EN
    session.commit()
    factories.pay(session, household, amount_due(session, household, date(2026, 11, 10)).total, date(2026, 11, 10))
    client = signed_in(app, "operator")
    assert [row["kind"] for row in renewal_csv(client, "kind=grace")] == ["grace"]  # ended 2026-12-09
    assert remind(client, f"/admin/renewals/{household.id}/remind").endswith("reminder queued.")
    [message] = reminders_of(session, household)
    assert message.dedupe_key == f"reminder:{household.id}:grace:2026-12-09"
    assert message.body == (
        f"Household {household.household_no}: covered until 24/12/2026. Next payment: 3,600 riel before 24/12/2026. "
        "Dial *384*123#"
    )


@pytest.mark.parametrize(
    ("path", "role", "status"),
    [
        ("/admin/renewals/remind", "viewer", 403),
        ("/admin/renewals/1/remind", "viewer", 403),
        ("/admin/renewals/999999/remind", "operator", 404),
    ],
)
def test_sending_needs_an_operator(app: Flask, cast: dict[str, Household], path: str, role: str, status: int) -> None:
    client = signed_in(app, role)
    response = client.post(path, data={"csrf_token": csrf_token(client, "/admin/renewals")})
    assert response.status_code == status


def test_sending_needs_the_forms_csrf_token(app: Flask, cast: dict[str, Household], session: Session) -> None:
    client = signed_in(app, "operator")
    response = client.post(f"/admin/renewals/{cast['ending'].id}/remind", data={})
    assert response.status_code == 400
    assert "The form expired or was forged" in text_of(response)
    assert reminders_of(session, cast["ending"]) == []


def test_signed_out_the_list_asks_to_sign_in(app: Flask) -> None:
    for path in ("/admin/renewals", "/admin/renewals.csv"):
        response = app.test_client().get(path)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


# ---------------------------------------------------------------- the kind a reminder by hand counts as

KIND_CASES = [
    # today, cover ends, grace covers?, kind, the "covered until" it names
    (date(2026, 12, 1), date(2026, 12, 31), False, "before-14", date(2026, 12, 31)),  # none due yet: the first
    (date(2026, 12, 17), date(2026, 12, 31), False, "before-14", date(2026, 12, 31)),  # the clock's, due today
    (date(2026, 12, 28), date(2026, 12, 31), False, "before-3", date(2026, 12, 31)),
    (date(2026, 12, 31), date(2026, 12, 31), False, "before-3", date(2026, 12, 31)),  # the last day of cover
    (date(2027, 1, 1), date(2026, 12, 31), False, "lapsed", date(2026, 12, 31)),  # grace that does not cover
    (date(2027, 1, 1), date(2026, 12, 31), True, "grace", date(2027, 1, 30)),  # grace that covers: until its end
    (date(2027, 1, 30), date(2026, 12, 31), True, "grace", date(2027, 1, 30)),
    (date(2027, 1, 31), date(2026, 12, 31), True, "lapsed", date(2026, 12, 31)),  # lapsed: the clock's kind
    (date(2027, 6, 1), date(2026, 12, 31), False, "lapsed", date(2026, 12, 31)),  # long lapsed
]


@pytest.mark.parametrize(("today", "end", "covers", "kind", "until"), KIND_CASES)
def test_a_reminder_by_hand_counts_as_the_clocks_of_the_day(
    today: date, end: date, covers: bool, kind: str, until: date
) -> None:
    assert manual_reminder_kind(today, end, [14, 3], 30, covers) == (kind, until)
