"""The USSD engine without HTTP: menus as data, the pure step function, the renderer's budget, the session store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import Redis

from menus import member, render
from menus.conversation import Hop, answer_hop, effect_key, new_input, split_inputs
from menus.engine import AUTO, CHOICE, Effect, Option, Reply, Screen, State, Transition, Tree, new_state, step
from menus.records import mask_input
from menus.render import (
    GSM_BUDGET,
    UCS2_BUDGET,
    Layout,
    Msg,
    apology,
    budget,
    fits,
    is_gsm,
    render_layout,
    screen_length,
)
from menus.session_store import SessionStore, StoredSession
from models.schemes.amounts import Amount, format_money
from redis_keys import ussd_session_key
from tests.conftest import ROOT

PHONE = "+221771234567"

# The longest realistic data: long names and numbers, a big household, a long network name, big amounts.
LONG_NAMES = [
    "Ndeye Fatoumata",
    "Mouhamadou Lamine",
    "Aïssatou",
    "Seynabou Ngoné",
    "Fallou",
    "Mame Diarra Bousso",
    "Serigne Mbacké",
    "Khadidiatou",
    "Abdoulaye",
    "Maïmouna",
    "Papa Samba",
    "Adja Coumba",
]


def household_data(
    hid: int = 1, lang: str = "fr", languages: tuple[str, ...] = ("fr", "wo"), size: int = 4, **extra: Any
) -> dict[str, Any]:
    """Return a household as `menus.data` caches it."""
    value = {
        "id": hid,
        "no": f"SN-THI-2026-{hid:06d}",
        "lang": lang,
        "plan": "yearly",
        "network": "Réseau des mutuelles de Thiès Nord",
        "head": LONG_NAMES[0],
        "members": [{"first": LONG_NAMES[i % len(LONG_NAMES)], "no": f"{i + 1:02d}"} for i in range(size)],
        "scheme": {
            "name": "Mutuelle CMU Thies",
            "languages": list(languages),
            "currency": "XOF",
            "exponent": 0,
            "timezone": "Africa/Dakar",
        },
    }
    value.update(extra)
    return value


def coverage_data(
    size: int = 4,
    status: str = "ACTIVE",
    due: int | None = None,
    period: int = 14_000,
    choices: list[list[int]] | None = None,
    refusal: str | None = None,
) -> dict[str, Any]:
    """Return a household's coverage as `menus.data` reads it: nothing due while covered or waiting."""
    covered = status == "ACTIVE"
    cover = status in {"ACTIVE", "WAITING"}
    if due is None:
        due = 0 if cover else period
    first = due or period
    return {
        "on": "2026-11-23",
        "due": due,
        "period": period,
        "choices": [[1, 12, first], [2, 24, first + period]] if choices is None else choices,
        "covered": covered,
        "until": "2027-11-19" if covered else None,
        "status": status,
        "ends": "2027-11-19" if cover else None,
        "waiting": "2026-12-19" if status == "WAITING" else None,
        "next": first,
        "next_due": "2027-11-19" if cover else "2026-11-23",
        "credit": 0,
        "refusal": refusal,
        "members": [
            {
                "first": LONG_NAMES[i % len(LONG_NAMES)],
                "covered": covered,
                "status": status,
                "until": "2027-11-19",
                "waiting": "2026-12-19" if status == "WAITING" else None,
            }
            for i in range(size)
        ],
    }


CHANNELS = [["Wave", "M-221-THIES"], ["Orange Money", "#144*4*6*203040#"]]
REQUEST = {"reference": "1234567", "amount": 14_000, "channels": CHANNELS}
AGENT = {"id": 7, "facility": "Poste de sante Thies Nord"}
CHECKED = {
    "o": "OK",
    "found": True,
    "no": "SN-THI-2026-000001-01",
    "first": "Mame Diarra Bousso",
    "year": 1985,
    "covered": True,
    "status": "ACTIVE",
    "until": "2027-11-19",
}


def payments_data(count: int = 7) -> list[dict[str, Any]]:
    return [{"date": f"2026-{12 - i:02d}-01", "amount": 1_234_500, "status": "PROVISIONAL"} for i in range(count)][:5]


class Data:
    """In-memory menu data for the engine driver: what the database would answer, counting loads."""

    def __init__(self, households: list[dict[str, Any]], **values: Any) -> None:
        self.values: dict[str, Any] = {
            "households": households,
            "caller": {"agent": None, "lang": None},
            "outcome:payment_request": REQUEST,
            "outcome:agent_check": CHECKED,
            "outcome:dob_check": CHECKED,
            **values,
        }
        self.loads: Counter[str] = Counter()
        self.applied: dict[str, Effect] = {}
        self.outcomes: dict[str, Any] = {}

    def load(self, key: str, state: State) -> dict[str, Any]:
        self.loads[key] += 1
        return {key: self.values[key]}

    def apply(self, effect: Effect, key: str, state: State) -> Any:
        if key in self.applied:
            return self.outcomes.get(key, False)
        self.applied[key] = effect
        if effect.result is not None:
            self.outcomes[key] = self.values[f"outcome:{effect.kind}"]
            return self.outcomes[key]
        for household in self.values["households"]:
            if household["id"] == effect.target:
                household["lang"] = effect.value
        return True


def run(data: Data, *inputs: str) -> tuple[Reply, State]:
    """Dial and type the inputs through the pure engine, feeding data as it asks (as the driver does)."""
    state = new_state(PHONE)
    reply: Reply | None = None
    for user_input in ("", *inputs):
        while True:
            reply, nxt = step(state, user_input)
            if not reply.needs:
                break
            outcomes = {e.result: e for e in reply.effects if e.result}
            for key in reply.needs:
                effect = outcomes.get(key)
                if effect:
                    state.data[key] = data.apply(effect, key, state)
                else:
                    state.data.update(data.load(key, state))
        state = nxt
    assert reply is not None
    return reply, state


def screen(reply: Reply) -> str:
    assert reply.text.startswith(("CON ", "END ")), reply.text
    assert fits(reply.text), (screen_length(reply.text), reply.text)
    return reply.text


def full_data(lang: str = "fr", languages: tuple[str, ...] = ("fr", "wo"), size: int = 4) -> Data:
    return Data(
        [household_data(lang=lang, languages=languages, size=size)],
        **{"coverage:1": coverage_data(size), "payments:1": payments_data()},
    )


# ---------------------------------------------------------------- scripted sessions, pure


def test_dial_shows_the_main_menu_in_french() -> None:
    reply, state = run(full_data())
    assert screen(reply) == (
        "CON Ménage SN-THI-2026-000001\n1 Ma couverture\n2 Payer\n3 Mon ménage\n4 Mes paiements\n5 Langue"
        "\n6 Payer pour un autre ménage"
    )
    assert (state.screen, state.hop, state.household) == ("main", 0, 1)


def test_dial_shows_the_main_menu_in_english() -> None:
    reply, _ = run(full_data(lang="en", languages=("km", "en")))
    assert screen(reply) == (
        "CON Household SN-THI-2026-000001\n1 My coverage\n2 Pay\n3 My household\n4 My payments\n5 Language"
        "\n6 Pay another household"
    )


def test_coverage_lists_each_member_with_status_and_date() -> None:
    data = full_data(size=2)
    reply, _ = run(data, "1")
    # The household's cover and next payment once, in the words of every channel, then its members.
    assert screen(reply) == (
        "CON Couverture au 23/11/2026\n"
        "Couvert jusqu'au 19/11/2027.\n"
        "Prochain paiement : 14 000 F CFA avant le 19/11/2027.\n"
        "Ndeye Fatoumata\n"
        "Mouhamadou Lamine\n"
        "0 Retour"
    )
    assert data.loads == {"households": 1, "caller": 1, "coverage:1": 1}


def test_waiting_members_are_not_covered_until_the_end_of_waiting() -> None:
    data = Data([household_data(lang="en", languages=("en",), size=1)], **{"coverage:1": coverage_data(1, "WAITING")})
    reply, _ = run(data, "1")
    assert screen(reply) == (
        "CON Coverage on 23/11/2026\n"
        "Waiting until 19/12/2026, then covered until 19/11/2027.\n"
        "Next payment: 14,000 F CFA before 19/11/2027.\n"
        "Ndeye Fatoumata\n"
        "0 Back"
    )


def test_lapsed_members_say_when_cover_ended_and_what_is_due() -> None:
    data = Data([household_data(lang="en", languages=("en",), size=1)], **{"coverage:1": coverage_data(1, "LAPSED")})
    reply, _ = run(data, "1")
    assert screen(reply) == (
        "CON Coverage on 23/11/2026\nAmount due: 14,000 F CFA\n"
        "Ndeye Fatoumata: NOT covered (lapsed), ended 19/11/2027\n0 Back"
    )


def test_long_lists_paginate_with_98_and_come_back_with_0() -> None:
    data = Data([household_data(size=8)], **{"coverage:1": coverage_data(8, "LAPSED")})
    first, _state = run(data, "1")
    assert "98 Suite" in screen(first)
    second, state2 = run(data, "1", "98")
    assert state2.page == 1
    assert "0 Retour" in screen(second) and "00 Accueil" in screen(second)
    shown_first = [line for line in first.text.split("\n") if ": NON couvert" in line]
    shown_second = [line for line in second.text.split("\n") if ": NON couvert" in line]
    assert shown_first and shown_second and not set(shown_first) & set(shown_second)
    back, _ = run(data, "1", "98", "0")
    assert back.text == first.text
    home, state3 = run(data, "1", "98", "00")
    assert state3.screen == "main" and home.text.startswith("CON Ménage")


def test_every_member_appears_on_some_page() -> None:
    data = Data([household_data(size=12)], **{"coverage:1": coverage_data(12, "LAPSED")})
    inputs: list[str] = ["1"]
    seen: list[str] = []
    for _ in range(12):
        reply, _state = run(data, *inputs)
        seen.extend(line.split(":")[0] for line in screen(reply).split("\n")[1:] if ": NON couvert" in line)
        if "98 Suite" not in reply.text:
            break
        inputs.append("98")
    assert seen == [LONG_NAMES[i % len(LONG_NAMES)] for i in range(12)]


def test_invalid_input_re_asks_the_screen_with_a_hint() -> None:
    data = full_data()
    reply, state = run(data, "7")
    assert screen(reply).startswith("CON Choix invalide.\nMénage SN-THI-2026-000001\n1 Ma couverture")
    assert state.screen == "main"
    again, _ = run(data, "7", "1")
    assert again.text.startswith("CON Couverture au")


def test_pay_shows_the_amount_due_and_the_choices() -> None:
    data = Data([household_data()], **{"coverage:1": coverage_data(status="LAPSED")})
    reply, state = run(data, "2")
    assert screen(reply) == (
        "CON Montant à payer: 14 000 F CFA\n"
        "1 14 000 F CFA (12 mois)\n2 28 000 F CFA (24 mois)\n3 Autre montant\n0 Retour"
    )
    assert state.screen == "pay_plan"


def test_a_covered_household_may_pay_ahead_and_reads_its_next_payment() -> None:
    reply, state = run(full_data(), "2")
    assert screen(reply) == (
        "CON Prochain paiement : 14 000 F CFA avant le 19/11/2027.\n"
        "1 14 000 F CFA (12 mois)\n2 28 000 F CFA (24 mois)\n3 Autre montant\n0 Retour"
    )
    assert state.screen == "pay_plan"


@pytest.mark.parametrize(
    ("refusal", "text"),
    [
        ("suspended", "END Your household is suspended: no payment is taken. Please contact your mutuelle office."),
        ("closed", "END Your household is closed: no payment is taken. Please contact your mutuelle office."),
        ("subsidised", "END Your cover is fully paid by the subsidy. You have nothing to pay."),
    ],
)
def test_pay_is_not_offered_to_a_suspended_closed_or_fully_subsidised_household(refusal: str, text: str) -> None:
    coverage = coverage_data(status="SUSPENDED" if refusal == "suspended" else "ACTIVE", choices=[], refusal=refusal)
    data = Data([household_data(lang="en")], **{"coverage:1": coverage})
    reply, _ = run(data, "2")
    assert reply.text == text
    assert not data.applied


def test_choosing_a_plan_requests_a_payment_and_shows_the_reference_and_how_to_pay() -> None:
    data = full_data()
    reply, state = run(data, "2", "2")
    assert screen(reply) == (
        "END Référence 1234567: payez 14 000 F CFA par\nWave: M-221-THIES\nOrange Money: #144*4*6*203040#\n"
        "Envoyé aussi par SMS."
    )
    (effect,) = data.applied.values()
    assert effect == Effect("payment_request", 1, "28000:2", result="request:2")
    assert state.data["request:2"] == REQUEST


def test_another_amount_is_typed_and_checked() -> None:
    data = full_data(lang="en", languages=("en",))
    ask, _ = run(data, "2", "3")
    assert screen(ask) == "CON Amount to pay in F CFA:\n0 Back\n00 Home"
    wrong, state = run(data, "2", "3", "12x")
    assert screen(wrong).startswith("CON Invalid amount.\nAmount to pay in F CFA:")
    assert state.screen == "pay_amount" and not data.applied
    too_much, _ = run(data, "2", "3", "999999")
    assert too_much.text.startswith("CON Invalid amount.")
    done, _ = run(data, "2", "3", "5000")
    assert screen(done).startswith("END Reference 1234567: pay 14,000 F CFA by\nWave: M-221-THIES")
    assert [e.value for e in data.applied.values()] == ["5000:1"]


def test_pay_with_nothing_due_says_so() -> None:
    # Covered up to the advance cap: nothing due and nothing more to pay ahead.
    data = Data([household_data(lang="en")], **{"coverage:1": coverage_data(choices=[])})
    reply, _ = run(data, "2")
    assert reply.text == (
        "END Nothing to pay now.\nCovered until 19/11/2027.\nNext payment: 14,000 F CFA before 19/11/2027."
    )


def test_household_screen() -> None:
    reply, _ = run(full_data(lang="en", size=2), "3")
    assert screen(reply) == (
        "CON Household SN-THI-2026-000001\nPlan: yearly\nNetwork: Réseau des mutuelles de Thiès Nord\n"
        "Members: 2\nNdeye Fatoumata (01)\nMouhamadou Lamine (02)\n0 Back"
    )


def test_payments_screen_shows_the_last_five() -> None:
    reply, _ = run(full_data(lang="en"), "4")
    text = screen(reply)
    assert text.startswith("CON Last payments:\n01/12/2026 1,234,500 F CFA being checked\n")
    pages, inputs = [text], ["4"]
    while "98 More" in pages[-1]:
        inputs.append("98")
        pages.append(screen(run(full_data(lang="en"), *inputs)[0]))
    assert sum(page.count(" F CFA ") for page in pages) == 5


def test_no_payment_yet() -> None:
    data = Data([household_data(lang="en")], **{"payments:1": []})
    reply, _ = run(data, "4")
    assert reply.text == "CON Last payments:\nNo payment yet.\n0 Back"


def test_language_change_is_an_effect_and_the_menu_follows() -> None:
    data = full_data(lang="fr", languages=("fr", "en"))
    choose, _ = run(data, "5")
    assert screen(choose) == "CON Choisissez votre langue:\n1 Français\n2 English\n0 Retour"
    assert budget(choose.text) == UCS2_BUDGET  # ç is not in the GSM alphabet
    reply, state = run(data, "5", "2")
    assert reply.effects == (Effect("language", 1, "en"),)
    assert screen(reply).startswith("CON Language saved.\nHousehold SN-THI-2026-000001\n1 My coverage")
    assert state.lang == "en" and member.households(state)[0].lang == "en"


def test_choosing_the_current_language_changes_nothing() -> None:
    reply, _ = run(full_data(lang="fr", languages=("fr", "en")), "5", "1")
    assert reply.effects == ()
    assert reply.text.startswith("CON Langue enregistrée.")


def test_wolof_screens_are_translated_in_the_gsm_alphabet() -> None:
    reply, _ = run(full_data(lang="wo"))
    assert screen(reply) == (
        "CON Ker SN-THI-2026-000001\n1 Sama couverture\n2 Fey\n3 Sama ker\n4 Sama fey yi\n5 Làkk\n6 Fey ngir beneen ker"
    )
    assert budget(reply.text) == GSM_BUDGET


def test_khmer_screens_are_translated() -> None:
    reply, _ = run(full_data(lang="km", languages=("km", "en")), "1")
    assert screen(reply).startswith("CON ធានា 23/11/2026:\nធានារ៉ាប់រងដល់ 19/11/2027។\n98 បន្ត")
    assert budget(reply.text) == UCS2_BUDGET
    more, _ = run(full_data(lang="km", languages=("km", "en")), "1", "98")
    assert "បង់ 14 000 F CFA មុន 19/11/2027" in screen(more)  # XOF reads F CFA, whatever the language


def test_a_shared_phone_picks_the_household_first() -> None:
    data = Data(
        [household_data(1, lang="fr"), household_data(2, lang="en", head="Moussa")],
        **{"coverage:2": coverage_data(1)},
    )
    pick, state = run(data)
    assert screen(pick) == (
        "CON Choisissez votre ménage:\n1 SN-THI-2026-000001 Ndeye Fatoumata\n2 SN-THI-2026-000002 Moussa"
    )
    assert state.household is None
    main, state = run(data, "2")
    assert main.text.startswith("CON Household SN-THI-2026-000002\n1 My coverage")
    assert (state.household, state.lang) == (2, "en")
    _home, state = run(data, "2", "1", "00")
    assert state.screen == "main" and state.household == 2
    assert data.loads["coverage:1"] == 0


def test_an_unknown_phone_checks_a_member_by_number_and_date_of_birth() -> None:
    data = Data([])
    ask, _ = run(data)
    assert screen(ask) == ("CON Ce numéro n'est pas enregistré. Pour vérifier un membre, entrez son numéro de membre:")
    dob, _ = run(data, "sn-thi-2026-000001-01")
    assert screen(dob) == "CON Date de naissance (JJMMAAAA):\n0 Retour"
    bad, state = run(data, "SN-THI-2026-000001-01", "31021990")
    assert screen(bad).startswith("CON Tapez la date en JJMMAAAA, ex. 05031990.\nDate de naissance")
    assert state.secret_hops == [2] and not data.applied
    answer, state = run(data, "SN-THI-2026-000001-01", "05031985")
    assert screen(answer) == (
        "END Mame Diarra Bousso (SN-THI-2026-000001-01)\nCouvert: OUI (actif)\nValable jusqu'au 19/11/2027"
    )
    (effect,) = data.applied.values()
    assert effect == Effect("dob_check", 0, "SN-THI-2026-000001-01\n05031985", result="check:2")
    assert "05031985" not in str(state.to_dict())  # the date of birth never enters the session
    assert state.secret_hops == [2]


def test_an_unknown_phone_told_no_match_or_limited() -> None:
    none, _ = run(Data([], **{"outcome:dob_check": {"o": "NOT_FOUND", "found": False}}), "SN1-01", "05031985")
    assert none.text == "END Aucun membre avec ce numéro et cette date de naissance."
    limited, _ = run(Data([], **{"outcome:dob_check": {"o": "LIMITED"}}), "SN1-01", "05031985")
    assert limited.text == "END Trop de vérifications depuis ce numéro. Réessayez dans une heure."


def test_an_unknown_phone_speaks_its_country_language() -> None:
    reply, _ = run(Data([], caller={"agent": None, "lang": "km"}))
    assert reply.text.startswith("CON លេខនេះមិនបានចុះឈ្មោះ។")
    assert fits(reply.text)


def agent_data(**outcome: Any) -> Data:
    check = dict(CHECKED, **outcome)
    return Data([], caller={"agent": AGENT, "lang": "fr"}, **{"outcome:agent_check": check})


def test_an_agent_checks_a_member_with_a_pin() -> None:
    data = agent_data()
    home, _ = run(data)
    assert screen(home) == "CON Poste de sante Thies Nord\n1 Vérifier un membre"
    pin, _ = run(data, "1", "SN-THI-2026-000001-01")
    assert screen(pin) == "CON Votre PIN agent:\n0 Retour\n00 Accueil"
    answer, state = run(data, "1", "SN-THI-2026-000001-01", "4821")
    assert screen(answer) == (
        "END Mame Diarra Bousso, né(e) en 1985\nCouvert: OUI (actif)\nValable jusqu'au 19/11/2027"
    )
    assert state.secret_hops == [3]
    (effect,) = data.applied.values()
    assert effect == Effect("agent_check", 7, "SN-THI-2026-000001-01\n4821", result="check:3")
    assert "4821" not in str(state.to_dict())


def test_an_agent_with_a_wrong_pin_is_asked_again_then_locked() -> None:
    wrong, state = run(agent_data(o="WRONG", left=3), "1", "SN1-01", "1111")
    assert screen(wrong).startswith("CON PIN erroné. Essais restants: 3.\nVotre PIN agent:")
    assert state.screen == "agent_pin"
    locked, _ = run(agent_data(o="LOCKED", minutes=15), "1", "SN1-01", "1111")
    assert locked.text == "END Trop de PIN erronés. Réessayez dans 15 min."
    short, _ = run(agent_data(), "1", "SN1-01", "12")
    assert short.text.startswith("CON Le PIN a 4 à 6 chiffres.\nVotre PIN agent:")


def test_an_agent_who_is_also_a_member_reaches_the_household_menu() -> None:
    data = Data([household_data()], caller={"agent": AGENT, "lang": None})
    home, _ = run(data)
    assert home.text == "CON Poste de sante Thies Nord\n1 Vérifier un membre\n2 Mon ménage"
    main, _ = run(data, "2")
    assert main.text.startswith("CON Ménage SN-THI-2026-000001\n1 Ma couverture")


def test_step_is_pure() -> None:
    data = full_data()
    _, state = run(data)
    before = state.to_dict()
    step(state, "5")
    step(state, "1")
    assert state.to_dict() == before


def test_step_asks_for_missing_data_without_moving() -> None:
    state = new_state(PHONE)
    reply, same = step(state, "")
    assert reply.needs == ("households", "caller") and same is state and reply.text == ""


# ---------------------------------------------------------------- the budget, on every screen


def explore(data_factory: Any, max_depth: int = 5, typed: tuple[str, ...] = ()) -> dict[str, str]:
    """Return every distinct reply reachable with menu keys, navigation keys, wrong input and typed values."""
    keys = ["1", "2", "3", "4", "5", "98", "0", "00", "x", *typed]
    seen: dict[str, str] = {}
    frontier: list[tuple[str, ...]] = [()]
    for _ in range(max_depth):
        following: list[tuple[str, ...]] = []
        for path in frontier:
            reply, _state = run(data_factory(), *path)
            if reply.text in seen:
                continue
            seen[reply.text] = "*".join(path)
            if not reply.end:
                following.extend((*path, key) for key in keys)
        frontier = following
    return seen


@pytest.mark.parametrize(
    ("lang", "languages", "status"),
    [
        ("fr", ("fr", "wo"), "ACTIVE"),
        ("fr", ("fr", "en"), "WAITING"),
        ("en", ("km", "en"), "GRACE"),
        ("en", ("en", "fr"), "LAPSED"),
        ("wo", ("fr", "wo"), "PENDING"),
    ],
)
def test_every_screen_fits_the_budget_with_the_longest_data(lang: str, languages: tuple[str, ...], status: str) -> None:
    def data() -> Data:
        return Data(
            [household_data(lang=lang, languages=languages, size=12)],
            **{"coverage:1": coverage_data(12, status, due=12_345_678), "payments:1": payments_data()},
        )

    replies = explore(data)
    assert len(replies) > 15
    for text in replies:
        assert text.startswith(("CON ", "END "))
        assert screen_length(text) <= budget(text), text


OUTCOMES = {
    "agent_check": [
        CHECKED,
        dict(CHECKED, covered=False, status="WAITING"),
        dict(CHECKED, status="GRACE", until=None),
        {"o": "OK", "found": False, "no": "SN-THI-2026-000001-12"},
        {"o": "WRONG", "left": 4},
        {"o": "LOCKED", "minutes": 15},
        {"o": "INACTIVE"},
    ],
    "dob_check": [
        CHECKED,
        dict(CHECKED, covered=False, status="LAPSED"),
        {"o": "NOT_FOUND", "found": False},
        {"o": "LIMITED"},
    ],
}
TYPED = ("SN-THI-2026-000001-01", "482193", "05031985", "123456")


@pytest.mark.parametrize("lang", ["fr", "en", "wo", "km"])
@pytest.mark.parametrize("status", ["ACTIVE", "WAITING", "GRACE", "LAPSED", "PENDING", "SUSPENDED", "INACTIVE"])
def test_every_screen_of_every_language_fits_the_budget(
    lang: str, status: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut: list[str] = []
    squeeze = render._squeeze

    def recording_squeeze(prefix: str, lines: list[str], nav: Any = ()) -> str:
        text = squeeze(prefix, lines, nav)
        if text != prefix + "\n".join([line for line in lines if line] + list(nav)):
            cut.append(text)
        return text

    monkeypatch.setattr(render, "_squeeze", recording_squeeze)
    languages = {"fr": ("fr", "wo"), "wo": ("fr", "wo"), "en": ("km", "en"), "km": ("km", "en")}[lang]

    def member_phone() -> Data:
        return Data(
            [household_data(lang=lang, languages=languages, size=12)],
            **{
                "coverage:1": coverage_data(12, status, due=12_345_678, period=9_876_543),
                "payments:1": payments_data(),
                "outcome:payment_request": dict(REQUEST, amount=22_222_221),
            },
        )

    replies = explore(member_phone, typed=("123456",))
    assert any(text.startswith("END ") and "1234567" in text for text in replies)
    pairs = zip(OUTCOMES["agent_check"], OUTCOMES["dob_check"] * 2, strict=False)
    for index, (agent_check, dob_check) in enumerate(pairs):
        values = {
            "caller": {"agent": AGENT if index % 2 == 0 else None, "lang": lang},
            "outcome:agent_check": agent_check,
            "outcome:dob_check": dob_check,
        }
        replies.update(explore(lambda v=values: Data([], **v), max_depth=5, typed=TYPED))
    assert len(replies) > 40
    for text in replies:
        assert text.startswith(("CON ", "END "))
        assert screen_length(text) <= budget(text), text
    # Lines are cut only on list screens with extreme data (12-digit amounts, long names in Khmer's 80).
    assert not [text for text in cut if "1234567" in text or "SN-THI-2026-000001-01" in text], cut


def test_the_pick_screen_fits_with_many_households() -> None:
    households = [household_data(i, head=LONG_NAMES[i % 12]) for i in range(1, 7)]
    values: dict[str, Any] = {f"coverage:{i}": coverage_data() for i in range(1, 7)}
    values.update({f"payments:{i}": [] for i in range(1, 7)})
    replies = explore(lambda: Data([dict(h) for h in households], **values), max_depth=3)
    assert any("98 Suite" in text for text in replies)
    assert all(fits(text) for text in replies)


# ---------------------------------------------------------------- renderer


def test_gsm_alphabet_and_budgets() -> None:
    assert is_gsm("éèàùìòÇ Ménage")
    for char in ("ê", "ô", "â", "ç", "ë", "ŋ", "ខ"):
        assert not is_gsm(f"Ménage {char}")
    assert budget("CON abc") == GSM_BUDGET and budget("CON Français") == UCS2_BUDGET
    assert screen_length("a€") == 3  # an extension character costs two septets


def test_budget_counts_the_prefix() -> None:
    body = "x" * (GSM_BUDGET - 4)
    assert fits("CON " + body) and not fits("CON " + body + "x")


def test_a_too_long_line_is_shortened_to_fit() -> None:
    page = render_layout(Layout(header=["ŋ" * 200]), "fr")
    assert fits(page.text) and screen_length(page.text) <= UCS2_BUDGET


def test_amounts_are_grouped_per_language() -> None:
    assert format_money(Amount(1_234_500, "XOF"), "fr") == "1 234 500 F CFA"
    assert format_money(Amount(1_234_500, "XOF"), "en") == "1,234,500 F CFA"
    assert format_money(Amount(12_050, "KES", 2), "en") == "120.50 KES"


def test_apology_in_the_session_language_falls_back_to_french() -> None:
    assert apology("en") == "END Sorry, the service is not available right now. Please try again later."
    assert apology(None) == "END Désolé, le service est indisponible. Réessayez plus tard."
    assert apology("wo") == "END Baal nu, service bi menul dox leegi. Jéemaatal ci kanam."


def test_a_message_renders_its_values() -> None:
    page = render_layout(Layout(header=[Msg("Household {no}", {"no": "SN1"})]), "fr")
    assert page.text == "CON Ménage SN1"


# ---------------------------------------------------------------- trees are data


SECRET_TREE = Tree(
    name="secret",
    entry="ask",
    home="ask",
    screens=(
        Screen("ask", title="Menu", options=(Option("1", "Check"),)),
        Screen("pin", title="PIN?", secret=True),
        Screen("done", title="Done", end=True),
    ),
    transitions=(
        Transition("ask", "1", "pin"),
        Transition("pin", CHOICE, "done"),
    ),
)


def test_a_tree_names_only_known_screens() -> None:
    member.TREE.check()
    broken = Tree(name="x", entry="a", home="a", screens=(Screen("a"),), transitions=(Transition("a", AUTO, "b"),))
    with pytest.raises(ValueError, match="unknown screen"):
        broken.check()


def test_inputs_typed_on_secret_screens_are_remembered_for_masking() -> None:
    state = State(tree="secret")
    for user_input in ("", "1", "4821"):
        _, state = step(state, user_input, SECRET_TREE)
    assert state.secret_hops == [2]
    assert mask_input("1*4821", state.secret_hops) == "1*xxxx"


def test_without_state_digit_runs_of_4_to_8_are_masked() -> None:
    assert mask_input("1*SN000123-01*12031985*2", None) == "1*SNxxxx-01*xxxx*2"
    assert mask_input("2*1*1", None) == "2*1*1"
    assert mask_input("3*123456789", None) == "3*123456789"  # 9 digits: a phone or a reference, not a PIN


# ---------------------------------------------------------------- text, replays, round trips (real Redis)


def test_new_input_is_what_follows_the_stored_text() -> None:
    assert new_input("", "1") == "1"
    assert new_input("1", "1*2") == "2"
    assert new_input("1", "1*2*3") == "2*3"  # one hop in which the user typed '*'
    assert new_input("1", "2") is None  # the fixture's reset: replay from the start
    assert new_input("1*2", "1") is None
    assert split_inputs("") == [] and split_inputs("2*1") == ["2", "1"]


class CountingRedis(Redis):
    """A real Redis client that counts the commands it sends."""

    commands: Counter[str]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands[str(args[0]).upper()] += 1
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # unannotated in redis-py


class CountingStore(SessionStore):
    """A session store whose client counts its commands."""

    client: CountingRedis


@pytest.fixture
def counting_store(redis_url: str) -> CountingStore:
    client = CountingRedis.from_url(redis_url)
    assert isinstance(client, CountingRedis)  # from_url is typed as returning a plain Redis
    client.commands = Counter()
    return CountingStore(client, ttl=300)


def hop(text: str, session_id: str = "ATUid_engine") -> Hop:
    return Hop(session_id, PHONE, text)


def test_a_navigation_hop_is_one_redis_round_trip_with_no_data_load(counting_store: CountingStore) -> None:
    data = full_data(size=8)
    answer_hop(hop(""), counting_store, data)
    answer_hop(hop("1"), counting_store, data)
    loads_before = Counter(data.loads)
    counting_store.client.commands.clear()
    reply = answer_hop(hop("1*98"), counting_store, data)
    assert counting_store.client.commands == {"GETEX": 1}
    assert data.loads == loads_before
    assert reply.startswith("CON ")


def test_unsaved_hops_replay_to_the_same_replies_and_a_long_replay_is_saved(
    counting_store: CountingStore, redis_client: Redis
) -> None:
    data = full_data(size=8)
    texts = ["", "1", "1*0", "1*0*3", "1*0*3*0", "1*0*3*0*1", "1*0*3*0*1*0"]
    replies = [answer_hop(hop(text), counting_store, data) for text in texts]
    key = ussd_session_key("ATUid_engine")
    raw = redis_client.get(key)
    assert raw is not None
    stored = StoredSession.loads(raw)
    # Saved after the coverage load ("1"), then once three inputs had been replayed over it ("1*0*3*0").
    assert stored.text == "1*0*3*0"
    assert 0 < redis_client.ttl(key) <= 300
    # Every reply is the one a fresh replay from the dial gives, and a duplicate of an unsaved hop too.
    for text, reply in zip(texts, replies, strict=True):
        assert answer_hop(hop(text, session_id=f"fresh{len(text)}"), counting_store, data) == reply
    counting_store.client.commands.clear()
    assert answer_hop(hop(texts[-1]), counting_store, data) == replies[-1]
    assert answer_hop(hop(texts[-2]), counting_store, data) == replies[-2]  # an earlier unsaved hop again
    assert counting_store.client.commands == {"GETEX": 2}


def test_the_session_has_a_ttl_and_holds_state_language_text_and_reply(
    counting_store: CountingStore, redis_client: Redis
) -> None:
    reply = answer_hop(hop("1"), counting_store, full_data())
    key = ussd_session_key("ATUid_engine")
    assert 0 < redis_client.ttl(key) <= 300
    raw = redis_client.get(key)
    assert raw is not None
    stored = StoredSession.loads(raw)
    assert (stored.text, stored.reply, stored.language, stored.state.screen) == ("1", reply, "fr", "coverage")


def test_a_duplicate_hop_gets_the_cached_reply_and_no_effect_again(counting_store: CountingStore) -> None:
    data = full_data(languages=("fr", "en"))
    answer_hop(hop(""), counting_store, data)
    answer_hop(hop("5"), counting_store, data)
    first = answer_hop(hop("5*2"), counting_store, data)
    counting_store.client.commands.clear()
    second = answer_hop(hop("5*2"), counting_store, data)
    assert second == first
    assert counting_store.client.commands == {"GETEX": 1}
    assert len(data.applied) == 1


def test_a_lost_session_is_replayed_from_text_without_repeating_effects(
    counting_store: CountingStore, clear_redis: Callable[[], None]
) -> None:
    data = full_data(languages=("fr", "en"))
    for text in ("", "5", "5*2"):
        answer_hop(hop(text), counting_store, data)
    uninterrupted = answer_hop(hop("5*2*1"), counting_store, data)
    clear_redis()
    replayed = answer_hop(hop("5*2*1"), counting_store, data)
    assert replayed == uninterrupted
    assert replayed.startswith("CON Coverage on")
    assert len(data.applied) == 1
    assert list(data.applied) == [effect_key("ATUid_engine", 2, "5*2")]


def test_a_text_that_does_not_extend_the_stored_one_is_replayed(counting_store: CountingStore) -> None:
    data = full_data()
    replies = [answer_hop(hop(text), counting_store, data) for text in ("", "1", "2", "2*1", "2*1*1")]
    assert replies[1].startswith("CON Couverture")
    assert replies[2].startswith("CON Prochain paiement")  # "2" restarts from the dial: main → pay
    assert replies[3].startswith("END Référence 1234567")
    assert replies[4] == replies[3]


def test_menus_do_not_import_flask() -> None:
    code = (
        "import sys, menus.engine, menus.render, menus.member, menus.session_store, menus.conversation, "
        "menus.data, menus.records; assert 'flask' not in sys.modules, sorted(m for m in sys.modules if 'flask' in m)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


OTHER_PAYMENT = {
    "o": "OK",
    "no": "SN-THI-2026-000002",
    "head": "Ndeye Fatoumata",
    "reference": "7654321",
    "amount": 15_000,
    "currency": "XOF",
    "exponent": 0,
    "channels": CHANNELS,
}
SESSION_VALUES = [
    ("households", [household_data(), household_data(2, network=None, size=1)]),
    ("caller", {"agent": AGENT, "lang": None}),
    ("caller", {"agent": None, "lang": "km"}),
    ("coverage:1", coverage_data()),
    ("coverage:1", coverage_data(2, "WAITING")),
    ("coverage:1", coverage_data(1, "LAPSED", choices=[], refusal="suspended")),
    ("payments:1", payments_data()),
    ("request:3", REQUEST),
    ("request:3", OTHER_PAYMENT),
    ("request:3", {"o": "NOT_FOUND", "no": "SN-THI-2026-000009"}),
    *(("check:4", outcome) for outcomes in OUTCOMES.values() for outcome in outcomes),
    ("pay:custom", True),
    ("pay:request", "request:3"),
    ("check:last", "check:4"),
    ("check:no", "SN-THI-2026-000001-01"),
]


@pytest.mark.parametrize(("key", "value"), SESSION_VALUES)
def test_a_session_value_reads_as_a_record_and_is_stored_as_before(key: str, value: Any) -> None:
    """The records keep the JSON a session (and a check's `effect_keys` row) has always held: an older one reads."""
    state = State.from_dict({"data": {key: value}})
    assert type(state.data[key]) is not dict  # a record (or a list of them, or a plain value)
    assert json.loads(json.dumps(state.to_dict()))["data"] == {key: value}
    assert State.from_dict(state.to_dict()) == state


def test_a_copied_state_is_equal_and_independent() -> None:
    state = State(phone=PHONE, screen="main", page=1, history=["start"], household=7, hop=3, secret_hops=[2])
    state.notice, state.hint, state.data = "Saved.", True, {"households": []}
    copy = state.copy()
    assert copy == state and State.from_dict(state.to_dict()) == state
    copy.history.append("main")
    copy.secret_hops.append(3)
    copy.data["caller"] = {}
    assert (state.history, state.secret_hops, state.data) == (["start"], [2], {"households": []})


@settings(max_examples=150, deadline=None)
@given(
    inputs=st.lists(st.sampled_from(["1", "2", "3", "4", "5", "98", "0", "00", "9", "x", ""]), max_size=14),
    lang=st.sampled_from(["fr", "wo", "en", "km"]),
)
def test_an_input_replayed_without_rendering_leads_to_the_same_state(inputs: list[str], lang: str) -> None:
    data = full_data(lang=lang, languages=("fr", "wo", "en", "km"), size=10)
    rendered, replayed = new_state(PHONE), new_state(PHONE)
    for user_input in ("", *inputs):
        for shown, state in ((True, rendered), (False, replayed)):
            while True:
                reply, nxt = step(state, user_input, render=shown)
                if not reply.needs:
                    break
                outcomes = {e.result: e for e in reply.effects if e.result}
                for key in reply.needs:
                    effect = outcomes.get(key)
                    if effect:
                        state.data[key] = data.apply(effect, key, state)
                    else:
                        state.data.update(data.load(key, state))
            if shown:
                rendered, text = nxt, reply.text
            else:
                replayed = nxt
                assert reply.text == "" and reply.end == text.startswith("END ")
        assert replayed == rendered
