"""`flask --app app members …`: import the enrolment export, show a member."""

from __future__ import annotations

import time
from datetime import datetime

import click
from flask.cli import with_appcontext

from commands.progress import progress_printer
from commands.scoping import mutuelle_option, scope_to
from extensions import db
from models.bulk import analyze
from models.coverage.checks import find_member
from models.coverage.eligibility import cover_sentences, member_eligibility
from models.coverage.ledger import account_entries, account_state, get_or_create_account
from models.coverage.periods import live_periods
from models.imports.members import MODELS_WRITTEN, ImportFileError, import_members


@click.group("members")
def members_group() -> None:
    """Households and members."""


@members_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--scheme", "scheme_code", help="Import into this scheme only (the scheme column may then be empty).")
@click.option("--dry-run", is_flag=True, help="Validate and count, write nothing.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@with_appcontext
def import_command(file: str, scheme_code: str | None, dry_run: bool, quiet: bool) -> None:
    """Import households and members from an enrolment CSV; nothing is written if any row is bad."""
    started = time.monotonic()
    written = "households compared" if dry_run else "households written"
    undone = "households undone: a household's lines are apart in the file, written again once all are checked"
    progress = progress_printer({"read": "lines checked", "write": written, "undone": undone}, quiet=quiet)
    session = db()
    try:
        report = import_members(session, file, scheme_code=scheme_code, dry_run=dry_run, progress=progress)
    except ImportFileError as exc:
        raise click.ClickException(str(exc)) from exc
    if not report.ok:
        session.rollback()
        for error in report.errors:
            click.echo(str(error), err=True)
        if report.more_errors:
            click.echo(f"… and {report.more_errors:,} more error(s), not listed", err=True)
        raise click.ClickException(f"{report.error_count:,} error(s) in {file}; nothing imported")
    if dry_run:
        session.rollback()
        click.echo(f"dry run, nothing written: {report.summary()}")
    else:
        session.commit()
        analyze(session, MODELS_WRITTEN)  # the scheme answers at full speed from the first dial
        click.echo(report.summary())
    click.echo(report.details())
    click.echo(f"{report.rows:,} rows in {time.monotonic() - started:.1f} s")


@members_group.command("show")
@click.argument("member_no")
@click.option("--date", "on", type=click.DateTime(formats=["%Y-%m-%d"]), help="Answer for this date (default today).")
@mutuelle_option("Show the member only if of this mutuelle.")
@with_appcontext
def show_command(member_no: str, on: datetime | None, mutuelle: str | None) -> None:
    """Show a member's eligibility answer, household and ledger."""
    scope_to(mutuelle)
    session = db()
    member = find_member(session, member_no)
    if member is None:
        raise click.ClickException(f"no member {member_no}")
    household = member.household
    day = on.date() if on else household.scheme.local_today()
    answer = member_eligibility(session, member, day)
    click.echo(
        f"{member.member_no}  {member.first_name} {member.last_name}  ({member.sex.value}, "
        f"born {member.date_of_birth.year if member.date_of_birth else '?'}, {member.status.value})"
    )
    click.echo(
        f"household {household.household_no}  scheme {household.scheme.code}  plan {household.plan}  "
        f"category {household.subsidy_category}  status {household.status.value}"
    )
    click.echo(
        f"on {day.isoformat()}: covered={'yes' if answer.covered else 'no'}  status={answer.status.value}  "
        f"valid_until={answer.valid_until or '-'}  waiting_until={answer.waiting_until or '-'}  "
        f"amount_due={answer.amount_due} {answer.currency}  next_payment_amount={answer.next_payment_amount}  "
        f"next_payment_due={answer.next_payment_due or '-'}"
    )
    for sentence in cover_sentences(answer, household.scheme.currency_exponent):
        click.echo(sentence)
    if answer.reason:
        click.echo(f"reason: {answer.reason}")
    click.echo("coverage periods:")
    for period in live_periods(session, household.id):
        click.echo(
            f"  {period.start_on} → {period.end_on}  {period.plan}  price {period.price}  "
            f"household {period.household_share}  subsidy {period.subsidy_amount}"
            + (f"  waiting until {period.waiting_until}" if period.waiting_until else "")
        )
    account = get_or_create_account(session, household=household)
    click.echo("ledger:")
    for entry in account_entries(session, account.id):
        funder = f" ({entry.funder})" if entry.funder else ""
        click.echo(
            f"  {entry.effective_on}  {entry.kind.value:<10} {entry.amount:>10} {entry.currency}{funder}"
            + (f"  {entry.note}" if entry.note else "")
        )
    state = account_state(session, account_id=account.id)
    click.echo(f"balance {state.balance} {account.currency}  credit {state.credit}")
    session.commit()


@members_group.command("network")
@click.argument("code")
@click.option("--contact", "contact_phone", help="The network's contact (treasurer) phone; empty to clear.")
@click.option("--alias", "aliases", multiple=True, help="Another name payers type for it (repeatable).")
@click.option("--scheme", "scheme_code", help="The scheme, when several have a network with this code.")
@with_appcontext
def network_command(code: str, contact_phone: str | None, aliases: tuple[str, ...], scheme_code: str | None) -> None:
    """Show a network's contact and aliases, or set them (the aliases given replace the old ones)."""
    from models.members.networks import NetworkEdit, find_network, update_network

    session = db()
    try:
        network = find_network(session, code, scheme_code)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    if contact_phone is not None or aliases:
        edit = NetworkEdit(
            contact_phone if contact_phone is not None else network.contact_phone or "",
            "\n".join(aliases) if aliases else "\n".join(network.aliases or []),
        )
        try:
            update_network(session, network, edit)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        session.commit()
    click.echo(f"network\t{network.code}\t{network.name}")
    click.echo(f"contact\t{network.contact_phone or '-'}")
    click.echo(f"aliases\t{'; '.join(network.aliases or []) or '-'}")
