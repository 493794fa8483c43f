"""The menu tree of a phone that belongs to an active member (or of an unknown phone, for now told so).

Data the screens read, cached in `state.data` by the caller (see `menus.data`):
- `households`: the phone's households, each `{id, no, lang, plan, network, scheme{...}, head, members[...]}`;
- `coverage:<household id>`: eligibility of the household and its active members on the scheme's today;
- `payments:<household id>`: the household's last five payments.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from menus.engine import AUTO, CHOICE, Effect, Item, Option, Screen, State, Transition, Tree, View
from menus.render import LANGUAGE_NAMES, N_, Amount, Msg

LANGUAGE_EFFECT = "language"
PAYMENTS_SHOWN = 5

STATUS_LABELS = {
    "ACTIVE": N_("active"),
    "WAITING": N_("waiting"),
    "GRACE": N_("grace"),
    "LAPSED": N_("lapsed"),
    "PENDING": N_("never paid"),
    "SUSPENDED": N_("suspended"),
    "INACTIVE": N_("inactive"),
}
PAYMENT_STATUS_LABELS = {
    "RECEIVED": N_("received"),
    "MATCHED": N_("received"),
    "ALLOCATED": N_("applied"),
    "PROVISIONAL": N_("being checked"),
    "UNMATCHED": N_("under review"),
    "CONFLICT": N_("under review"),
    "REVERSED": N_("reversed"),
    "REFUNDED": N_("refunded"),
    "REJECTED": N_("rejected"),
}
PLAN_LABELS = {"yearly": N_("yearly"), "half-yearly": N_("half-yearly"), "monthly": N_("monthly")}

SCREENS = (
    Screen("start", auto=True, needs=("households",)),
    Screen(
        "unknown",
        title=N_("This phone is not registered with the mutuelle. Please contact your mutuelle office."),
        end=True,
    ),
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
        ),
    ),
    Screen("coverage", view="coverage", needs=("coverage",)),
    Screen("pay", view="pay", needs=("coverage",), end=True),
    Screen("household", view="household"),
    Screen("payments", view="payments", needs=("payments",)),
    Screen("language", view="language"),
)

TRANSITIONS = (
    Transition("start", AUTO, "unknown", conditions=("no_household",)),
    Transition("start", AUTO, "main", conditions=("household_chosen",)),
    Transition("start", AUTO, "main", conditions=("one_household",), action="choose_only_household"),
    Transition("start", AUTO, "pick", action="speak_first_household_language"),
    Transition("pick", CHOICE, "start", action="choose_household"),
    Transition("main", "1", "coverage"),
    Transition("main", "2", "pay"),
    Transition("main", "3", "household"),
    Transition("main", "4", "payments"),
    Transition("main", "5", "language"),
    Transition("language", CHOICE, "start", action="set_language"),
)


# ---------------------------------------------------------------- data helpers


def households(state: State) -> list[dict[str, Any]]:
    """Return the cached households of the phone."""
    return list(state.data.get("households") or [])


def chosen(state: State) -> dict[str, Any]:
    """Return the cached data of the chosen household."""
    for household in households(state):
        if household["id"] == state.household:
            return household
    raise LookupError("no household chosen")


def data_keys(need: str, state: State) -> list[str]:
    """Return the `state.data` keys a screen's need stands for."""
    if need == "households":
        return ["households"]
    if state.household is None:
        return []
    return [f"{need}:{state.household}"]


def _amount(state: State, value: int) -> Amount:
    scheme = chosen(state)["scheme"]
    return Amount(value, scheme["currency"], scheme["exponent"])


# ---------------------------------------------------------------- conditions and actions


def _no_household(state: State) -> bool:
    return not households(state)


def _one_household(state: State) -> bool:
    return len(households(state)) == 1


def _household_chosen(state: State) -> bool:
    return state.household is not None and any(h["id"] == state.household for h in households(state))


def _choose(state: State, household: dict[str, Any]) -> State:
    state.household = household["id"]
    state.lang = household["lang"]
    return state


def _choose_only_household(state: State, _value: Any) -> tuple[State, list[Effect]]:
    return _choose(state, households(state)[0]), []


def _speak_first_household_language(state: State, _value: Any) -> tuple[State, list[Effect]]:
    state.lang = households(state)[0]["lang"]
    return state, []


def _choose_household(state: State, household_id: Any) -> tuple[State, list[Effect]]:
    for household in households(state):
        if household["id"] == household_id:
            return _choose(state, household), []
    return state, []


def _set_language(state: State, language: Any) -> tuple[State, list[Effect]]:
    household = chosen(state)
    effects = []
    if household["lang"] != language:
        effects.append(Effect(LANGUAGE_EFFECT, household["id"], str(language)))
        state.data["households"] = [
            dict(h, lang=language) if h["id"] == household["id"] else h for h in households(state)
        ]
    state.lang = str(language)
    state.notice = N_("Language saved.")
    return state, effects


# ---------------------------------------------------------------- views


def _pick_view(state: State) -> View:
    items = [
        Item(f"{h['no']} {h['head']}".strip(), key=str(index), value=h["id"])
        for index, h in enumerate(households(state), start=1)
    ]
    return View(items=items)


def _main_view(state: State) -> View:
    return View(header=[Msg(N_("Household {no}"), {"no": chosen(state)["no"]})])


def _coverage_line(member: dict[str, Any]) -> Msg:
    status = Msg(STATUS_LABELS.get(member["status"], member["status"]))
    values = {"name": member["first"], "status": status}
    if member["status"] == "ACTIVE" and member["until"]:
        until = date.fromisoformat(member["until"])
        return Msg(N_("{name}: covered ({status}) until {date}"), dict(values, date=until))
    if member["status"] == "WAITING" and member["waiting"]:
        return Msg(
            N_("{name}: NOT covered ({status}) until {date}"), dict(values, date=date.fromisoformat(member["waiting"]))
        )
    if member["status"] in {"GRACE", "LAPSED"} and member["until"]:
        template = N_("{name}: covered ({status}), ended {date}")
        if not member["covered"]:
            template = N_("{name}: NOT covered ({status}), ended {date}")
        return Msg(template, dict(values, date=date.fromisoformat(member["until"])))
    if member["covered"]:
        return Msg(N_("{name}: covered ({status})"), values)
    return Msg(N_("{name}: NOT covered ({status})"), values)


def _coverage_view(state: State) -> View:
    coverage = state.data[f"coverage:{state.household}"]
    header = [Msg(N_("Coverage on {date}"), {"date": date.fromisoformat(coverage["on"])})]
    items = [Item(_coverage_line(member)) for member in coverage["members"]]
    if not items:
        items = [Item(Msg(N_("No active member.")))]
    return View(header=header, items=items)


def _pay_view(state: State) -> View:
    coverage = state.data[f"coverage:{state.household}"]
    household = chosen(state)
    due = int(coverage["due"])
    if due <= 0:
        header = [Msg(N_("Nothing to pay now."))]
        if coverage.get("until"):
            header.append(Msg(N_("Covered until {date}."), {"date": date.fromisoformat(coverage["until"])}))
        return View(header=header)
    return View(
        header=[
            Msg(N_("Amount due: {amount}"), {"amount": _amount(state, due)}),
            Msg(N_("When you pay, give the reference {no}."), {"no": household["no"]}),
        ]
    )


def _household_view(state: State) -> View:
    household = chosen(state)
    plan = Msg(PLAN_LABELS[household["plan"]]) if household["plan"] in PLAN_LABELS else household["plan"]
    items = [Item(Msg(N_("Plan: {plan}"), {"plan": plan}))]
    if household["network"]:
        items.append(Item(Msg(N_("Network: {name}"), {"name": household["network"]})))
    else:
        items.append(Item(Msg(N_("Network: none"))))
    items.append(Item(Msg(N_("Members: {count}"), {"count": len(household["members"])})))
    items.extend(Item(f"{m['first']} ({m['no']})") for m in household["members"])
    return View(header=[Msg(N_("Household {no}"), {"no": household["no"]})], items=items)


def _payments_view(state: State) -> View:
    rows = state.data[f"payments:{state.household}"]
    items = [
        Item(
            Msg(
                N_("{date} {amount} {status}"),
                {
                    "date": date.fromisoformat(row["date"]),
                    "amount": _amount(state, int(row["amount"])),
                    "status": Msg(PAYMENT_STATUS_LABELS.get(row["status"], row["status"])),
                },
            )
        )
        for row in rows[:PAYMENTS_SHOWN]
    ]
    if not items:
        items = [Item(Msg(N_("No payment yet.")))]
    return View(header=[Msg(N_("Last payments:"))], items=items)


def _language_view(state: State) -> View:
    languages = chosen(state)["scheme"]["languages"]
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
        "pay": _pay_view,
        "household": _household_view,
        "payments": _payments_view,
        "language": _language_view,
    },
    conditions={
        "no_household": _no_household,
        "one_household": _one_household,
        "household_chosen": _household_chosen,
    },
    actions={
        "choose_only_household": _choose_only_household,
        "speak_first_household_language": _speak_first_household_language,
        "choose_household": _choose_household,
        "set_language": _set_language,
    },
    data_keys=data_keys,
)
