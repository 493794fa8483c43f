"""`flask --app app collectors …` and `enrolments …`: collection officers, and staff decisions on enrolments."""

from __future__ import annotations

import json
from typing import IO

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from extensions import db, settings
from models.base import Language, utcnow
from models.enrolment.changes import (
    changed_household,
    describe_change,
    find_household_no,
    member_label,
    staff_collector,
    submit_change,
)
from models.enrolment.collectors import CollectorError, create_collector, set_collector_sms
from models.enrolment.duplicates import Person, find_duplicates
from models.enrolment.tables import EnrolmentStatus
from models.enrolment.validate import (
    DecisionError,
    ask_for_changes,
    get_enrolment,
    list_enrolments,
    reject_enrolment,
    validate_enrolment,
)

STAFF = "cli"


@click.group("collectors")
def collectors_group() -> None:
    """Collection officers who submit enrolments (`POST /api/enrolments`)."""


@collectors_group.command("create")
@click.argument("name")
@click.option("--mutuelle", "mutuelle_code", required=True, help="The mutuelle the collector enrols for.")
@click.option("--network", "network_code", default=None, help="The collector's network (its code).")
@click.option("--phone", default=None, help="The collector's phone, national or international format.")
@click.option(
    "--language",
    type=click.Choice([language.value for language in Language]),
    default=None,
    help="The language of their SMS (default: the scheme's).",
)
@with_appcontext
def create_collector_command(
    name: str, mutuelle_code: str, network_code: str | None, phone: str | None, language: str | None
) -> None:
    """Create a collector and print its key last, once; only its hash is kept."""
    session = db()
    try:
        collector, key = create_collector(
            session, name=name, mutuelle_code=mutuelle_code, network_code=network_code, phone=phone, language=language
        )
    except CollectorError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"collector {collector.id} {collector.name} for {collector.mutuelle.code} (key {collector.key_prefix}…)")
    click.echo("shown once, store it now (Authorization: Bearer <key>):")
    click.echo(key)


@collectors_group.command("sms")
@click.argument("collector_id", type=int)
@click.argument("state", type=click.Choice(["on", "off"]))
@with_appcontext
def collector_sms_command(collector_id: int, state: str) -> None:
    """Turn a collector's evening SMS (the summary of their day) on or off; STOP and START by SMS do the same."""
    session = db()
    try:
        collector = set_collector_sms(session, collector_id, state == "on")
    except CollectorError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"collector {collector.id} {collector.name}: evening SMS {state}")


@click.group("enrolments")
def enrolments_group() -> None:
    """Household enrolments and household changes: list, show, validate, reject, ask for changes, submit a change."""


@enrolments_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in EnrolmentStatus], case_sensitive=False), default=None)
@with_appcontext
def list_command(status: str | None) -> None:
    """List enrolments, oldest first: id, status, mutuelle, head, members, candidates, household (tab-separated).

    A household change shows `change of <household>` and its number of changes instead of the head and members.
    """
    wanted = EnrolmentStatus(status.upper()) if status else None
    for enrolment in list_enrolments(db(), wanted):
        found = changed_household(enrolment)
        household = found.household_no if found is not None else "-"
        if enrolment.change is not None:
            who, size = f"change of {household}", f"{len(enrolment.change.changes)} changes"
        else:
            head = enrolment.head
            who, size = f"{head.first_name} {head.last_name}", f"{len(enrolment.members)} members"
        fields = [
            str(enrolment.id),
            enrolment.status.value,
            enrolment.mutuelle.code,
            who,
            size,
            f"{len(enrolment.duplicates)} candidates",
            household,
        ]
        click.echo("\t".join(fields))


@enrolments_group.command("show")
@click.argument("enrolment_id", type=int)
@with_appcontext
def show_command(enrolment_id: int) -> None:
    """Show an enrolment: its household, members, duplicate candidates (now) and audit trail."""
    session = db()
    try:
        enrolment = get_enrolment(session, enrolment_id)
    except DecisionError as exc:
        raise click.ClickException(str(exc)) from exc
    network = enrolment.network.code if enrolment.network is not None else "-"
    click.echo(
        f"enrolment {enrolment.id} {enrolment.status.value} (client id {enrolment.client_id}, "
        f"collector {enrolment.collector.name})"
    )
    click.echo(
        f"mutuelle {enrolment.mutuelle.code}, commune {enrolment.commune}, network {network}, plan {enrolment.plan}, "
        f"category {enrolment.subsidy_category}, language {enrolment.language.value}, "
        f"SMS {'yes' if enrolment.sms_opt_in else 'no'}"
    )
    if enrolment.reason:
        click.echo(f"reason: {enrolment.reason}")
    household = changed_household(enrolment)
    if household is not None:
        click.echo(f"{'change of household' if enrolment.change is not None else 'household'} {household.household_no}")
    if enrolment.change is not None:
        for item in enrolment.change.changes:
            click.echo(f"  changes[{item['position']}] {describe_change(item, enrolment)}")
    for m in enrolment.members:
        numbers = " ".join(
            f"{label} {value}" for label, value in (("id", m.id_number), ("card", m.card_number)) if value
        )
        click.echo(
            f"  {member_label(enrolment, m)} {m.member_no or ''}\t{m.first_name} {m.last_name}\t{m.sex.value}\t"
            f"{m.date_of_birth.isoformat()}\t{m.relationship_to_head}\t{m.phone or '-'}\t{numbers or '-'}"
        )
    if enrolment.status is not EnrolmentStatus.VALIDATED:
        people = [
            Person(m.first_name, m.last_name, m.date_of_birth, m.phone, m.id_number, m.card_number)
            for m in enrolment.members
        ]
        candidates = find_duplicates(session, enrolment.scheme_id, people, exclude_enrolment=enrolment.id)
        click.echo(f"duplicate candidates: {len(candidates)}")
        for c in candidates:
            who = f"member {c.member_no}" if c.member_no else f"enrolment {c.enrolment_id}"
            label = member_label(enrolment, enrolment.members[c.member])
            click.echo(f"  {label} ~ {who}\tscore {c.score}\t{c.why}")
    for event in enrolment.events:
        click.echo(
            f"  {event.created_at:%Y-%m-%d %H:%M} {event.actor} {event.action} "
            f"{event.before_status or '-'} → {event.after_status} {event.note or ''}".rstrip()
        )


@enrolments_group.command("validate")
@click.argument("enrolment_id", type=int)
@with_appcontext
def validate_command(enrolment_id: int) -> None:
    """Validate an enrolment: number and create its household, queue the head's welcome SMS; print the number last.

    A household change is applied to its household (the head gets a confirmation SMS); its number is printed last.
    """
    session = db()
    try:
        enrolment = get_enrolment(session, enrolment_id)
        today = enrolment.mutuelle.scheme.local_today(utcnow())
        session.rollback()  # the validation opens its own write transaction (BEGIN IMMEDIATE on SQLite)
        done = validate_enrolment(session, enrolment_id, STAFF, today, settings().USSD_SERVICE_CODE)
        session.commit()
    except (DecisionError, ValueError) as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    except SQLAlchemyError as exc:
        # Validations take the mutuelle's numbering lock: this is a number taken by other means, or a lock given up
        # after the busy timeout. Nothing was written.
        session.rollback()
        raise click.ClickException(
            f"enrolment {enrolment_id} not validated: the database refused it ({type(exc).__name__}); "
            "nothing was written, run the command again"
        ) from exc
    if done.enrolment.change is not None:
        added = [m.member_no for m in done.enrolment.members]
        click.echo(
            f"{len(done.enrolment.change.changes)} changes applied ({len(added)} members added "
            f"{' '.join(str(n) for n in added)}); confirmation SMS {'queued' if done.welcomed else 'not sent'}"
        )
    else:
        click.echo(
            f"{len(done.enrolment.members)} members created; welcome SMS {'queued' if done.welcomed else 'not sent'}"
        )
    click.echo(done.household.household_no)


@enrolments_group.command("reject")
@click.argument("enrolment_id", type=int)
@click.option("--reason", required=True, help="Why, as the collector will read it.")
@with_appcontext
def reject_command(enrolment_id: int, reason: str) -> None:
    """Reject an enrolment with a reason."""
    session = db()
    try:
        enrolment = reject_enrolment(session, enrolment_id, STAFF, reason)
    except DecisionError as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"enrolment {enrolment.id} {enrolment.status.value}: {enrolment.reason}")


@enrolments_group.command("needs-changes")
@click.argument("enrolment_id", type=int)
@click.option("--reason", required=True, help="What the collector must change.")
@with_appcontext
def needs_changes_command(enrolment_id: int, reason: str) -> None:
    """Send an enrolment back to its collector saying what to change."""
    session = db()
    try:
        enrolment = ask_for_changes(session, enrolment_id, STAFF, reason)
    except DecisionError as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"enrolment {enrolment.id} {enrolment.status.value}: {enrolment.reason}")


@enrolments_group.command("change")
@click.argument("form", type=click.File("r", encoding="utf-8"))
@with_appcontext
def change_command(form: IO[str]) -> None:
    """Submit a household change as staff: FORM is the API's JSON (`-`: standard input); print its id last.

    The same checks as `POST /api/enrolments` with a `household_no`; it is then validated like any enrolment.
    """
    try:
        payload = json.load(form)
    except ValueError as exc:
        raise click.ClickException(f"not JSON: {exc}") from exc
    session = db()
    number = payload.get("household_no") if isinstance(payload, dict) else None
    household = find_household_no(session, number) if isinstance(number, str) else None
    if household is None:
        raise click.ClickException(f"household_no: no household {number!r}")
    collector = staff_collector(session, household.mutuelle)
    today = household.scheme.local_today(utcnow())
    outcome = submit_change(session, collector, payload, today, actor=STAFF)
    if outcome.errors:
        session.rollback()
        for name, problem in outcome.errors.items():
            click.echo(f"{name}: {problem}", err=True)
        raise click.ClickException(f"{len(outcome.errors)} bad fields: nothing stored")
    enrolment = outcome.enrolment
    assert enrolment is not None
    session.commit()
    click.echo(f"{'submitted' if outcome.created else 'already submitted'}: {enrolment.status.value}")
    for candidate in enrolment.duplicates:
        who = candidate.get("member_no") or f"enrolment {candidate.get('enrolment_id')}"
        click.echo(f"  {candidate['member']} ~ {who}\tscore {candidate['score']}\t{candidate['why']}")
    click.echo(str(enrolment.id))
