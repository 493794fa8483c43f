"""SMS command grammar: keywords in French, English and Wolof, arguments, masking; free text never breaks it."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis

from models.access.rate_limit import RateLimit, allow
from models.messaging.commands import MASK, Command, CommandKind, mask_secrets, parse_command
from models.messaging.inbound import STATUS_TEMPLATES
from models.messaging.reminders import in_daytime, reminder_kind
from models.texts.i18n import SMS_TEMPLATES

K = CommandKind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # French
        ("STATUT", Command(K.STATUS)),
        ("statut SN-TN-000123-01 01011980", Command(K.STATUS, "SN-TN-000123-01", date(1980, 1, 1))),
        ("Statut sn000123-02 5/2/1981", Command(K.STATUS, "SN000123-02", date(1981, 2, 5))),
        ("payer", Command(K.PAY)),
        ("payer 7000", Command(K.PAY, amount_text="7000")),
        ("PAYER 3.500F", Command(K.PAY, amount_text="3.500")),
        ("solde", Command(K.BALANCE)),
        ("Verif SN-TN-000123-01 4821", Command(K.CHECK, "SN-TN-000123-01", pin="4821")),
        ("VÉRIF SN1-01 4821", Command(K.CHECK, "SN1-01", pin="4821")),
        ("langue wo", Command(K.LANGUAGE, language="wo")),
        ("LANGUE français", Command(K.LANGUAGE, language="fr")),
        ("àide", Command(K.HELP)),
        ("Aide ?", Command(K.HELP)),
        ("arrêt", Command(K.STOP)),
        # English
        ("status", Command(K.STATUS)),
        ("Pay 2000", Command(K.PAY, amount_text="2000")),
        ("BALANCE", Command(K.BALANCE)),
        ("check KH000001-01 4821", Command(K.CHECK, "KH000001-01", pin="4821")),
        ("lang km", Command(K.LANGUAGE, language="km")),
        ("help", Command(K.HELP)),
        ("stop", Command(K.STOP)),
        ("Start", Command(K.START)),
        # Wolof
        ("xool", Command(K.STATUS)),
        ("Fey", Command(K.PAY)),
        ("xaalis", Command(K.BALANCE)),
        ("seet SN1-01 4821", Command(K.CHECK, "SN1-01", pin="4821")),
        ("làkk en", Command(K.LANGUAGE, language="en")),
        ("ndimbal", Command(K.HELP)),
        ("bayil", Command(K.STOP)),
        ("tambali", Command(K.START)),
        # Wrong arguments: the command's usage
        ("statut SN1-01", Command(K.STATUS, "SN1-01", problem="date of birth")),
        ("statut SN1-01 31021980", Command(K.STATUS, "SN1-01", problem="date of birth")),
        ("payer beaucoup", Command(K.PAY, problem="amount")),
        ("verif SN1-01", Command(K.CHECK, "SN1-01", problem="member number and PIN")),
        ("langue de", Command(K.LANGUAGE, problem="language code")),
        # Unknown: help
        ("", Command(K.HELP, unknown=True)),
        ("bonjour", Command(K.HELP, unknown=True)),
        ("   \n ", Command(K.HELP, unknown=True)),
    ],
)
def test_commands_read_like_the_spec(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("Verif SN-TN-000123-01 4821", f"Verif SN-TN-000123-01 {MASK}"),
        ("STATUT SN000123-01 01011980", f"STATUT SN000123-01 {MASK}"),
        ("statut SN000123-01 01/01/1980", f"statut SN000123-01 {MASK}"),
        ("my pin is 123456", f"my pin is {MASK}"),
        ("payer 7000", "payer 7000"),  # an amount is not a secret
        ("STATUT", "STATUT"),
    ],
)
def test_pins_and_dates_of_birth_are_masked(text: str, stored: str) -> None:
    assert mask_secrets(text) == stored


@given(st.text(max_size=600))
def test_free_text_always_parses_to_a_command_with_a_reply(text: str) -> None:
    command = parse_command(text)
    assert isinstance(command.kind, CommandKind)
    assert command.language in (None, "fr", "wo", "en", "km")
    masked = mask_secrets(text)
    assert isinstance(masked, str)


@given(
    st.sampled_from(["VERIF", "check", "Seet", "STATUT", "xool"]),
    st.from_regex(r"[A-Z]{2}[0-9]{6}-0[1-9]", fullmatch=True),
    st.from_regex(r"[0-9]{4,8}", fullmatch=True),
)
def test_a_secret_after_a_member_number_never_reaches_storage(keyword: str, member_no: str, secret: str) -> None:
    masked = mask_secrets(f"{keyword} {member_no} {secret}")
    assert secret not in masked.split()
    assert member_no in masked


def test_every_status_has_a_template() -> None:
    assert set(STATUS_TEMPLATES.values()) <= set(SMS_TEMPLATES)


@pytest.mark.parametrize(
    ("today", "kind"),
    [
        (date(2027, 1, 1), None),  # more than 14 days before the end
        (date(2027, 1, 17), "before-14"),
        (date(2027, 1, 27), "before-14"),  # a missed day is caught up
        (date(2027, 1, 28), "before-3"),
        (date(2027, 1, 31), "before-3"),  # the last covered day
        (date(2027, 2, 10), None),  # in grace (30 days)
        (date(2027, 3, 2), None),  # last day of grace
        (date(2027, 3, 3), "lapsed"),
        (date(2027, 4, 1), "lapsed"),
        (date(2027, 4, 2), None),  # lapsed too long ago for a late reminder
    ],
)
def test_reminder_due_on_a_day(today: date, kind: str | None) -> None:
    assert reminder_kind(today, date(2027, 1, 31), [3, 14], grace_days=30) == kind


def test_daytime_hours() -> None:
    from datetime import time

    assert in_daytime(time(8, 0), time(8, 0), time(20, 0))
    assert not in_daytime(time(20, 0), time(8, 0), time(20, 0))
    assert not in_daytime(time(7, 59), time(8, 0), time(20, 0))
    assert in_daytime(time(23, 0), time(22, 0), time(6, 0))


def test_rate_limit_counts_each_event_once(redis_client: Redis) -> None:
    rule = RateLimit("test", limit=2, window_seconds=60)
    assert allow(redis_client, rule, "+221770000000", "a", now=1000)
    assert allow(redis_client, rule, "+221770000000", "a", now=1001)  # a replay counts once
    assert allow(redis_client, rule, "+221770000000", "b", now=1002)
    assert not allow(redis_client, rule, "+221770000000", "c", now=1003)
    assert allow(redis_client, rule, "+221770000001", "d", now=1003)  # another subject
    assert allow(redis_client, rule, "+221770000000", "e", now=1070)  # the window has moved on
