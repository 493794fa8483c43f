"""`flask --app app admin …`: staff users of the admin web."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from extensions import db
from models.access.staff import STAFF_LANGUAGES, StaffError, create_staff_user, set_staff_password
from models.base import StaffRole


@click.group("admin")
def admin_group() -> None:
    """Staff users of the admin web."""


@admin_group.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in StaffRole]), default=StaffRole.VIEWER.value)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="Else prompted.")
@click.option("--if-missing", is_flag=True, help="Leave an existing user alone instead of failing (make run).")
@click.option(
    "--language",
    type=click.Choice([language.value for language in STAFF_LANGUAGES]),
    default=STAFF_LANGUAGES[0].value,
    show_default=True,
    help="The language the admin speaks to the user (they can change it in the admin).",
)
@click.option(
    "--mutuelle",
    "mutuelles",
    multiple=True,
    metavar="CODE",
    help="Keep the user to this mutuelle (repeatable); none: every mutuelle (a union's or the agency's staff).",
)
@with_appcontext
def create_user_command(
    username: str, role: str, password: str, if_missing: bool, language: str, mutuelles: tuple[str, ...]
) -> None:
    """Create a staff user USERNAME with a role (viewer, operator, admin), a language (fr, en) and mutuelles."""
    session = db()
    try:
        outcome = create_staff_user(
            session,
            username,
            password,
            StaffRole(role),
            if_missing=if_missing,
            language=language,
            mutuelles=mutuelles,
        )
    except StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    user = outcome.user
    if outcome.created:
        kept = ", ".join(m.code for m in user.mutuelles) or "every mutuelle"
        click.echo(
            f"user {user.username} created with role {user.role.value}, language {user.language.value}, for {kept}"
        )
    else:
        click.echo(f"user {user.username} already exists (role {user.role.value}); left unchanged")


@admin_group.command("set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="Else prompted.")
@with_appcontext
def set_password_command(username: str, password: str) -> None:
    """Replace USERNAME's password; their open sessions end."""
    session = db()
    try:
        user = set_staff_password(session, username, password)
    except StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"password of {user.username} changed")
