"""`flask --app app networks …`: a network's grant (what its savings target is a share of) and its own money."""

from __future__ import annotations

from datetime import date, datetime

import click
from flask.cli import with_appcontext

from commands.scoping import mutuelle_option, scope_to
from extensions import db
from models.base import utcnow
from models.members.household import Network
from models.members.networks import find_network, set_grant
from models.views.network_money import NetworkMoney, network_money

DAY = click.DateTime(formats=["%Y-%m-%d"])
# The columns `money_fields` gives, in order (`campaigns money` prints them one network a line).
MONEY_FIELDS = (
    "payments",
    "received",
    "taken_back",
    "collected",
    "paid_households",
    "paid_periods",
    "paid_amount",
    "balance",
    "grant",
    "savings_target",
    "saved",
    "saved_percent",
)


def money_fields(money: NetworkMoney) -> list[str]:
    """Return a network's money as the values of MONEY_FIELDS (amounts in whole units, `-` for none)."""
    percent = money.saved_percent()
    values: list[object] = [
        money.received.count,
        money.received.amount,
        money.taken_back.amount,
        money.collected,
        money.paid_households,
        money.paid_periods,
        money.paid_amount,
        money.balance,
        money.grant_amount if money.grant_amount is not None else "-",
        money.target if money.target is not None else "-",
        money.saved,
        f"{percent:.1f}" if percent is not None else "-",
    ]
    return [str(v) for v in values]


def _network(code: str, scheme_code: str | None) -> Network:
    try:
        return find_network(db(), code, scheme_code)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("networks")
def networks_group() -> None:
    """Networks (réseaux): record the grant a network received, show its own money."""


@networks_group.command("grant")
@click.argument("code")
@click.argument("amount", type=click.IntRange(min=0))
@click.option("--on", type=DAY, default=None, help="The day it was received (YYYY-MM-DD; default today).")
@click.option("--scheme", "scheme_code", help="The scheme, when several have a network with this code.")
@mutuelle_option("Only a network of this mutuelle.")
@with_appcontext
def grant_command(code: str, amount: int, on: datetime | None, scheme_code: str | None, mutuelle: str | None) -> None:
    """Record the grant a network received, in whole units of the scheme's currency (0 clears it)."""
    scope_to(mutuelle)
    session = db()
    network = _network(code, scheme_code)
    try:
        set_grant(network, amount or None, on.date() if on else None, network.scheme.local_today(utcnow()))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    if network.grant_amount is None:
        click.echo(f"network {network.code}: no grant")
        return
    click.echo(f"network {network.code}: grant {network.grant_amount} {network.scheme.currency} on {network.grant_on}")


@networks_group.command("money")
@click.argument("code")
@click.option("--since", type=DAY, default=None, help="Count collections and payouts from this day (default: all).")
@click.option("--on", type=DAY, default=None, help="Up to this day (default: today in the scheme's time zone).")
@click.option("--scheme", "scheme_code", help="The scheme, when several have a network with this code.")
@mutuelle_option("Only a network of this mutuelle.")
@with_appcontext
def money_command(
    code: str, since: datetime | None, on: datetime | None, scheme_code: str | None, mutuelle: str | None
) -> None:
    """Print a network's money, a `name<TAB>value` line each (docs/campaigns.md lists what counts)."""
    scope_to(mutuelle)
    network = _network(code, scheme_code)
    until: date = on.date() if on else network.scheme.local_today(utcnow())
    money = network_money(db(), network, until, since.date() if since else None)
    click.echo(f"network\t{network.code}\t{network.name}")
    click.echo(f"from\t{money.since or '-'}\nto\t{money.until}\ncurrency\t{money.currency}")
    for name, value in zip(MONEY_FIELDS, money_fields(money), strict=True):
        click.echo(f"{name}\t{value}")
