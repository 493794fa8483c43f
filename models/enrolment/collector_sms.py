"""Collectors' evening SMS: the summary of their day, once per collector and day, from the scheme's evening on.

A collector who submitted (or resubmitted) at least one form on the scheme's local day, has a phone, is active
and has not opted out gets one SMS in their language (theirs, else the scheme's): the forms they sent that day,
how many of their forms were validated that day, how many wait for a decision and how many staff sent back for
changes — those named by their head (`Sow Mariama`) when the text still fits one SMS, else only counted.

The clock runs the job several times an evening (`workers/cron.py`); a run before the scheme's
`collector_sms_at` (its scheme file's `[enrolment]`, 19:00 by default) sends nothing, and each summary is an
outbox message keyed `collector-day:<collector>:<day>` (unique), so a second run, a second clock or a retried
job sends nothing twice. The counts are those of the first run of the evening. The SMS goes out with the
collector's mutuelle's sender id (`Message.mutuelle_id`).

Opting out: STOP from the collector's phone (`models.messaging.inbound`), or `flask collectors sms <id> off`;
START, or `… on`, turns it on again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from logs import mask_phone
from models.db import begin_write
from models.enrolment.tables import Collector, Enrolment, EnrolmentEvent, EnrolmentMember, EnrolmentStatus
from models.messaging.message import Message
from models.messaging.outbox import compose, send_sms
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme, utc_start
from models.texts.i18n import resolve_language
from models.texts.sms_text import measure

log = logging.getLogger(__name__)

COLLECTOR_DAY_KEY = "collector-day:{}:{}"
SUBMITTING = ("submit", "resubmit")
NAME_LENGTH = 20  # a head's name in the list of forms to correct is cut to this


def collector_day_key(collector_id: int, day: date) -> str:
    """Return the outbox key of a collector's summary of a day."""
    return COLLECTOR_DAY_KEY.format(collector_id, day.isoformat())


@dataclass
class CollectorDay:
    """What a collector did on a day, and where their forms stand."""

    collector_id: int
    submitted: int = 0
    validated: int = 0
    waiting: int = 0
    to_fix: list[str] = field(default_factory=list)  # the heads of the forms sent back for changes


def collector_days(session: Session, scheme: Scheme, day: date) -> list[CollectorDay]:
    """Return each collector of the scheme who submitted a form on its local day, with their figures."""
    zone = ZoneInfo(scheme.timezone)
    since, before = utc_start(day, zone), utc_start(day + timedelta(days=1), zone)
    active: dict[int, int] = {
        collector_id: int(count)
        for collector_id, count in session.execute(
            select(Enrolment.collector_id, func.count(func.distinct(Enrolment.id)))
            .join(EnrolmentEvent, EnrolmentEvent.enrolment_id == Enrolment.id)
            .where(
                Enrolment.scheme_id == scheme.id,
                EnrolmentEvent.action.in_(SUBMITTING),
                EnrolmentEvent.actor.like("collector:%"),  # not staff submitting a change for them
                EnrolmentEvent.created_at >= since,
                EnrolmentEvent.created_at < before,
            )
            .group_by(Enrolment.collector_id)
        ).all()
    }
    if not active:
        return []
    days = {collector_id: CollectorDay(collector_id, count) for collector_id, count in active.items()}

    def count(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    decided_today = and_(
        Enrolment.status == EnrolmentStatus.VALIDATED, Enrolment.decided_at >= since, Enrolment.decided_at < before
    )
    for collector_id, validated, waiting in session.execute(
        select(
            Enrolment.collector_id,
            count(decided_today),
            count(Enrolment.status == EnrolmentStatus.SUBMITTED),
        )
        .where(Enrolment.collector_id.in_(list(days)))
        .group_by(Enrolment.collector_id)
    ).all():
        days[collector_id].validated, days[collector_id].waiting = int(validated), int(waiting)
    for collector_id, last_name, first_name in session.execute(
        select(Enrolment.collector_id, EnrolmentMember.last_name, EnrolmentMember.first_name)
        .join(EnrolmentMember, EnrolmentMember.enrolment_id == Enrolment.id)
        .where(
            Enrolment.collector_id.in_(list(days)),
            Enrolment.status == EnrolmentStatus.NEEDS_CHANGES,
            EnrolmentMember.relationship_to_head == "head",
        )
        .order_by(Enrolment.collector_id, Enrolment.updated_at, Enrolment.id)
    ).all():
        days[collector_id].to_fix.append(f"{last_name} {first_name}"[:NAME_LENGTH].strip())
    return [days[key] for key in sorted(days)]


def send_collector_summaries(session: Session, now: datetime) -> int:
    """Queue the evening summaries due now in every scheme past its summaries' hour; return how many were queued.

    The caller commits. A collector already sent the day's summary (its key in the outbox) is skipped.
    """
    begin_write(session)
    queued = 0
    for scheme in session.scalars(select(Scheme).order_by(Scheme.id)):
        local = scheme.local_now(now)
        if local.time() < scheme.collector_sms_at:
            continue
        queued += _scheme_summaries(session, scheme, local.date())
    return queued


def _scheme_summaries(session: Session, scheme: Scheme, day: date) -> int:
    figures = {each.collector_id: each for each in collector_days(session, scheme, day)}
    if not figures:
        return 0
    keys = {collector_id: collector_day_key(collector_id, day) for collector_id in figures}
    sent = set(session.scalars(select(Message.dedupe_key).where(Message.dedupe_key.in_(list(keys.values())))))
    collectors = session.scalars(
        select(Collector)
        .join(Mutuelle, Mutuelle.id == Collector.mutuelle_id)
        .where(
            Collector.id.in_([c for c, key in keys.items() if key not in sent]),
            Mutuelle.scheme_id == scheme.id,
            Collector.active.is_(True),
            Collector.sms_opt_in.is_(True),
            Collector.phone.is_not(None),
        )
        .order_by(Collector.id)
    ).all()
    for collector in collectors:
        assert collector.phone is not None
        language = resolve_language(collector.language, scheme.default_language)
        template, values = summary(figures[collector.id], day, language)
        send_sms(
            session,
            collector.phone,
            template,
            language=language,
            dedupe_key=keys[collector.id],
            mutuelle_id=collector.mutuelle_id,
            **values,
        )
        log.info("collector %s: summary of %s queued to %s", collector.id, day, mask_phone(collector.phone))
    return len(collectors)


def summary(figures: CollectorDay, day: date, language: str) -> tuple[str, dict[str, Any]]:
    """Return the template and values of a day's summary: the forms to correct named if that still fits one SMS."""
    values: dict[str, Any] = {
        "day": day,
        "submitted": figures.submitted,
        "validated": figures.validated,
        "pending": figures.waiting,
        "to_fix": len(figures.to_fix),
    }
    if figures.to_fix:
        named = dict(values, fixes=", ".join(figures.to_fix))
        counted = measure(compose("collector_day", language, **values).body).segments
        if measure(compose("collector_day_fix", language, **named).body).segments <= counted:
            return "collector_day_fix", named
    return "collector_day", values
