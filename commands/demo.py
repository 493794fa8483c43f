"""`flask --app app demo …`: demo data for `make run`, training and tests."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from commands.demo_data import (
    AGENTS,
    COLLECTORS,
    DEMO_PHONE,
    DEMO_STAFF,
    DEVICE,
    SHARED_PHONE,
    demo_examples,
    demo_password_file,
    is_empty,
    load_shipped_schemes,
    seed_demo,
)
from extensions import db, settings
from models.base import today_utc
from models.members.household import Household, Member
from models.schemes.mutuelle import list_mutuelles


@click.group("demo")
def demo_group() -> None:
    """Demo data."""


@demo_group.command("seed")
@click.option("--if-empty", is_flag=True, help="Only seed when there is no household yet (make run).")
@with_appcontext
def seed_command(if_empty: bool) -> None:
    """Load both schemes and ~200 demo households, payments, agents and a collection device; print what to try."""
    session = db()
    if not is_empty(session):
        load_shipped_schemes(session)
        if not if_empty:
            raise click.ClickException("the database already has households; demo seed needs an empty one")
        click.echo("Demo data: database already has households; not seeding.")
    else:
        click.echo("Seeding demo data…")
        summary = seed_demo(session, today_utc(), ussd_code=settings().USSD_SERVICE_CODE)
        click.echo(f"Demo data: {summary.payments} payments; network {summary.network}.")
    print_demo(session)


@demo_group.command("show")
@with_appcontext
def show_command() -> None:
    """Print the demo phones, member numbers, dates of birth and agent PINs to try."""
    print_demo(db())


def print_demo(session: Session) -> None:
    """Print what to try on the demo data: phones, member numbers with dates of birth, agents' PINs, the device."""
    households = session.scalar(select(func.count()).select_from(Household)) or 0
    members = session.scalar(select(func.count()).select_from(Member)) or 0
    examples = demo_examples(session)
    click.echo(f"Database: {households} households, {members} members.")
    if not examples:
        click.echo("No demo households here (`flask --app app demo seed` seeds an empty database).")
        return
    click.echo(
        f"USSD code {settings().USSD_SERVICE_CODE}. Try these phones and member numbers "
        "(a date of birth is typed DDMMYYYY: an unknown phone checks a member by number and date of birth):"
    )
    for example in examples:
        born = f"{example.date_of_birth:%d%m%Y}" if example.date_of_birth else "-"
        click.echo(f"  {example.label:<31} member {example.member_no:<16} born {born:<8}  phone {example.phone or '-'}")
    click.echo(f"  phone shared by two households: {SHARED_PHONE}")
    for facility, phone, pin, _name in AGENTS:
        click.echo(f"  agent {phone} PIN {pin} ({facility})")
    click.echo(f"  collection device {DEVICE[0]} (forwards {'/'.join(DEVICE[2])} texts)")
    click.echo(
        f"  enrolments: the admin's Enrolments queue (collectors {', '.join(code for code, _n, _p in COLLECTORS)}); "
        "a key to submit with: flask --app app collectors create NAME --mutuelle SN-TN"
    )
    click.echo(f"Terminal phone: `make phone` dials as {DEMO_PHONE} (`make phone PHONE=<any phone above>`).")
    print_mutuelles(session)


def print_mutuelles(session: Session) -> None:
    """Print the mutuelles (code, name, Wave account) and the admin web's demo users, each with its mutuelle."""
    click.echo("Mutuelles (each its own members, accounts and managers):")
    for mutuelle in list_mutuelles(session):
        click.echo(f"  {mutuelle.code:<6} {mutuelle.name:<36} Wave {mutuelle.account('wave') or '-'}")
    instance = Path(current_app.instance_path)
    click.echo("Admin web users (`make run` creates them; passwords kept in instance/):")
    for username, role, mutuelle_code in DEMO_STAFF:
        kept = demo_password_file(instance, username)
        password = kept.read_text(encoding="utf-8").strip() if kept.exists() else "(set by make run)"
        scope = mutuelle_code or "every mutuelle"
        click.echo(f"  {username:<16} {role:<9} {scope:<15} password {password}")
