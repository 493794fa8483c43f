"""Facility access: API tokens shown once and stored hashed, agent PINs with a lockout."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from extensions import db
from models.access.agents import AgentError, PinOutcome, check_pin_format, create_agent, verify_agent_pin
from models.access.hashing import hash_password, password_needs_rehash, verify_password
from models.access.tables import Agent, ApiToken
from models.access.tokens import authenticate_token, issue_token, revoke_token
from models.base import utcnow
from tests.conftest import make_test_app
from tests.members_helpers import load_schemes

NOW = datetime(2026, 11, 23, 9, 0)


@pytest.fixture
def cli(app: Flask) -> Callable[..., Result]:
    with app.app_context():
        load_schemes(db())

    def run(*args: str, input: str | None = None) -> Result:
        return app.test_cli_runner().invoke(args=list(args), input=input)

    return run


# ---------------------------------------------------------------- API tokens


def test_token_is_printed_once_and_stored_hashed(app: Flask, cli: Callable[..., Result]) -> None:
    result = cli("api-token", "create", "hopital-thies", "--facility", "Hopital regional de Thies")
    assert result.exit_code == 0, result.output
    plain = result.stdout.strip().splitlines()[-1]
    assert len(plain) >= 43
    with app.app_context():
        session = db()
        token = session.scalars(select(ApiToken)).one()
        assert token.token_hash == hashlib.sha256(plain.encode()).hexdigest()
        assert token.prefix == plain[:8] and plain not in (token.token_hash, token.prefix)
        found = authenticate_token(session, plain)
        assert found is not None and found.facility == "Hopital regional de Thies"
        assert authenticate_token(session, plain[:-1]) is None
        assert authenticate_token(session, "") is None
    listing = cli("api-token", "list")
    assert listing.exit_code == 0
    assert "hopital-thies\tHopital regional de Thies" in listing.stdout and "active" in listing.stdout
    assert plain not in listing.stdout


def test_revoked_token_no_longer_authenticates(app: Flask, cli: Callable[..., Result]) -> None:
    plain = cli("api-token", "create", "audit", "--facility", "Auditor").stdout.strip().splitlines()[-1]
    result = cli("api-token", "revoke", "audit")
    assert result.exit_code == 0, result.output
    assert "revoked token audit" in result.stdout
    with app.app_context():
        assert authenticate_token(db(), plain) is None
    assert "revoked" in cli("api-token", "list").stdout


def test_token_cli_errors(cli: Callable[..., Result]) -> None:
    assert cli("api-token", "create", "dup", "--facility", "A").exit_code == 0
    again = cli("api-token", "create", "dup", "--facility", "B")
    assert again.exit_code == 1 and "already exists (active)" in again.output
    unknown = cli("api-token", "revoke", "nobody")
    assert unknown.exit_code == 1 and "no token named 'nobody'" in unknown.output
    missing = cli("api-token", "create", "x")
    assert missing.exit_code == 2 and "--facility" in missing.output


def test_tokens_are_distinct(session: Session) -> None:
    _, first = issue_token(session, name="a", facility="F", now=NOW)
    _, second = issue_token(session, name="b", facility="F", now=NOW)
    session.commit()
    assert first != second
    a, b = authenticate_token(session, first), authenticate_token(session, second)
    assert a is not None and b is not None and (a.name, b.name) == ("a", "b")
    revoke_token(session, "a", NOW)
    session.commit()
    assert authenticate_token(session, first) is None and authenticate_token(session, second) is not None


# ---------------------------------------------------------------- agents


def test_agent_create_list_and_lockout_unlock(app: Flask, cli: Callable[..., Result]) -> None:
    result = cli(
        "agents",
        "create",
        "--facility",
        "Poste de sante Pekesse",
        "--phone",
        "77 555 12 34",
        "--pin",
        "2580",
        "--country",
        "SN",
    )
    assert result.exit_code == 0, result.output
    assert "agent +221775551234 created" in result.stdout
    start = utcnow()  # `agents list` shows the lock against the real clock
    with app.app_context():
        session = db()
        agent = session.scalars(select(Agent)).one()
        assert agent.pin_hash.startswith("$argon2id$") and "2580" not in agent.pin_hash
        for attempt in range(1, 5):
            outcome = verify_agent_pin(session, agent, "1111", start + timedelta(seconds=attempt))
            assert (outcome.outcome, outcome.attempts_left) == (PinOutcome.WRONG, 5 - attempt)
        fifth = verify_agent_pin(session, agent, "1111", start + timedelta(seconds=5))
        assert fifth.outcome is PinOutcome.LOCKED and fifth.locked_until == start + timedelta(seconds=5, minutes=15)
        session.commit()
        # Locked: even the right PIN is refused, without being checked.
        assert verify_agent_pin(session, agent, "2580", start + timedelta(minutes=10)).outcome is PinOutcome.LOCKED
        session.commit()
    assert "locked until" in cli("agents", "list").stdout
    result = cli("agents", "unlock", "+221 77 555 12 34")
    assert result.exit_code == 0, result.output
    assert "agent +221775551234 unlocked" in result.stdout
    with app.app_context():
        session = db()
        agent = session.scalars(select(Agent)).one()
        assert (agent.failed_attempts, agent.locked_until) == (0, None)
        assert verify_agent_pin(session, agent, "2580", start + timedelta(minutes=11)).ok
    listing = cli("agents", "list").stdout
    assert "+221775551234\tPoste de sante Pekesse\t\tactive" in listing


def test_agent_pin_is_prompted_and_phone_uses_the_default_scheme_country(db_url: str, redis_url: str) -> None:
    app = make_test_app(db_url, redis_url, DEFAULT_SCHEME="cmu-thies")
    with app.app_context():
        load_schemes(db())  # two countries: the default scheme decides
    result = app.test_cli_runner().invoke(
        args=["agents", "create", "--facility", "CS Thies", "--phone", "781112233", "--name", "Awa"],
        input="4826\n4826\n",
    )
    assert result.exit_code == 0, result.output
    assert "agent +221781112233 created" in result.stdout and "4826" not in result.stdout
    with app.app_context():
        session = db()
        agent = session.scalars(select(Agent)).one()
        assert agent.name == "Awa" and verify_agent_pin(session, agent, "4826", NOW).ok


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phone", "771112233", "--pin", "12"], "4 to 6 digits"),
        (["--phone", "771112233", "--pin", "12a4"], "4 to 6 digits"),
        (["--phone", "771112233", "--pin", "1234"], "run like 1234"),
        (["--phone", "771112233", "--pin", "0000"], "repeated digit"),
        (["--phone", "12345", "--pin", "2580"], "not a valid phone number for SN"),
    ],
)
def test_agent_create_refusals(cli: Callable[..., Result], args: list[str], message: str) -> None:
    result = cli("agents", "create", "--facility", "CS", "--country", "SN", *args)
    assert result.exit_code == 1 and message in result.output


def test_unlock_unknown_agent(cli: Callable[..., Result]) -> None:
    result = cli("agents", "unlock", "771112233", "--country", "SN")
    assert result.exit_code == 1 and "no agent with phone +221771112233" in result.output


def test_correct_pin_resets_the_count_and_lock_expires(session: Session) -> None:
    agent = create_agent(session, facility="CS", phone="+221770001122", pin="4826", country="SN")
    session.commit()
    for _ in range(4):
        assert verify_agent_pin(session, agent, "9999", NOW).outcome is PinOutcome.WRONG
    assert verify_agent_pin(session, agent, "4826", NOW).ok
    session.commit()
    session.refresh(agent)
    assert agent.failed_attempts == 0
    for _ in range(5):
        result = verify_agent_pin(session, agent, "9999", NOW)
    assert result.outcome is PinOutcome.LOCKED
    session.commit()
    assert (
        verify_agent_pin(session, agent, "4826", NOW + timedelta(minutes=14, seconds=59)).outcome is PinOutcome.LOCKED
    )
    # After 15 minutes the lock is over and the agent has five fresh attempts.
    later = NOW + timedelta(minutes=15)
    assert verify_agent_pin(session, agent, "9999", later).attempts_left == 4
    assert verify_agent_pin(session, agent, "4826", later).ok


def test_inactive_agent_is_refused(session: Session) -> None:
    agent = create_agent(session, facility="CS", phone="+221770001122", pin="4826", country="SN")
    agent.active = False
    assert verify_agent_pin(session, agent, "4826", NOW).outcome is PinOutcome.INACTIVE
    with pytest.raises(AgentError, match="already exists"):
        create_agent(session, facility="CS", phone="770001122", pin="4826", country="SN")


@pytest.mark.parametrize("pin", ["2580", "48261", "914702", "1357"])
def test_acceptable_pins(pin: str) -> None:
    check_pin_format(pin)


def test_staff_passwords() -> None:
    encoded = hash_password("correct horse battery staple")
    assert encoded.startswith("$argon2id$")
    assert verify_password(encoded, "correct horse battery staple")
    assert not verify_password(encoded, "Correct horse battery staple")
    assert not verify_password("not-a-hash", "x")
    assert not password_needs_rehash(encoded)
