"""`flask --app app db …`: migrations."""

from __future__ import annotations

import click
from alembic import command
from flask.cli import with_appcontext

from extensions import settings
from models.migrate import alembic_config, upgrade


@click.group("db")
def db_group() -> None:
    """Database migrations."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def upgrade_command(revision: str) -> None:
    """Migrate the database to REVISION (default: head)."""
    upgrade(settings().DATABASE_URL, revision)
    click.echo(f"database at {revision}")


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@with_appcontext
def revision_command(message: str) -> None:
    """Autogenerate a new migration from the models (developers)."""
    command.revision(alembic_config(settings().DATABASE_URL), message=message, autogenerate=True)
