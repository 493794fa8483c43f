"""`flask --app app mutuelles …`: the mutuelles of each scheme, their communes and payment accounts."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from extensions import db
from models.members.household import Household
from models.schemes.mutuelle import list_mutuelles


@click.group("mutuelles")
def mutuelles_group() -> None:
    """Mutuelles: the organisations under a scheme (loaded with its scheme file)."""


@mutuelles_group.command("list")
@with_appcontext
def list_command() -> None:
    """List mutuelles, one a line: code, scheme, name, households, communes, accounts (tab-separated)."""
    session = db()
    counts = dict(
        session.execute(select(Household.mutuelle_id, func.count()).group_by(Household.mutuelle_id)).tuples().all()
    )
    for mutuelle in list_mutuelles(session):
        communes = ", ".join(str(c) for c in mutuelle.communes or []) or "-"
        accounts = ", ".join(f"{a.provider} {a.account}" for a in mutuelle.accounts) or "-"
        fields = [
            mutuelle.code,
            mutuelle.scheme.code,
            mutuelle.name,
            f"{counts.get(mutuelle.id, 0)} households",
            communes,
            accounts,
        ]
        click.echo("\t".join(fields))
