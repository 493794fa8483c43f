"""Screens for checking a member's coverage: a facility agent (member number + PIN) and an unknown phone
(member number + date of birth). `menus.member` puts them into the phone's tree.

Data: `caller` (a `CallerInfo`: the phone's agent, if any, and its country's language) is loaded on the dial
with the households. The PIN check and the date-of-birth check are effects with an outcome (`check:<hop>`, a
`CheckOutcome`): the caller applies them once per session and hop (a replay returns the first outcome: a wrong
PIN is counted once, a check is rate-limited once) and the answer screens read the outcome. The PIN and the
date of birth never enter the session state.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from menus.engine import AUTO, INPUT, Effect, Invalid, Item, Screen, State, Transition, View
from menus.labels import STATUS_LABELS
from menus.render import N_, Msg
from menus.values import AgentInfo, CallerInfo, CheckOutcome, record

AGENT_CHECK_EFFECT = "agent_check"
DOB_CHECK_EFFECT = "dob_check"
LAST_CHECK = "check:last"  # state.data key naming the outcome of the last check
CHECKED_NO = "check:no"  # state.data key of the member number being checked
OK, WRONG, LOCKED, INACTIVE, LIMITED, NOT_FOUND = "OK", "WRONG", "LOCKED", "INACTIVE", "LIMITED", "NOT_FOUND"
NOTHING = "NOTHING"  # another household's payment request: nothing to pay

MEMBER_NO_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,43}$")
PIN_RE = re.compile(r"^[0-9]{4,6}$")
DOB_RE = re.compile(r"^[0-9]{8}$")

SCREENS = (
    Screen("agent", view="agent"),
    Screen("agent_member", title=N_("Member number:")),
    Screen("agent_pin", view="agent_pin", secret=True),
    Screen("agent_route", auto=True),
    Screen("agent_answer", view="agent_answer", end=True),
    Screen("agent_refused", view="agent_refused", end=True),
    Screen("visitor", title=N_("This phone is not registered. To check a member, enter the member number:")),
    Screen("visitor_dob", title=N_("Date of birth (DDMMYYYY):"), secret=True),
    Screen("visitor_route", auto=True),
    Screen("visitor_answer", view="visitor_answer", end=True),
)

TRANSITIONS = (
    Transition("agent", "1", "agent_member"),
    Transition("agent", "2", "route"),
    Transition("agent_member", INPUT, "agent_pin", action="take_member_no"),
    Transition("agent_pin", INPUT, "agent_route", action="check_with_pin"),
    Transition("agent_route", AUTO, "agent_pin", conditions=("pin_wrong",)),
    Transition("agent_route", AUTO, "agent_refused", conditions=("pin_refused",)),
    Transition("agent_route", AUTO, "agent_answer"),
    Transition("visitor", INPUT, "visitor_dob", action="take_member_no"),
    Transition("visitor_dob", INPUT, "visitor_route", action="check_with_dob"),
    Transition("visitor_route", AUTO, "visitor_answer"),
)


# ---------------------------------------------------------------- data helpers


NO_CHECK = CheckOutcome("")  # the outcome read before any check


def caller(state: State) -> CallerInfo | None:
    """Return the cached caller data of the phone (None before the dial has read it)."""
    value = state.data.get("caller")
    return record(CallerInfo, "caller", value) if value else None


def agent(state: State) -> AgentInfo | None:
    """Return the cached agent of the phone, or None."""
    found = caller(state)
    return found.agent if found is not None else None


def last_check(state: State) -> CheckOutcome:
    """Return the outcome of the session's last check (`NO_CHECK` before any)."""
    key = state.data.get(LAST_CHECK)
    value = state.data.get(key) if key else None
    return record(CheckOutcome, str(key), value) if value else NO_CHECK


def parse_dob(text: str) -> date | None:
    """Return the date typed as DDMMYYYY, or None when it is not a real date."""
    if not DOB_RE.match(text):
        return None
    try:
        return date(int(text[4:]), int(text[2:4]), int(text[:2]))
    except ValueError:
        return None


# ---------------------------------------------------------------- conditions and actions


def _is_agent(state: State) -> bool:
    return agent(state) is not None


def _pin_wrong(state: State) -> bool:
    return last_check(state).outcome == WRONG


def _pin_refused(state: State) -> bool:
    return last_check(state).outcome in {LOCKED, INACTIVE}


def _take_member_no(state: State, value: Any) -> tuple[State, list[Effect]]:
    member_no = str(value).strip().upper()
    if not MEMBER_NO_RE.match(member_no):
        raise Invalid(N_("Invalid member number."))
    state.data[CHECKED_NO] = member_no
    state.data.pop(LAST_CHECK, None)
    return state, []


def _check(state: State, kind: str, target: int, secret: str) -> tuple[State, list[Effect]]:
    result = f"check:{state.hop}"
    state.data[LAST_CHECK] = result
    # The secret travels only in the effect, which is never stored; the outcome holds no secret.
    return state, [Effect(kind, target, f"{state.data[CHECKED_NO]}\n{secret}", result=result)]


def _check_with_pin(state: State, value: Any) -> tuple[State, list[Effect]]:
    pin = str(value).strip()
    found = agent(state)
    if found is None or not PIN_RE.match(pin):
        raise Invalid(N_("The PIN is 4 to 6 digits."))
    return _check(state, AGENT_CHECK_EFFECT, found.id, pin)


def _check_with_dob(state: State, value: Any) -> tuple[State, list[Effect]]:
    text = str(value).strip()
    if parse_dob(text) is None:
        raise Invalid(N_("Type the date as DDMMYYYY, e.g. 05031990."))
    return _check(state, DOB_CHECK_EFFECT, 0, text)


# ---------------------------------------------------------------- views


def _agent_view(state: State) -> View:
    found = agent(state)
    items = [Item(Msg(N_("Check a member")), key="1")]
    if state.data.get("households"):
        items.append(Item(Msg(N_("My household")), key="2"))
    return View(header=[found.facility if found is not None else ""], items=items)


def _agent_pin_view(state: State) -> View:
    check = last_check(state)
    header: list[Msg | str] = []
    if check.outcome == WRONG:
        header.append(Msg(N_("Wrong PIN. Tries left: {count}."), {"count": check.left}))
    header.append(Msg(N_("Your agent PIN:")))
    return View(header=header)


def _answer_lines(check: CheckOutcome, with_birth_year: bool) -> list[Msg | str]:
    status = Msg(STATUS_LABELS.get(check.status, check.status))
    lines: list[Msg | str] = []
    if with_birth_year and check.year:
        lines.append(Msg(N_("{name}, born {year}"), {"name": check.first, "year": check.year}))
    else:
        lines.append(f"{check.first} ({check.member_no})")
    if check.covered:
        lines.append(Msg(N_("Covered: YES ({status})"), {"status": status}))
    else:
        lines.append(Msg(N_("Covered: NO ({status})"), {"status": status}))
    if check.until is not None:
        lines.append(Msg(N_("Valid until {date}"), {"date": check.until}))
    return lines


def _agent_answer_view(state: State) -> View:
    check = last_check(state)
    if not check.found:
        header: list[Msg | str] = [Msg(N_("No member {no}."), {"no": check.member_no})]
    else:
        header = _answer_lines(check, with_birth_year=True)
    return View(header=header)


def _agent_refused_view(state: State) -> View:
    check = last_check(state)
    if check.outcome == INACTIVE:
        return View(header=[Msg(N_("This agent account is disabled. Contact the mutuelle."))])
    minutes = check.minutes if check.minutes is not None else 15
    return View(header=[Msg(N_("Too many wrong PINs. Try again in {minutes} min."), {"minutes": minutes})])


def _visitor_answer_view(state: State) -> View:
    check = last_check(state)
    if check.outcome == LIMITED:
        return View(header=[Msg(N_("Too many checks from this phone. Try again in an hour."))])
    if not check.found:
        return View(header=[Msg(N_("No member with this number and date of birth."))])
    return View(header=_answer_lines(check, with_birth_year=False))


VIEWS = {
    "agent": _agent_view,
    "agent_pin": _agent_pin_view,
    "agent_answer": _agent_answer_view,
    "agent_refused": _agent_refused_view,
    "visitor_answer": _visitor_answer_view,
}
CONDITIONS = {"is_agent": _is_agent, "pin_wrong": _pin_wrong, "pin_refused": _pin_refused}
ACTIONS = {
    "take_member_no": _take_member_no,
    "check_with_pin": _check_with_pin,
    "check_with_dob": _check_with_dob,
}
