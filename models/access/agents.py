"""Health-facility agents: PINs, the lockout after repeated wrong PINs, and unlocking."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from models.access.hashing import hash_pin, verify_pin
from models.access.tables import Agent
from models.db import every_mutuelle
from models.members.phones import normalise_phone
from models.views.scope import scope_session, session_scope

MAX_FAILED_PINS = 5
LOCKOUT = timedelta(minutes=15)
PIN_LENGTHS = range(4, 7)


class AgentError(ValueError):
    """An agent cannot be created or found; the message says why."""


class PinOutcome(enum.StrEnum):
    OK = "OK"
    WRONG = "WRONG"
    LOCKED = "LOCKED"
    INACTIVE = "INACTIVE"


@dataclass(frozen=True)
class PinResult:
    """The answer to a PIN attempt: outcome, attempts left before the lock, and the lock's end."""

    outcome: PinOutcome
    attempts_left: int
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        """Return whether the PIN was accepted."""
        return self.outcome is PinOutcome.OK


def check_pin_format(pin: str) -> None:
    """Raise AgentError unless the PIN is 4 to 6 digits and not trivially guessable."""
    if not (pin.isascii() and pin.isdigit() and len(pin) in PIN_LENGTHS):
        raise AgentError("the PIN must be 4 to 6 digits")
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    # 0000, 1234, 9876: the first PINs anyone tries on a lost phone.
    if steps in ({0}, {1}, {-1}):
        raise AgentError("the PIN must not be a repeated digit or a run like 1234")


def create_agent(
    session: Session,
    *,
    facility: str,
    phone: str,
    pin: str,
    country: str | None,
    name: str | None = None,
    mutuelle_id: int | None = None,
) -> Agent:
    """Create an agent with an argon2-hashed PIN (checking a mutuelle's members, or every mutuelle's); the phone
    is normalised for `country`."""
    facility = facility.strip()
    if not facility or len(facility) > 120:
        raise AgentError("the facility must be 1 to 120 characters")
    try:
        e164 = normalise_phone(phone, country)
    except ValueError as exc:
        raise AgentError(f"phone {phone!r}: {exc}") from exc
    check_pin_format(pin)
    if session.scalar(every_mutuelle(select(Agent.id).where(Agent.phone == e164))) is not None:
        raise AgentError(f"an agent with phone {e164} already exists")
    agent = Agent(
        facility=facility,
        phone=e164,
        name=(name or "").strip() or None,
        pin_hash=hash_pin(pin),
        mutuelle_id=mutuelle_id,
    )
    session.add(agent)
    session.flush()
    return agent


def find_agent(session: Session, phone: str) -> Agent | None:
    """Return the agent with this E.164 phone, or None."""
    return session.scalar(select(Agent).where(Agent.phone == phone))


def verify_agent_pin(session: Session, agent: Agent, pin: str, now: datetime) -> PinResult:
    """Check an agent's PIN, counting failures: five wrong in a row lock the agent for 15 minutes.

    A locked agent is refused without the PIN being checked. The caller commits (and keys the call on
    the USSD session + hop so a replayed hop is not counted twice).
    """
    if not agent.active:
        return PinResult(PinOutcome.INACTIVE, 0)
    if agent.locked_until is not None:
        if now < agent.locked_until:
            return PinResult(PinOutcome.LOCKED, 0, agent.locked_until)
        # The lock has run out: a fresh set of attempts.
        agent.locked_until = None
        agent.failed_attempts = 0
        session.flush()
    if verify_pin(agent.pin_hash, pin):
        if agent.failed_attempts:
            agent.failed_attempts = 0
            session.flush()
        return PinResult(PinOutcome.OK, MAX_FAILED_PINS)
    # Increment in SQL so concurrent wrong PINs (two USSD sessions) are all counted.
    failed = session.execute(
        update(Agent)
        .where(Agent.id == agent.id)
        .values(failed_attempts=Agent.failed_attempts + 1)
        .returning(Agent.failed_attempts)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    # Record the database's count without marking it dirty, so no flush writes back a stale number.
    set_committed_value(agent, "failed_attempts", failed)
    if failed >= MAX_FAILED_PINS:
        agent.locked_until = now + LOCKOUT
        session.flush()
        return PinResult(PinOutcome.LOCKED, 0, agent.locked_until)
    session.flush()
    return PinResult(PinOutcome.WRONG, MAX_FAILED_PINS - failed)


def unlock_agent(session: Session, phone: str) -> Agent:
    """Clear an agent's failed attempts and lock; the caller commits."""
    agent = find_agent(session, phone)
    if agent is None:
        raise AgentError(f"no agent with phone {phone}")
    agent.failed_attempts = 0
    agent.locked_until = None
    session.flush()
    return agent


def list_agents(session: Session) -> list[Agent]:
    """Return every agent by facility and phone."""
    return list(session.scalars(select(Agent).order_by(Agent.facility, Agent.phone)))


@contextmanager
def agent_scope(session: Session, agent: Agent) -> Iterator[None]:
    """Keep the session to the agent's mutuelle while the block reads a member (every mutuelle's: unchanged).

    An agent kept to a mutuelle checks only its members: another mutuelle's member answers as an unknown one.
    """
    if agent.mutuelle_id is None:
        yield
        return
    before = session_scope(session)
    scope_session(session, [agent.mutuelle_id])
    try:
        yield
    finally:
        scope_session(session, before)
