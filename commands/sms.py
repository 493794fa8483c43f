"""`flask --app app sms …`: send a templated SMS, list the templates."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext

from extensions import db, settings
from models.messaging.outbox import send_sms
from models.texts.i18n import LANGUAGES, SMS_TEMPLATES, TemplateError, placeholders


@click.group("sms")
def sms_group() -> None:
    """Outbound SMS."""


@sms_group.command("templates")
def templates_command() -> None:
    """List the SMS templates and the values each needs."""
    for key in SMS_TEMPLATES:
        click.echo(f"{key}\t{', '.join(sorted(placeholders(key)))}")


@sms_group.command("send")
@click.argument("phone")
@click.argument("template", type=click.Choice(sorted(SMS_TEMPLATES)))
@click.option("--lang", type=click.Choice(LANGUAGES), default=None, help="Language (default: French).")
@click.option("--value", "values", multiple=True, metavar="NAME=VALUE", help="A placeholder's value (repeatable).")
@with_appcontext
def send_command(phone: str, template: str, lang: str | None, values: tuple[str, ...]) -> None:
    """Queue TEMPLATE to PHONE (E.164); the worker sends it (console outbox without AT credentials)."""
    given: dict[str, str] = {"ussd_code": settings().USSD_SERVICE_CODE}
    for pair in values:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--value")
        given[name] = value
    # The template's own values only (send_sms's **values), never one of its named parameters.
    wanted: dict[str, Any] = {name: given[name] for name in placeholders(template) if name in given}
    session = db()
    try:
        message = send_sms(session, phone, template, language=lang, **wanted)
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"queued SMS {message.id} ({message.language}, {message.encoding}, {message.segments} segment(s))")
