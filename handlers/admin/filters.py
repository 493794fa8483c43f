"""Reading the households lists' and the reports' filters from the query string (a bad value: 400 naming it)."""

from __future__ import annotations

import re
from datetime import date

from flask import abort, request

from handlers.admin.params import arg_int, arg_text
from handlers.admin.texts import gettext
from models.base import EligibilityStatus
from models.inputs import InputError
from models.views.household_lists import HouseholdChoices, HouseholdFilters, check_household_filters

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def arg_statuses(name: str = "status") -> tuple[EligibilityStatus, ...]:
    """Return the eligibility statuses asked for (repeated or comma-separated), in the enum's order; 400 if unknown."""
    wanted: list[EligibilityStatus] = []
    for raw in request.args.getlist(name):
        for value in raw.split(","):
            value = value.strip().upper()
            if not value:
                continue
            try:
                status = EligibilityStatus(value)
            except ValueError:
                allowed = ", ".join(s.value for s in EligibilityStatus)
                abort(
                    400,
                    gettext(
                        "%(name)s must be one of %(allowed)s (not %(value)s)",
                        name=name,
                        allowed=allowed,
                        value=repr(value[:40]),
                    ),
                )
            if status not in wanted:
                wanted.append(status)
    return tuple(s for s in EligibilityStatus if s in wanted)  # one order, so the form shows the choice


def household_filters(choices: HouseholdChoices, **fixed: object) -> HouseholdFilters:
    """Return the households filters of the query string, checked against the values that exist.

    `fixed`: filters set by the page itself (a network's page lists that network's households).
    """
    filters = HouseholdFilters(
        text=arg_text("q"),
        scheme_id=arg_int("scheme"),
        statuses=arg_statuses(),
        commune=arg_text("commune"),
        network=arg_text("network", limit=60),
        plan=arg_text("plan", limit=40),
        category=arg_text("category", limit=40),
        mutuelle=arg_text("mutuelle", limit=40),
        **fixed,  # type: ignore[arg-type]
    )
    try:
        check_household_filters(filters, choices)
    except InputError as exc:
        abort(400, str(exc))
    return filters


def arg_month(name: str = "month") -> date | None:
    """Return the first day of a YYYY-MM query value, None when absent; 400 when malformed."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    match = _MONTH.match(raw)
    if match is None or not 1 <= int(match.group(2)) <= 12 or not 1900 <= int(match.group(1)) <= 2199:
        abort(400, gettext("%(name)s must be a month YYYY-MM (not %(value)s)", name=name, value=repr(raw[:20])))
    return date(int(match.group(1)), int(match.group(2)), 1)
