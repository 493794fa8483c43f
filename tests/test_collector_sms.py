"""Collectors' evening SMS (issue 27): the summary of their day once per collector and day from the scheme's
evening, through the real clock job and RQ worker; none for a collector who opted out (CLI, or STOP through the
real SMS callback route), none without a phone or a form that day; START turns it on again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from click.testing import Result
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.base import MessageDirection, MessageStatus
from models.enrolment.collector_sms import CollectorDay, collector_day_key, send_collector_summaries, summary
from models.enrolment.tables import Collector
from models.messaging.message import Message
from models.messaging.outbox import attach_dispatch
from models.schemes.scheme import Scheme
from models.texts.i18n import render
from models.texts.sms_text import measure
from tests.backends import RQ_QUEUE
from tests.enrolment_helpers import household_form, post
from tests.members_helpers import cli
from tests.sms_helpers import job_env, queue, replies, run_jobs, sms

__all__ = ["cli", "job_env", "queue"]

AWA, BINTA, COUMBA, DIOP = "+221775550001", "+221775550002", None, "+221775550004"


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def collector(cli: Callable[..., Result], name: str, phone: str | None, *extra: str) -> tuple[int, str]:
    """Create a collector of SN-TN with the CLI; return its id and key."""
    args = ["collectors", "create", name, "--mutuelle", "SN-TN", *extra]
    if phone:
        args += ["--phone", phone]
    lines = ok(cli(*args)).strip().splitlines()
    return int(lines[0].split()[1]), lines[-1]


def submit(client: FlaskClient, key: str, client_id: str, last_name: str, number: int) -> int:
    body = household_form(client_id)
    for person in body["members"]:
        person["last_name"] = last_name
    body["members"][0].update(phone=f"77 200 00 {number:02d}", id_number=f"1 234 1986 002{number:02d}")
    created = post(client, key, body)
    assert created.status_code == 201, created.json
    return int(created.json["id"])


@pytest.fixture
def day(cli: Callable[..., Result], client: FlaskClient, session: Session) -> dict[str, Any]:
    """Four collectors: Awa sends three forms (one validated, one sent back), Binta (SMS off) one, Coumba (no phone)
    one, Diop nothing today."""
    awa, awa_key = collector(cli, "Awa Ndiaye", AWA)
    binta, binta_key = collector(cli, "Binta Fall", BINTA, "--language", "wo")
    coumba, coumba_key = collector(cli, "Coumba Sarr", COUMBA)
    diop, _ = collector(cli, "Diop Gueye", DIOP)
    assert "evening SMS off" in ok(cli("collectors", "sms", str(binta), "off"))
    assert cli("collectors", "sms", "999", "off").exit_code != 0
    forms = {
        name: submit(client, key, name, last, n)
        for n, (name, key, last) in enumerate(
            [
                ("awa-1", awa_key, "Sow"),
                ("awa-2", awa_key, "Ba"),
                ("awa-3", awa_key, "Diallo"),
                ("binta-1", binta_key, "Kane"),
                ("coumba-1", coumba_key, "Faye"),
            ]
        )
    }
    ok(cli("enrolments", "validate", str(forms["awa-1"])))
    ok(cli("enrolments", "needs-changes", str(forms["awa-2"]), "--reason", "photo floue"))
    scheme = session.scalars(select(Scheme).where(Scheme.code == "cmu-thies")).one()
    return {"ids": {"awa": awa, "binta": binta, "coumba": coumba, "diop": diop}, "forms": forms, "scheme": scheme}


def outbound(session: Session) -> list[Message]:
    """Return the collectors' summaries queued (not the head's welcome when a form is validated)."""
    session.commit()
    query = (
        select(Message)
        .where(Message.direction == MessageDirection.OUTBOUND, Message.template.like("collector_day%"))
        .order_by(Message.id)
    )
    return list(session.scalars(query.execution_options(populate_existing=True)))


def test_one_summary_per_collector_and_day_through_the_clock_and_a_real_worker(
    day: dict[str, Any], session: Session, run_worker: Callable[..., Any], redis_url: str
) -> None:
    # Any hour is the evening here: the job runs at the worker's own "now".
    session.execute(update(Scheme).values(collector_sms_at=time(0, 0)))
    session.commit()
    queue = Queue(RQ_QUEUE, connection=Redis.from_url(redis_url))
    for _run in range(2):  # two clocks firing at once
        queue.enqueue("workers.clock_jobs.send_collector_days")

    done = run_worker()

    assert done.returncode == 0, done.stderr
    [message] = outbound(session)
    today = day["scheme"].local_today()
    assert message.phone == AWA and message.template == "collector_day_fix" and message.language == "fr"
    assert message.body == (
        f"Bilan du {today:%d/%m/%Y} : 3 fiche(s) envoyée(s), 1 validée(s), 1 en attente, 1 à corriger : Ba Mariama"
    )
    assert message.dedupe_key == collector_day_key(day["ids"]["awa"], today)
    assert message.mutuelle_id is not None and message.household_id is None
    # Handed to the transport by the worker's send job (the console outbox here: no AT credentials), from SN-TN's
    # sender id; the phone never in full in the logs.
    assert (message.status, message.transport) == (MessageStatus.NOT_SENT, "console")
    assert "from MUT-TN" in done.stderr and AWA not in done.stderr

    queue.enqueue("workers.clock_jobs.send_collector_days")  # a later run the same evening
    assert run_worker().returncode == 0
    assert len(outbound(session)) == 1


@pytest.mark.parametrize(
    ("hour", "sent"),
    [(18, 0), (19, 1), (23, 1)],
)
def test_the_summaries_wait_for_the_schemes_evening(
    day: dict[str, Any], session: Session, hour: int, sent: int
) -> None:
    scheme: Scheme = day["scheme"]
    today = scheme.local_today()
    # Dakar is UTC all year: the local hour is the UTC hour.
    now = datetime.combine(today, time(hour, 5))
    attach_dispatch(session, lambda ids: None)
    assert send_collector_summaries(session, now) == sent
    session.commit()
    assert send_collector_summaries(session, now + timedelta(minutes=15)) == 0  # once a day
    assert [m.phone for m in outbound(session)] == [AWA] * sent
    # The next day nobody submitted anything: no summary.
    assert send_collector_summaries(session, now + timedelta(days=1)) == 0


def test_stop_and_start_from_a_collectors_phone(
    day: dict[str, Any], client: FlaskClient, session: Session, queue: Queue, job_env: None
) -> None:
    awa = session.get(Collector, day["ids"]["awa"])
    assert awa is not None and awa.sms_opt_in
    assert sms(client, AWA, "Stop").status_code == 200
    run_jobs(queue)
    session.commit()
    session.refresh(awa)
    assert awa.sms_opt_in is False
    [reply] = replies(session, AWA)
    assert reply.template == "collector_stop_done" and reply.language == "fr"
    assert reply.body.startswith("Vous ne recevrez plus le bilan de votre journée.")
    assert reply.mutuelle_id == awa.mutuelle_id
    # Opted out: tonight's job sends her nothing.
    scheme: Scheme = day["scheme"]
    evening = datetime.combine(scheme.local_today(), time(20, 0))
    attach_dispatch(session, lambda ids: None)
    assert send_collector_summaries(session, evening) == 0
    session.commit()

    assert sms(client, AWA, "START").status_code == 200
    run_jobs(queue)
    session.commit()
    session.refresh(awa)
    assert awa.sms_opt_in is True
    assert [m.template for m in replies(session, AWA)] == ["collector_stop_done", "collector_start_done"]
    assert send_collector_summaries(session, evening) == 1
    session.commit()
    # Binta's language is Wolof: her STOP is answered in it (she had turned it off with the CLI already).
    assert sms(client, BINTA, "bayil").status_code == 200
    run_jobs(queue)
    [answer] = replies(session, BINTA)
    assert (answer.template, answer.language) == ("collector_stop_done", "wo")


@pytest.mark.parametrize(
    ("names", "language", "template"),
    [
        ([], "fr", "collector_day"),
        (["Sow Mariama", "Ba Ibrahima"], "fr", "collector_day_fix"),
        (["Ndiaye Fatou"] * 9, "fr", "collector_day"),  # too long for one SMS: counted only
        (["Sow Mariama"], "wo", "collector_day_fix"),
        (["Sow Mariama"], "en", "collector_day_fix"),
    ],
)
def test_the_forms_to_correct_are_named_when_they_fit(names: list[str], language: str, template: str) -> None:
    figures = CollectorDay(1, submitted=12, validated=4, waiting=7, to_fix=names)
    chosen, values = summary(figures, date(2026, 12, 7), language)
    assert chosen == template and values["to_fix"] == len(names)
    assert measure(render(chosen, language, values)).segments == 1
