"""`flask --app app reports …`: the scheme reports' monthly figures counted ahead (what the clock does hourly)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from extensions import db
from models.schemes.scheme import Scheme
from models.views.scheme_reports import refresh_snapshots


@click.group("reports")
def reports_group() -> None:
    """Scheme reports: their monthly figures, counted ahead for `/admin/reports`."""


@reports_group.command("snapshot")
@click.option("--scheme", "code", help="Only this scheme (its code).")
@click.option("--all", "every", is_flag=True, help="Every month of the last two years, not only those that need it.")
@with_appcontext
def snapshot_command(code: str | None, every: bool) -> None:
    """Count the reports' months ahead; print each month done: scheme, month, day counted, seconds (tab-separated)."""
    session = db()
    query = select(Scheme.id).order_by(Scheme.id)
    if code is not None:
        query = query.where(Scheme.code == code)
    ids = list(session.scalars(query))
    if not ids:
        raise click.ClickException(f"no scheme {code!r}" if code else "no scheme")
    session.commit()
    for scheme_id in ids:
        scheme = session.get(Scheme, scheme_id)
        assert scheme is not None
        scheme_code = scheme.code
        for month in refresh_snapshots(session, scheme, every=every):
            click.echo(f"{scheme_code}\t{month.month:%Y-%m}\t{month.as_of.isoformat()}\t{month.seconds:.2f}")
