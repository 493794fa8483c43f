"""Enrolment campaigns as data: a scheme's (or a mutuelle's) dates, a target per network, the planned sessions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import Base, utcnow
from models.enrolment.tables import Collector
from models.members.household import Network
from models.schemes.mutuelle import Mutuelle, find_mutuelle
from models.schemes.scheme import Scheme

DEFAULT_TARGET = 250  # beneficiaries per network, as the CMU pilots plan them
NAME_MAX = 120
PLACE_MAX = 200


class Campaign(Base):
    """An enrolment campaign of a scheme, from one day to another, maybe kept to one mutuelle."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id"), index=True)
    mutuelle_id: Mapped[int | None] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    start_on: Mapped[date]
    end_on: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    scheme: Mapped[Scheme] = relationship()
    mutuelle: Mapped[Mutuelle | None] = relationship()
    targets: Mapped[list[CampaignTarget]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="CampaignTarget.id"
    )
    sessions: Mapped[list[CampaignSession]] = relationship(
        back_populates="campaign",
        cascade="all, delete-orphan",
        order_by="(CampaignSession.held_on, CampaignSession.id)",
    )
    events: Mapped[list[CampaignEvent]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="CampaignEvent.id"
    )


class CampaignTarget(Base):
    """How many beneficiaries a network should enrol during a campaign."""

    __tablename__ = "campaign_targets"
    __table_args__ = (UniqueConstraint("campaign_id", "network_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    beneficiaries: Mapped[int] = mapped_column(Integer, default=DEFAULT_TARGET)

    campaign: Mapped[Campaign] = relationship(back_populates="targets")
    network: Mapped[Network] = relationship()


class CampaignSession(Base):
    """A planned collection session: a day, a place, the network enrolled there and maybe its collector."""

    __tablename__ = "campaign_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    held_on: Mapped[date]
    place: Mapped[str] = mapped_column(String(PLACE_MAX))
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    collector_id: Mapped[int | None] = mapped_column(ForeignKey("collectors.id"), index=True)

    campaign: Mapped[Campaign] = relationship(back_populates="sessions")
    network: Mapped[Network] = relationship()
    collector: Mapped[Collector | None] = relationship()


class CampaignEvent(Base):
    """The audit trail of a campaign's changes by staff: who changed what, when."""

    __tablename__ = "campaign_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(24))  # edit, target, untarget, session, unsession
    note: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="events")


class CampaignError(ValueError):
    """A campaign, target or session cannot be recorded as asked; the message says why."""


def record_campaign_event(campaign: Campaign, actor: str, action: str, note: str) -> CampaignEvent:
    """Append a staff change to the campaign's audit trail; the caller commits."""
    event = CampaignEvent(actor=actor[:80], action=action, note=note[:1000])
    campaign.events.append(event)
    return event


def check_name(name: str) -> str:
    """Return the name stripped, or fail when empty or too long."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise CampaignError(f"the name must be 1 to {NAME_MAX} characters")
    return name


def update_campaign(session: Session, campaign: Campaign, *, name: str, start_on: date, end_on: date) -> list[str]:
    """Rename a campaign or move its days; return what changed. Its planned sessions must stay within the days."""
    name = check_name(name)
    if end_on < start_on:
        raise CampaignError("the campaign ends before it starts")
    outside = [s.held_on for s in campaign.sessions if not start_on <= s.held_on <= end_on]
    if outside:
        raise CampaignError(f"a session planned on {min(outside)} would be outside the campaign: remove it first")
    changed = []
    if name != campaign.name:
        changed.append(f"name {campaign.name!r} → {name!r}")
    if (start_on, end_on) != (campaign.start_on, campaign.end_on):
        changed.append(f"days {campaign.start_on}–{campaign.end_on} → {start_on}–{end_on}")
    campaign.name, campaign.start_on, campaign.end_on = name, start_on, end_on
    session.flush()
    return changed


def create_campaign(
    session: Session, *, name: str, scheme_code: str, start_on: date, end_on: date, mutuelle_code: str | None = None
) -> Campaign:
    """Create a campaign of a scheme (maybe kept to one of its mutuelles) between two days."""
    name = check_name(name)
    if end_on < start_on:
        raise CampaignError("the campaign ends before it starts")
    scheme = session.scalars(select(Scheme).where(Scheme.code == scheme_code.strip())).first()
    if scheme is None:
        raise CampaignError(f"no scheme {scheme_code}")
    mutuelle = None
    if mutuelle_code is not None:
        mutuelle = find_mutuelle(session, mutuelle_code)
        if mutuelle is None or mutuelle.scheme_id != scheme.id:
            raise CampaignError(f"{scheme.code} has no mutuelle {mutuelle_code}")
    campaign = Campaign(scheme=scheme, mutuelle=mutuelle, name=name, start_on=start_on, end_on=end_on)
    session.add(campaign)
    session.flush()
    return campaign


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    """Return a campaign by id, or fail with a CampaignError."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id}")
    return campaign


def list_campaigns(session: Session) -> list[Campaign]:
    """Return every campaign, the latest start first."""
    return list(session.scalars(select(Campaign).order_by(Campaign.start_on.desc(), Campaign.id.desc())))


def _network(session: Session, campaign: Campaign, code: str) -> Network:
    network = session.scalars(
        select(Network).where(Network.scheme_id == campaign.scheme_id, Network.code == code.strip())
    ).first()
    if network is None:
        raise CampaignError(f"no network {code} in the campaign's scheme")
    if campaign.mutuelle_id is not None and network.mutuelle_id != campaign.mutuelle_id:
        raise CampaignError(f"network {code} is not of the campaign's mutuelle")
    return network


def set_target(
    session: Session, campaign: Campaign, network_code: str, beneficiaries: int = DEFAULT_TARGET
) -> CampaignTarget:
    """Set (or change) a network's target of beneficiaries in a campaign."""
    if beneficiaries <= 0:
        raise CampaignError("a target is at least one beneficiary")
    network = _network(session, campaign, network_code)
    target = next((t for t in campaign.targets if t.network_id == network.id), None)
    if target is None:
        target = CampaignTarget(network=network, beneficiaries=beneficiaries)
        campaign.targets.append(target)
    target.beneficiaries = beneficiaries
    session.flush()
    return target


def add_session(
    session: Session,
    campaign: Campaign,
    *,
    held_on: date,
    place: str,
    network_code: str,
    collector_id: int | None = None,
) -> CampaignSession:
    """Plan a collection session of a campaign: a day within it, a place, a network and maybe its collector."""
    place = place.strip()
    if not place or len(place) > PLACE_MAX:
        raise CampaignError(f"the place must be 1 to {PLACE_MAX} characters")
    if not campaign.start_on <= held_on <= campaign.end_on:
        raise CampaignError(f"{held_on} is outside the campaign ({campaign.start_on} to {campaign.end_on})")
    network = _network(session, campaign, network_code)
    collector = None
    if collector_id is not None:
        collector = session.get(Collector, collector_id)
        if collector is None or collector.mutuelle_id != network.mutuelle_id:
            raise CampaignError(f"no collector {collector_id} in the network's mutuelle")
    planned = CampaignSession(held_on=held_on, place=place, network=network, collector=collector)
    campaign.sessions.append(planned)
    session.flush()
    return planned


def remove_target(session: Session, campaign: Campaign, network_code: str) -> bool:
    """Remove a network's target from a campaign; return whether it had one."""
    network = _network(session, campaign, network_code)
    target = next((t for t in campaign.targets if t.network_id == network.id), None)
    if target is None:
        return False
    campaign.targets.remove(target)
    session.flush()
    return True


def describe_session(planned: CampaignSession) -> str:
    """Return a planned session as the audit trail words it: day, place, network and collector."""
    who = f", {planned.collector.name}" if planned.collector is not None else ""
    return f"{planned.held_on} {planned.place} ({planned.network.code}{who})"


def remove_session(session: Session, campaign: Campaign, session_id: int) -> str:
    """Remove a planned session from a campaign; return how it was described."""
    planned = next((s for s in campaign.sessions if s.id == session_id), None)
    if planned is None:
        raise CampaignError(f"no session {session_id} in the campaign")
    described = describe_session(planned)
    campaign.sessions.remove(planned)
    session.flush()
    return described
