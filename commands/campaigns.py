"""`flask --app app campaigns …`: enrolment campaigns, their targets per network, planned sessions, progress, money.

`--mutuelle CODE` keeps `target`, `session`, `list`, `progress` and `money` to one mutuelle's campaigns and networks
(`commands.scoping`), as a manager kept to that mutuelle sees them; on `create` it keeps the campaign itself to one.
"""

from __future__ import annotations

from datetime import date, datetime

import click
from flask.cli import with_appcontext

from commands.networks import MONEY_FIELDS, money_fields
from commands.scoping import mutuelle_option, scope_to
from extensions import db
from models.base import utcnow
from models.enrolment.campaigns import (
    DEFAULT_TARGET,
    CampaignError,
    add_session,
    create_campaign,
    get_campaign,
    list_campaigns,
    set_target,
)
from models.views.campaigns import STAGES, CampaignProgress, campaign_progress

DAY = click.DateTime(formats=["%Y-%m-%d"])


def _day(value: datetime | None) -> date | None:
    return None if value is None else value.date()


@click.group("campaigns")
def campaigns_group() -> None:
    """Enrolment campaigns: create, set network targets, plan sessions, list, show progress and networks' money."""


@campaigns_group.command("create")
@click.argument("name")
@click.option("--scheme", "scheme_code", required=True, help="The scheme's code.")
@click.option("--start", type=DAY, required=True, help="First day (YYYY-MM-DD).")
@click.option("--end", type=DAY, required=True, help="Last day (YYYY-MM-DD).")
@click.option("--mutuelle", "mutuelle_code", default=None, help="Keep the campaign to one mutuelle (its code).")
@with_appcontext
def create_command(name: str, scheme_code: str, start: datetime, end: datetime, mutuelle_code: str | None) -> None:
    """Create a campaign and print its id."""
    session = db()
    try:
        campaign = create_campaign(
            session,
            name=name,
            scheme_code=scheme_code,
            start_on=start.date(),
            end_on=end.date(),
            mutuelle_code=mutuelle_code,
        )
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"campaign {campaign.id} {campaign.name} ({campaign.start_on} to {campaign.end_on})")


@campaigns_group.command("target")
@click.argument("campaign_id", type=int)
@click.option("--network", "network_code", required=True, help="The network's code.")
@click.option("--beneficiaries", type=int, default=DEFAULT_TARGET, show_default=True)
@mutuelle_option("Only a campaign and network of this mutuelle.")
@with_appcontext
def target_command(campaign_id: int, network_code: str, beneficiaries: int, mutuelle: str | None) -> None:
    """Set a network's target of beneficiaries in a campaign."""
    scope_to(mutuelle)
    session = db()
    try:
        target = set_target(session, get_campaign(session, campaign_id), network_code, beneficiaries)
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"campaign {campaign_id}: {target.network.code} target {target.beneficiaries} beneficiaries")


@campaigns_group.command("session")
@click.argument("campaign_id", type=int)
@click.option("--date", "held_on", type=DAY, required=True, help="The day (YYYY-MM-DD).")
@click.option("--place", required=True)
@click.option("--network", "network_code", required=True, help="The network's code.")
@click.option("--collector", "collector_id", type=int, default=None, help="The collector's id.")
@mutuelle_option("Only a campaign and network of this mutuelle.")
@with_appcontext
def session_command(
    campaign_id: int, held_on: datetime, place: str, network_code: str, collector_id: int | None, mutuelle: str | None
) -> None:
    """Plan a collection session of a campaign."""
    scope_to(mutuelle)
    session = db()
    try:
        planned = add_session(
            session,
            get_campaign(session, campaign_id),
            held_on=held_on.date(),
            place=place,
            network_code=network_code,
            collector_id=collector_id,
        )
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from exc
    session.commit()
    click.echo(f"session {planned.id} on {planned.held_on} at {planned.place} ({planned.network.code})")


@campaigns_group.command("list")
@mutuelle_option("Only the campaigns this mutuelle sees, with its networks only.")
@with_appcontext
def list_command(mutuelle: str | None) -> None:
    """List campaigns: id, name, scheme, mutuelle, start, end, networks, sessions (tab-separated)."""
    scope_to(mutuelle)
    for c in list_campaigns(db()):
        mutuelle = c.mutuelle.code if c.mutuelle is not None else "-"
        fields = [c.id, c.name, c.scheme.code, mutuelle, c.start_on, c.end_on, len(c.targets), len(c.sessions)]
        click.echo("\t".join(str(f) for f in fields))


def _progress(campaign_id: int, on: datetime | None, mutuelle: str | None) -> CampaignProgress:
    scope_to(mutuelle)
    session = db()
    try:
        campaign = get_campaign(session, campaign_id)
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from exc
    return campaign_progress(session, campaign, _day(on) or campaign.scheme.local_today(utcnow()))


@campaigns_group.command("progress")
@click.argument("campaign_id", type=int)
@click.option("--on", type=DAY, default=None, help="The day counted (default: today in the scheme's time zone).")
@mutuelle_option("Only this mutuelle's networks (and a campaign it sees).")
@with_appcontext
def progress_command(campaign_id: int, on: datetime | None, mutuelle: str | None) -> None:
    """Print one network a line: commune, network, target, then households/beneficiaries per stage, behind."""
    progress = _progress(campaign_id, on, mutuelle)
    stages = (*STAGES[:2], "rejected", *STAGES[2:])
    click.echo("\t".join(["commune", "network", "target", *stages, "behind"]))
    for line in progress.networks:
        counts = [f"{getattr(line.funnel, s).households}/{getattr(line.funnel, s).beneficiaries}" for s in stages]
        click.echo(
            "\t".join(
                [
                    line.commune or "-",
                    line.key or "-",
                    str(line.funnel.target),
                    *counts,
                    "behind" if line.behind else "-",
                ]
            )
        )


@campaigns_group.command("money")
@click.argument("campaign_id", type=int)
@click.option("--on", type=DAY, default=None, help="The day counted (default: today in the scheme's time zone).")
@mutuelle_option("Only this mutuelle's networks (and a campaign it sees).")
@with_appcontext
def money_command(campaign_id: int, on: datetime | None, mutuelle: str | None) -> None:
    """Print each network's own money over the campaign, one a line: commune, network, payments … saved_percent."""
    progress = _progress(campaign_id, on, mutuelle)
    click.echo("\t".join(["commune", "network", *MONEY_FIELDS]))
    for money in progress.money:
        click.echo("\t".join([money.commune or "-", money.code, *money_fields(money)]))
