"""The menu tree of a phone: a member's menus, a facility agent's check, an unknown phone's check.

Data the screens read, cached in `state.data` by the caller (see `menus.data`) as the records of `menus.values`:
- `households`: the phone's households (`HouseholdInfo`: number, language, plan, network, scheme, head, members);
- `caller`: a `CallerInfo` — whether the phone is an agent's, and the language of its country's scheme for a
  phone without a household;
- `coverage:<household id>`: a `Coverage`, the eligibility of the household and its active members on the
  scheme's today, with the payment choices (the first one being one period: the amount due, or the next payment
  when covered; none beyond the advance cap), the amount due, the next payment and why Pay is refused; read on
  the dial with the households (`menus.data`), so it is usually there before a screen asks for it;
- `payments:<household id>`: the household's last five payments (`PaymentLine`).

`2 Pay` ends with a payment request, an effect with an outcome (`request:<hop>`, a `PaymentReference`: reference,
amount and the scheme's channels) applied once per session and hop; the same reference is sent by SMS. `6 Pay
another household` asks for a household number and ends the same way for that household (an `OtherPayment`
outcome, rate-limited like the member checks, so a number is never guessed from a phone's own household).
"""

from __future__ import annotations

import re
from typing import Any

from menus import checks
from menus.engine import AUTO, CHOICE, INPUT, Effect, Invalid, Item, Option, Screen, State, Transition, Tree, View
from menus.labels import PAYMENT_STATUS_LABELS, PLAN_LABELS, STATUS_LABELS
from menus.render import LANGUAGE_NAMES, N_, Msg
from menus.values import (
    Coverage,
    HouseholdInfo,
    OtherPayment,
    PaymentLine,
    PaymentReference,
    decode,
    record,
    record_list,
)
from models.schemes.amounts import Amount, currency_label

LANGUAGE_EFFECT = "language"
PAYMENT_REQUEST_EFFECT = "payment_request"
OTHER_PAYMENT_EFFECT = "other_payment_request"
HOUSEHOLD_NO_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,43}$")
PAYMENTS_SHOWN = 5
CUSTOM_AMOUNT = "custom"  # value of the "Another amount" choice
PAY_CUSTOM = "pay:custom"  # state.data: the payer chose to type an amount
PAY_REQUEST = "pay:request"  # state.data: the key of the last payment request's outcome
MAX_AMOUNT_DIGITS = 9

__all__ = ["PAYMENT_STATUS_LABELS", "PLAN_LABELS", "STATUS_LABELS", "TREE"]

SCREENS = (
    Screen("start", auto=True, needs=("households", "caller")),
    Screen("route", auto=True),
    Screen("pick", title=N_("Choose your household:"), view="pick"),
    Screen(
        "main",
        view="main",
        options=(
            Option("1", N_("My coverage")),
            Option("2", N_("Pay")),
            Option("3", N_("My household")),
            Option("4", N_("My payments")),
            Option("5", N_("Language")),
            Option("6", N_("Pay another household")),
        ),
    ),
    Screen("coverage", view="coverage", needs=("coverage",)),
    Screen("pay", auto=True, needs=("coverage",)),
    Screen("pay_refused", view="pay_refused", end=True),
    Screen("pay_nothing", view="pay_nothing", end=True),
    Screen("pay_plan", view="pay_plan"),
    Screen("pay_route", auto=True),
    Screen("pay_amount", view="pay_amount"),
    Screen("pay_done", view="pay_done", end=True),
    Screen("pay_other", title=N_("Number of the household to pay for:")),
    Screen("pay_other_done", view="pay_other_done", end=True),
    Screen("household", view="household"),
    Screen("payments", view="payments", needs=("payments",)),
    Screen("language", view="language"),
    *checks.SCREENS,
)

TRANSITIONS = (
    Transition("start", AUTO, "agent", conditions=("is_agent",), action="speak_caller_language"),
    Transition("start", AUTO, "route"),
    Transition("route", AUTO, "visitor", conditions=("no_household",), action="speak_caller_language"),
    Transition("route", AUTO, "main", conditions=("household_chosen",)),
    Transition("route", AUTO, "main", conditions=("one_household",), action="choose_only_household"),
    Transition("route", AUTO, "pick", action="speak_first_household_language"),
    Transition("pick", CHOICE, "route", action="choose_household"),
    Transition("main", "1", "coverage"),
    Transition("main", "2", "pay"),
    Transition("main", "3", "household"),
    Transition("main", "4", "payments"),
    Transition("main", "5", "language"),
    Transition("pay", AUTO, "pay_refused", conditions=("pay_refused",)),
    Transition("main", "6", "pay_other"),
    Transition("pay_other", INPUT, "pay_other_done", action="request_other_payment"),
    Transition("pay", AUTO, "pay_nothing", conditions=("nothing_due",)),
    Transition("pay", AUTO, "pay_plan"),
    Transition("pay_plan", CHOICE, "pay_route", action="choose_payment"),
    Transition("pay_route", AUTO, "pay_amount", conditions=("custom_amount",)),
    Transition("pay_route", AUTO, "pay_done"),
    Transition("pay_amount", INPUT, "pay_done", action="enter_amount"),
    Transition("language", CHOICE, "start", action="set_language"),
    *checks.TRANSITIONS,
)


# ---------------------------------------------------------------- data helpers


def households(state: State) -> list[HouseholdInfo]:
    """Return the cached households of the phone."""
    return record_list(HouseholdInfo, "households", state.data.get("households"))


def chosen(state: State) -> HouseholdInfo:
    """Return the cached data of the chosen household."""
    for household in households(state):
        if household.id == state.household:
            return household
    raise LookupError("no household chosen")


def data_keys(need: str, state: State) -> list[str]:
    """Return the `state.data` keys a screen's need stands for."""
    if need in {"households", "caller"}:
        return [need]
    if state.household is None:
        return []
    return [f"{need}:{state.household}"]


def _amount(state: State, value: int) -> Amount:
    scheme = chosen(state).scheme
    return Amount(value, scheme.currency, scheme.exponent)


# ---------------------------------------------------------------- conditions and actions


def _no_household(state: State) -> bool:
    return not households(state)


def _one_household(state: State) -> bool:
    return len(households(state)) == 1


def _household_chosen(state: State) -> bool:
    return state.household is not None and any(h.id == state.household for h in households(state))


def _choose(state: State, household: HouseholdInfo) -> State:
    state.household = household.id
    state.lang = household.lang
    return state


def _choose_only_household(state: State, _value: Any) -> tuple[State, list[Effect]]:
    return _choose(state, households(state)[0]), []


def _speak_caller_language(state: State, _value: Any) -> tuple[State, list[Effect]]:
    caller = checks.caller(state)
    if caller is not None and caller.lang:
        state.lang = caller.lang
    return state, []


def _coverage(state: State) -> Coverage:
    key = f"coverage:{state.household}"
    return record(Coverage, key, state.data[key])


def _pay_refused(state: State) -> bool:
    return bool(_coverage(state).refusal)


def _nothing_due(state: State) -> bool:
    # Nothing due and nothing to pay ahead (covered up to the advance cap): Pay has nothing to offer.
    return not _coverage(state).choices


def _custom_amount(state: State) -> bool:
    return bool(state.data.get(PAY_CUSTOM))


def _request(state: State, amount: int, periods: int) -> tuple[State, list[Effect]]:
    result = f"request:{state.hop}"
    state.data[PAY_REQUEST] = result
    return state, [Effect(PAYMENT_REQUEST_EFFECT, chosen(state).id, f"{amount}:{periods}", result=result)]


def _choose_payment(state: State, value: Any) -> tuple[State, list[Effect]]:
    if value == CUSTOM_AMOUNT:
        state.data[PAY_CUSTOM] = True
        return state, []
    state.data[PAY_CUSTOM] = False
    periods, amount = int(value[0]), int(value[1])
    return _request(state, amount, periods)


def _enter_amount(state: State, value: Any) -> tuple[State, list[Effect]]:
    text = str(value).strip().replace(" ", "")
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_AMOUNT_DIGITS:
        raise Invalid(N_("Invalid amount."))
    amount = int(text) * 10 ** chosen(state).scheme.exponent
    coverage = _coverage(state)
    ceiling = max(choice.amount for choice in coverage.choices)
    if amount <= 0 or amount > ceiling:
        raise Invalid(N_("Invalid amount."))
    # Whole periods beyond the first choice (one period), for the request's record; allocation decides.
    period, first = coverage.period, coverage.choices[0].amount
    periods = 1 + (amount - first) // period if period and amount > first else 1
    return _request(state, amount, periods)


def _request_other_payment(state: State, value: Any) -> tuple[State, list[Effect]]:
    number = str(value).strip().upper()
    if not HOUSEHOLD_NO_RE.match(number):
        raise Invalid(N_("Invalid household number."))
    result = f"request:{state.hop}"
    state.data[PAY_REQUEST] = result
    return state, [Effect(OTHER_PAYMENT_EFFECT, 0, number, result=result)]


def _speak_first_household_language(state: State, _value: Any) -> tuple[State, list[Effect]]:
    state.lang = households(state)[0].lang
    return state, []


def _choose_household(state: State, household_id: Any) -> tuple[State, list[Effect]]:
    for household in households(state):
        if household.id == household_id:
            return _choose(state, household), []
    return state, []


def _set_language(state: State, language: Any) -> tuple[State, list[Effect]]:
    household = chosen(state)
    effects = []
    if household.lang != language:
        effects.append(Effect(LANGUAGE_EFFECT, household.id, str(language)))
        state.data["households"] = [
            h._replace(lang=str(language)) if h.id == household.id else h for h in households(state)
        ]
    state.lang = str(language)
    state.notice = N_("Language saved.")
    return state, effects


# ---------------------------------------------------------------- views


def _pick_view(state: State) -> View:
    items = [
        Item(f"{h.no} {h.head}".strip(), key=str(index), value=h.id)
        for index, h in enumerate(households(state), start=1)
    ]
    return View(items=items)


def _main_view(state: State) -> View:
    return View(header=[Msg(N_("Household {no}"), {"no": chosen(state).no})])


def _coverage_line(name: str, cover: Coverage) -> Msg:
    status = Msg(STATUS_LABELS.get(cover.status, cover.status))
    values = {"name": name, "status": status}
    if cover.status == "ACTIVE" and cover.valid_until:
        return Msg(N_("{name}: covered ({status}) until {date}"), dict(values, date=cover.valid_until))
    if cover.status == "WAITING" and cover.waiting:
        return Msg(N_("{name}: {status} until {date}"), dict(values, date=cover.waiting))
    if cover.status in {"GRACE", "LAPSED"} and cover.valid_until:
        template = N_("{name}: covered ({status}), ended {date}")
        if not cover.covered:
            template = N_("{name}: NOT covered ({status}), ended {date}")
        return Msg(template, dict(values, date=cover.valid_until))
    if cover.covered:
        return Msg(N_("{name}: covered ({status})"), values)
    return Msg(N_("{name}: NOT covered ({status})"), values)


def _coverage_view(state: State) -> View:
    coverage = _coverage(state)
    header = [Msg(N_("Coverage on {date}"), {"date": coverage.on})]
    if cover_line(state) is not None:
        # Every listed (active) member's cover is the household's, said once first: the names are enough.
        items = [Item(first) for first in coverage.members]
    else:
        items = [Item(_coverage_line(first, coverage)) for first in coverage.members]
    if not items:
        items = [Item(Msg(N_("No active member.")))]
    # The household's lines lead the items, so a small (UCS-2) screen pages them rather than cuts them.
    return View(header=header, items=[*(Item(line) for line in cover_lines(state)), *items])


def cover_line(state: State) -> Msg | None:
    """Return the household's cover in the words every channel uses: "Covered until …" or "Waiting until …,
    then covered until …" (or "Partly paid, not covered yet."), None when it is not covered."""
    coverage = _coverage(state)
    ends = coverage.ends
    if coverage.status == "WAITING" and ends and coverage.waiting:
        return Msg(N_("Waiting until {date}, then covered until {end}."), {"date": coverage.waiting, "end": ends})
    if coverage.status == "ACTIVE" and ends:
        return Msg(N_("Covered until {date}."), {"date": ends})
    if coverage.status == "PENDING" and coverage.credit > 0 and coverage.due > 0:
        return Msg(N_("Partly paid, not covered yet."))
    return None


def payment_line(state: State) -> Msg | None:
    """Return "Amount due: …" when something is due now, else "Next payment: … before …" (None: nothing to pay)."""
    coverage = _coverage(state)
    if coverage.refusal:
        return None
    if coverage.due > 0:
        return Msg(N_("Amount due: {amount}"), {"amount": _amount(state, coverage.due)})
    if coverage.next_due and coverage.next_amount > 0:
        values = {"amount": _amount(state, coverage.next_amount), "date": coverage.next_due}
        return Msg(N_("Next payment: {amount} before {date}."), values)
    return None


def cover_lines(state: State) -> list[Msg]:
    """Return the cover line and the payment line, those that apply."""
    return [line for line in (cover_line(state), payment_line(state)) if line is not None]


REFUSALS = {
    "suspended": N_("Your household is suspended: no payment is taken. Please contact your mutuelle office."),
    "closed": N_("Your household is closed: no payment is taken. Please contact your mutuelle office."),
    "subsidised": N_("Your cover is fully paid by the subsidy. You have nothing to pay."),
}


def _pay_refused_view(state: State) -> View:
    refusal = str(_coverage(state).refusal)
    return View(header=[Msg(REFUSALS.get(refusal, REFUSALS["suspended"]))])


def _pay_nothing_view(state: State) -> View:
    return View(header=[Msg(N_("Nothing to pay now.")), *cover_lines(state)])


def _pay_plan_view(state: State) -> View:
    coverage = _coverage(state)
    items = []
    for index, choice in enumerate(coverage.choices, start=1):
        template = N_("{amount} (1 month)") if choice.months == 1 else N_("{amount} ({months} months)")
        text = Msg(template, {"amount": _amount(state, choice.amount), "months": choice.months})
        items.append(Item(text, key=str(index), value=[choice.periods, choice.amount]))
    items.append(Item(Msg(N_("Another amount")), key=str(len(items) + 1), value=CUSTOM_AMOUNT))
    payment = payment_line(state)
    return View(header=[payment] if payment is not None else [], items=items)


def _pay_amount_view(state: State) -> View:
    currency = currency_label(chosen(state).scheme.currency, state.lang)
    return View(header=[Msg(N_("Amount to pay in {currency}:"), {"currency": currency})])


def _request_outcome(state: State) -> Any:
    key = str(state.data[PAY_REQUEST])
    value = state.data[key]
    return value if isinstance(value, PaymentReference | OtherPayment) else decode(key, value)


def _pay_done_view(state: State) -> View:
    request = _request_outcome(state)
    if not isinstance(request, PaymentReference):
        raise TypeError("the payment request's outcome is not a reference")
    values = {"reference": request.reference, "amount": _amount(state, request.amount)}
    header = [Msg(N_("Reference {reference}: pay {amount} by"), values)]
    # The SMS says it all: on a small screen the channels give way from the last, never the reference.
    channels = [f"{label}: {account}" for label, account in request.channels]
    return View(header=header, notes=[*channels, Msg(N_("Sent by SMS too."))])


def _pay_other_done_view(state: State) -> View:
    request = _request_outcome(state)
    if not isinstance(request, OtherPayment):
        raise TypeError("the other household's payment request has no outcome")
    if request.outcome == checks.LIMITED:
        return View(header=[Msg(N_("Too many checks from this phone. Try again in an hour."))])
    if request.outcome == checks.NOT_FOUND:
        return View(header=[Msg(N_("No household {no}."), {"no": request.household_no})])
    if request.outcome == checks.NOTHING:
        return View(header=[Msg(N_("Household {no}: nothing to pay now."), {"no": request.household_no})])
    amount = Amount(request.amount, request.currency, request.exponent)
    values = {"no": request.household_no, "name": request.head, "reference": request.reference, "amount": amount}
    header = [Msg(N_("Household {no} ({name}): reference {reference}, pay {amount} by"), values)]
    channels = [f"{label}: {account}" for label, account in request.channels]
    return View(header=header, notes=[*channels, Msg(N_("Sent by SMS too."))])


def _household_view(state: State) -> View:
    household = chosen(state)
    plan = Msg(PLAN_LABELS[household.plan]) if household.plan in PLAN_LABELS else household.plan
    items = [Item(Msg(N_("Plan: {plan}"), {"plan": plan}))]
    if household.network:
        items.append(Item(Msg(N_("Network: {name}"), {"name": household.network})))
    else:
        items.append(Item(Msg(N_("Network: none"))))
    items.append(Item(Msg(N_("Members: {count}"), {"count": len(household.members)})))
    items.extend(Item(f"{m.first} ({m.no})") for m in household.members)
    return View(header=[Msg(N_("Household {no}"), {"no": household.no})], items=items)


def _payments_view(state: State) -> View:
    key = f"payments:{state.household}"
    rows = record_list(PaymentLine, key, state.data[key])
    items = [
        Item(
            Msg(
                N_("{date} {amount} {status}"),
                {
                    "date": row.paid_on,
                    "amount": _amount(state, row.amount),
                    "status": Msg(PAYMENT_STATUS_LABELS.get(row.status, row.status)),
                },
            )
        )
        for row in rows[:PAYMENTS_SHOWN]
    ]
    if not items:
        items = [Item(Msg(N_("No payment yet.")))]
    return View(header=[Msg(N_("Last payments:"))], items=items)


def _language_view(state: State) -> View:
    languages = chosen(state).scheme.languages
    items = [
        Item(LANGUAGE_NAMES.get(code, code), key=str(index), value=code)
        for index, code in enumerate(languages, start=1)
    ]
    return View(header=[Msg(N_("Choose your language:"))], items=items)


TREE = Tree(
    name="member",
    entry="start",
    home="start",
    screens=SCREENS,
    transitions=TRANSITIONS,
    views={
        "pick": _pick_view,
        "main": _main_view,
        "coverage": _coverage_view,
        "pay_refused": _pay_refused_view,
        "pay_nothing": _pay_nothing_view,
        "pay_plan": _pay_plan_view,
        "pay_amount": _pay_amount_view,
        "pay_done": _pay_done_view,
        "pay_other_done": _pay_other_done_view,
        "household": _household_view,
        "payments": _payments_view,
        "language": _language_view,
        **checks.VIEWS,
    },
    conditions={
        "no_household": _no_household,
        "one_household": _one_household,
        "household_chosen": _household_chosen,
        "pay_refused": _pay_refused,
        "nothing_due": _nothing_due,
        "custom_amount": _custom_amount,
        **checks.CONDITIONS,
    },
    actions={
        "choose_only_household": _choose_only_household,
        "speak_first_household_language": _speak_first_household_language,
        "choose_household": _choose_household,
        "set_language": _set_language,
        "speak_caller_language": _speak_caller_language,
        "choose_payment": _choose_payment,
        "enter_amount": _enter_amount,
        "request_other_payment": _request_other_payment,
        **checks.ACTIONS,
    },
    data_keys=data_keys,
    decode=decode,
)
