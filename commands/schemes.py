"""`flask --app app schemes …`: load scheme files."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from extensions import db
from models.schemes.scheme import Scheme
from models.schemes.scheme_file import SchemeFileError, load_scheme, parse_scheme_file


@click.group("schemes")
def schemes_group() -> None:
    """Schemes and their rules."""


@schemes_group.command("load")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@with_appcontext
def load_command(files: tuple[str, ...]) -> None:
    """Load (create or update) schemes from TOML FILES; nothing is written if any file is bad."""
    try:
        specs = [parse_scheme_file(path) for path in files]
    except SchemeFileError as exc:
        raise click.ClickException(str(exc)) from exc
    session = db()
    for spec in specs:
        try:
            scheme = load_scheme(session, spec)
        except SchemeFileError as exc:
            session.rollback()
            raise click.ClickException(str(exc)) from exc
        mutuelles = ", ".join(str(m["code"]) for m in spec.mutuelles)
        click.echo(f"loaded scheme {scheme.code} ({scheme.name}, {scheme.currency}; mutuelles {mutuelles})")
    session.commit()


@schemes_group.command("list")
@with_appcontext
def list_command() -> None:
    """List the schemes."""
    for scheme in db().scalars(select(Scheme).order_by(Scheme.code)):
        plans = ", ".join(f"{p.code} {p.months}m" for p in scheme.plans)
        click.echo(f"{scheme.code}\t{scheme.name}\t{scheme.currency}\t{plans}")
