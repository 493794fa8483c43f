"""`flask --app app demo …`: demo data for `make run`, training and tests."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from extensions import db, settings
from models.base import today_utc
from models.demo import is_empty, load_shipped_schemes, seed_demo


@click.group("demo")
def demo_group() -> None:
    """Demo data."""


@demo_group.command("seed")
@click.option("--if-empty", is_flag=True, help="Only seed when there is no household yet (make run).")
@with_appcontext
def seed_command(if_empty: bool) -> None:
    """Load both schemes and ~200 demo households, payments, agents and a collection device."""
    session = db()
    if not is_empty(session):
        load_shipped_schemes(session)
        if if_empty:
            click.echo("Demo data: database already has households; not seeding.")
            return
        raise click.ClickException("the database already has households; demo seed needs an empty one")
    click.echo("Seeding demo data…")
    summary = seed_demo(session, today_utc())
    code = settings().USSD_SERVICE_CODE
    click.echo(
        f"Demo data: {summary.households} households, {summary.members} members, "
        f"{summary.payments} payments; network {summary.network}."
    )
    click.echo(f"USSD code {code}. Try these phones and member numbers:")
    for label, (member_no, phone) in summary.examples.items():
        click.echo(f"  {label:<28} member {member_no:<18} phone {phone or '-'}")
    click.echo(f"  phone shared by two households: {summary.shared_phone}")
    for facility, phone, pin in summary.agents:
        click.echo(f"  agent {phone} PIN {pin} ({facility})")
    click.echo(f"  collection device {summary.device} (forwards OrangeMoney/Wave/FreeMoney texts)")
