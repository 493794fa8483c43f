"""`flask --app app members …`: import the enrolment export."""

from __future__ import annotations

import time

import click
from flask.cli import with_appcontext

from extensions import db
from models.member_import import ImportFileError, import_members


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

    def progress(stage: str, done: int, total: int | None) -> None:
        if quiet:
            return
        what = "rows checked" if stage == "read" else "households written" if not dry_run else "households compared"
        of = f" of {total:,}" if total is not None else ""
        click.echo(f"{done:,}{of} {what} ({time.monotonic() - started:.1f} s)", err=True)

    session = db()
    try:
        report = import_members(session, file, scheme_code=scheme_code, dry_run=dry_run, progress=progress)
    except ImportFileError as exc:
        raise click.ClickException(str(exc)) from exc
    if not report.ok:
        session.rollback()
        for error in report.errors:
            click.echo(str(error), err=True)
        raise click.ClickException(f"{len(report.errors)} error(s) in {file}; nothing imported")
    if dry_run:
        session.rollback()
        click.echo(f"dry run, nothing written: {report.summary()}")
    else:
        session.commit()
        click.echo(report.summary())
    click.echo(report.details())
    click.echo(f"{report.rows:,} rows in {time.monotonic() - started:.1f} s")
