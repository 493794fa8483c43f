"""`flask --app app api-token …`, `agents …` and `devices …`: who may check coverage or forward operator texts."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from commands.scoping import mutuelle_codes, mutuelle_id_of, mutuelle_label, mutuelle_option, scope_to
from extensions import db, settings
from models.access.agents import AgentError, create_agent, list_agents, unlock_agent
from models.access.devices import (
    DeviceError,
    get_device,
    issue_device_key,
    list_devices,
    parse_senders,
    register_device,
    revoke_device_key,
)
from models.access.tables import CollectionDevice
from models.access.tokens import TokenError, issue_token, list_tokens, revoke_token
from models.base import utcnow
from models.members.phones import normalise_phone
from models.schemes.scheme import Scheme


@click.group("api-token")
def api_token_group() -> None:
    """Bearer tokens of the read APIs (one per facility or auditor)."""


@api_token_group.command("create")
@click.argument("name")
@click.option("--facility", required=True, help="The health facility (or auditor) the token is for.")
@mutuelle_option("Answer only for this mutuelle's members (default: every mutuelle's).")
@with_appcontext
def create_token_command(name: str, facility: str, mutuelle: str | None) -> None:
    """Create a token NAME and print it once; only its hash is kept."""
    session = db()
    mutuelle_id = mutuelle_id_of(mutuelle)
    try:
        token, plain = issue_token(session, name=name, facility=facility, now=utcnow(), mutuelle_id=mutuelle_id)
    except TokenError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    kept = mutuelle_label(mutuelle_codes(), token.mutuelle_id)
    click.echo(
        f"token {token.name} for {token.facility}, mutuelle {kept} (prefix {token.prefix}); shown once, store it now:"
    )
    click.echo(plain)


@api_token_group.command("revoke")
@click.argument("name")
@with_appcontext
def revoke_token_command(name: str) -> None:
    """Revoke the token NAME; requests with it get 401 from now on."""
    session = db()
    try:
        token = revoke_token(session, name, utcnow())
    except TokenError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"revoked token {token.name} ({token.facility}) at {token.revoked_at:%Y-%m-%d %H:%M} UTC")


@api_token_group.command("list")
@mutuelle_option("Only the tokens kept to this mutuelle.")
@with_appcontext
def list_tokens_command(mutuelle: str | None) -> None:
    """List tokens: name, facility, prefix, created, last used, state, mutuelle (`all`: every mutuelle's)."""
    codes = mutuelle_codes()
    scope_to(mutuelle)
    for token in list_tokens(db()):
        used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
        state = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "active"
        click.echo(
            f"{token.name}\t{token.facility}\t{token.prefix}…\tcreated {token.created_at:%Y-%m-%d}\t"
            f"used {used}\t{state}\tmutuelle {mutuelle_label(codes, token.mutuelle_id)}"
        )


@click.group("agents")
def agents_group() -> None:
    """Health-facility agents who check coverage by phone with a PIN."""


def _default_country() -> str | None:
    # Agents are not tied to a scheme: the default scheme's country, or the only country of all schemes.
    session = db()
    default = settings().DEFAULT_SCHEME
    if default:
        country = session.scalar(select(Scheme.country).where(Scheme.code == default))
        if country:
            return country
    countries = set(session.scalars(select(Scheme.country).distinct()))
    return countries.pop() if len(countries) == 1 else None


@agents_group.command("create")
@click.option("--facility", required=True)
@click.option("--phone", required=True, help="The agent's phone, national or international format.")
@click.option("--name", default=None)
@click.option("--country", default=None, help="Country of a national-format phone (default: the schemes' country).")
@click.option("--pin", prompt=True, hide_input=True, confirmation_prompt=True, help="4 to 6 digits (else prompted).")
@mutuelle_option("Check only this mutuelle's members (default: every mutuelle's).")
@with_appcontext
def create_agent_command(
    facility: str, phone: str, name: str | None, country: str | None, pin: str, mutuelle: str | None
) -> None:
    """Create an agent with a PIN (hashed with argon2)."""
    session = db()
    mutuelle_id = mutuelle_id_of(mutuelle)
    try:
        agent = create_agent(
            session,
            facility=facility,
            phone=phone,
            pin=pin,
            name=name,
            country=country or _default_country(),
            mutuelle_id=mutuelle_id,
        )
    except AgentError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"agent {agent.phone} created for {agent.facility}, mutuelle {mutuelle or 'all'}")


@agents_group.command("unlock")
@click.argument("phone")
@click.option("--country", default=None, help="Country of a national-format phone (default: the schemes' country).")
@with_appcontext
def unlock_agent_command(phone: str, country: str | None) -> None:
    """Clear an agent's wrong-PIN count and lock."""
    session = db()
    try:
        agent = unlock_agent(session, normalise_phone(phone, country or _default_country()))
    except (AgentError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"agent {agent.phone} unlocked")


@agents_group.command("list")
@mutuelle_option("Only the agents kept to this mutuelle.")
@with_appcontext
def list_agents_command(mutuelle: str | None) -> None:
    """List agents: phone, facility, name, state, mutuelle (`all`: every mutuelle's)."""
    now = utcnow()
    codes = mutuelle_codes()
    scope_to(mutuelle)
    for agent in list_agents(db()):
        if not agent.active:
            state = "inactive"
        elif agent.locked_until and agent.locked_until > now:
            state = f"locked until {agent.locked_until:%H:%M} UTC"
        else:
            state = f"active ({agent.failed_attempts} wrong PINs)" if agent.failed_attempts else "active"
        kept = mutuelle_label(codes, agent.mutuelle_id)
        click.echo(f"{agent.phone}\t{agent.facility}\t{agent.name or ''}\t{state}\tmutuelle {kept}")


@click.group("devices")
def devices_group() -> None:
    """Collection devices that forward operators' texts, each with its own key."""


def _device(ref: str) -> CollectionDevice:
    try:
        return get_device(db(), ref)
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from exc


@devices_group.command("create")
@click.argument("device_id")
@click.option("--label", required=True)
@click.option("--senders", required=True, help="Operator sender names, comma-separated (e.g. OrangeMoney,Wave).")
@click.option("--scheme", default=None, help="Scheme code the device collects for.")
@click.option("--trusted", is_flag=True, help="Its texts confirm payments (else they stay provisional).")
@mutuelle_option("The mutuelle whose merchant phone it is: its payments are paid to that mutuelle.")
@with_appcontext
def create_device_command(
    device_id: str, label: str, senders: str, scheme: str | None, trusted: bool, mutuelle: str | None
) -> None:
    """Register a device (its id or E.164 phone) and print its key once; only its hash is kept."""
    session = db()
    mutuelle_id = mutuelle_id_of(mutuelle)
    scheme_id = None
    if scheme:
        scheme_id = session.scalar(select(Scheme.id).where(Scheme.code == scheme))
        if scheme_id is None:
            raise click.ClickException(f"no scheme {scheme}")
    try:
        device, plain = register_device(
            session,
            device_key=device_id,
            label=label,
            senders=parse_senders(senders),
            scheme_id=scheme_id,
            trusted=trusted,
            mutuelle_id=mutuelle_id,
        )
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"device {device.device_key} registered; its key, shown once (Authorization: Bearer <key>):")
    click.echo(plain)


@devices_group.command("rotate")
@click.argument("device_id")
@with_appcontext
def rotate_device_command(device_id: str) -> None:
    """Give DEVICE_ID a new key and print it once; its old key stops working at once."""
    session = db()
    device = _device(device_id)
    plain = issue_device_key(session, device)
    session.commit()
    click.echo(f"device {device.device_key} re-keyed; its new key, shown once:")
    click.echo(plain)


@devices_group.command("revoke")
@click.argument("device_id")
@with_appcontext
def revoke_device_command(device_id: str) -> None:
    """Revoke DEVICE_ID's key: its forwards are refused (kept for review) until it is re-keyed."""
    session = db()
    device = _device(device_id)
    revoke_device_key(session, device)
    session.commit()
    click.echo(f"device {device.device_key}: key revoked")


@devices_group.command("list")
@mutuelle_option("Only the devices of this mutuelle.")
@with_appcontext
def list_devices_command(mutuelle: str | None) -> None:
    """List devices: id, label, key prefix or state, trusted, active, mutuelle (`all`: none named)."""
    codes = mutuelle_codes()
    scope_to(mutuelle)
    for device in list_devices(db()):
        key = f"{device.key_prefix}…" if device.key_hash else ("revoked" if device.key_revoked_at else "no key")
        trust = "trusted" if device.trusted else "untrusted"
        active = "active" if device.active else "inactive"
        kept = mutuelle_label(codes, device.mutuelle_id)
        click.echo(f"{device.device_key}\t{device.label}\t{key}\t{trust}\t{active}\tmutuelle {kept}")
