"""Outbound SMS templates and their translations, usable anywhere (web, workers, CLI) without Flask.

Each template is a gettext message whose context (`msgctxt`) is the template key and whose id is the
English text; the catalogues are `locales/<lang>/LC_MESSAGES/messages.po`, compiled to `.mo` by
`make translations`. A catalogue whose `.mo` is missing or older than its `.po` is compiled in memory,
so a fresh clone (or a deploy that skipped the compile step) still speaks every language.

The staff admin's texts are another domain beside them, `locales/<lang>/LC_MESSAGES/admin.po` (French and
English only), loaded by the same `translations(language, domain)`.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from models.base import Language
from models.schemes.amounts import Amount, format_money

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).resolve().parents[2] / "locales"
DOMAIN = "messages"
ADMIN_DOMAIN = "admin"
LANGUAGES: tuple[str, ...] = tuple(language.value for language in Language)
FALLBACK_LANGUAGE = Language.FR.value
PLACEHOLDER_RE = re.compile(r"%\((\w+)\)s")


def template(key: str, text: str) -> str:
    """Mark a template for extraction (`pybabel extract -k template:1c,2`) and return its English text."""
    return text


# Short, plain wording: every template should fit one SMS with typical values (160 GSM-7 / 70 UCS-2).
# Amounts, dates and references arrive as values; dates are printed DD/MM/YYYY.
SMS_TEMPLATES: dict[str, str] = {
    "payment_reference": template(
        "payment_reference", "Payment reference %(reference)s: pay %(amount)s. %(how_to_pay)s"
    ),
    "receipt_covered": template(
        "receipt_covered",
        "Payment of %(amount)s received for %(household_no)s. Covered until %(until)s. "
        "Next payment: %(next)s before %(next_due)s.",
    ),
    "receipt_waiting": template(
        "receipt_waiting",
        "Payment of %(amount)s received for %(household_no)s. Waiting until %(waiting)s, then covered until %(until)s.",
    ),
    "receipt_due": template(
        "receipt_due", "Payment of %(amount)s received for household %(household_no)s. Still to pay: %(due)s."
    ),
    "receipt_network": template(
        "receipt_network",
        "Network %(network)s: payment of %(amount)s received, %(households)s household(s) paid. "
        "Left on the account: %(remaining)s.",
    ),
    "receipt_review": template(
        "receipt_review", "Payment of %(amount)s received. We are checking it and will send you an SMS."
    ),
    "reminder_before": template(
        "reminder_before",
        "Household %(household_no)s: covered until %(until)s. Next payment: %(amount)s before %(until)s. "
        "Dial %(ussd_code)s",
    ),
    "reminder_lapsed": template(
        "reminder_lapsed",
        "Household %(household_no)s: your cover has lapsed. Pay %(amount)s to be covered again. Dial %(ussd_code)s",
    ),
    "help": template("help", "Send STATUS, PAY, BALANCE, LANG en/fr/wo/km, STOP or START. Or dial %(ussd_code)s"),
    # Replies to SMS commands (models.messaging.inbound); keywords in them are the reply language's own.
    "status_active": template(
        "status_active",
        "Household %(household_no)s: covered until %(until)s. Next payment: %(next)s before %(next_due)s.",
    ),
    "status_waiting": template(
        "status_waiting",
        "Household %(household_no)s: waiting until %(waiting)s, then covered until %(until)s. "
        "Next payment: %(next)s before %(next_due)s.",
    ),
    "status_grace": template(
        "status_grace", "Household %(household_no)s: cover ended on %(until)s, grace period. Pay %(amount)s: send PAY."
    ),
    "status_lapsed": template(
        "status_lapsed",
        "Household %(household_no)s is NOT covered since %(until)s. Pay %(amount)s to be covered again: send PAY.",
    ),
    "status_pending": template(
        "status_pending", "Household %(household_no)s is NOT covered yet. Pay %(amount)s to start your cover: send PAY."
    ),
    "status_partly_paid": template(
        "status_partly_paid",
        "Household %(household_no)s: partly paid, NOT covered yet. Still missing: %(amount)s. Send PAY.",
    ),
    "status_suspended": template(
        "status_suspended",
        "Household %(household_no)s is NOT covered (suspended or inactive). Please contact your mutuelle office.",
    ),
    "check_covered": template(
        "check_covered", "%(member_no)s %(first_name)s, born %(birth_year)s: COVERED until %(until)s."
    ),
    "check_not_covered": template(
        "check_not_covered", "%(member_no)s %(first_name)s, born %(birth_year)s: NOT covered (%(status)s)."
    ),
    "member_not_found": template(
        "member_not_found", "No member matches %(member_no)s with these details. Check the card and try again."
    ),
    "pin_wrong": template("pin_wrong", "Wrong PIN. %(attempts)s attempt(s) left before checks are locked."),
    "pin_locked": template("pin_locked", "Too many wrong PINs: checks from this phone are locked until %(time)s."),
    "agent_only": template(
        "agent_only", "Member checks with a PIN are for health-facility agents only. Send STATUS or HELP."
    ),
    "check_usage": template("check_usage", "To check a member send: CHECK <member no> <PIN>"),
    "status_usage": template(
        "status_usage", "Send STATUS from your registered phone, or STATUS <member no> <date of birth DDMMYYYY>."
    ),
    "not_registered": template(
        "not_registered",
        "This phone is not registered with the mutuelle. Send STATUS <member no> <DDMMYYYY> or dial %(ussd_code)s",
    ),
    "rate_limited": template("rate_limited", "Too many checks. Please try again later or dial %(ussd_code)s"),
    "pay_nothing_due": template(
        "pay_nothing_due", "Household %(household_no)s: nothing to pay now. Next payment: %(next)s before %(next_due)s."
    ),
    "pay_refused_suspended": template(
        "pay_refused_suspended",
        "Household %(household_no)s is suspended: no payment is taken. Please contact your mutuelle office.",
    ),
    "pay_refused_closed": template(
        "pay_refused_closed",
        "Household %(household_no)s is closed: no payment is taken. Please contact your mutuelle office.",
    ),
    "pay_refused_subsidised": template(
        "pay_refused_subsidised",
        "Household %(household_no)s: your cover is fully paid by the subsidy. You have nothing to pay.",
    ),
    "pay_usage": template("pay_usage", "Send PAY to pay the amount due, or PAY followed by an amount in figures."),
    # Paying for a named household or network (issue 18): every reply about a household names it.
    "payment_reference_for": template(
        "payment_reference_for",
        "Household %(household_no)s (%(first_name)s): reference %(reference)s, pay %(amount)s. %(how_to_pay)s",
    ),
    "network_reference": template(
        "network_reference", "Network %(network)s: reference %(reference)s, pay %(amount)s. %(how_to_pay)s"
    ),
    "choose_household_pay": template(
        "choose_household_pay", "Several households use this phone: %(choices)s. Send PAY + household number."
    ),
    "choose_household_status": template(
        "choose_household_status", "Several households use this phone: %(choices)s. Send STATUS + household number."
    ),
    "choose_household_balance": template(
        "choose_household_balance",
        "Several households use this phone: %(choices)s. Send BALANCE + household number.",
    ),
    "household_not_found": template(
        "household_not_found", "No household %(household_no)s. Check the number on the card and send PAY again."
    ),
    "network_offer": template(
        "network_offer",
        "To pay for network %(network)s send PAY %(network)s + amount. For a household: PAY + its number.",
    ),
    "balance": template(
        "balance",
        "Household %(household_no)s: credit %(credit)s. Amount due: %(amount)s. "
        "Next payment: %(next)s before %(next_due)s.",
    ),
    "language_set": template("language_set", "Language saved: %(language_name)s."),
    "language_usage": template("language_usage", "Send LANG followed by fr, wo, en or km."),
    "stop_done": template("stop_done", "You will no longer receive reminders. Send START to get them again."),
    "start_done": template("start_done", "Reminders are on. Send STOP to stop them."),
    # A collector's evening summary of their day (models.enrolment.collector_sms): with the forms to correct named
    # when that fits one SMS, else counted; and the answers to a collector's STOP and START.
    "collector_day": template(
        "collector_day",
        "Your day %(day)s: %(submitted)s form(s) sent, %(validated)s validated, %(pending)s waiting, "
        "%(to_fix)s to correct.",
    ),
    "collector_day_fix": template(
        "collector_day_fix",
        "Your day %(day)s: %(submitted)s form(s) sent, %(validated)s validated, %(pending)s waiting, "
        "%(to_fix)s to correct: %(fixes)s",
    ),
    "collector_stop_done": template(
        "collector_stop_done", "You will no longer receive the summary of your day. Send START to get it again."
    ),
    "collector_start_done": template(
        "collector_start_done", "The summary of your day is on again. Send STOP to stop it."
    ),
    # The head's welcome when staff validate an enrolment (models.enrolment.validate).
    "welcome": template(
        "welcome",
        "Welcome! Household %(household_no)s is enrolled. To pay %(amount)s dial %(ussd_code)s and choose Pay, "
        "or send PAY by SMS.",
    ),
    "welcome_subsidised": template(
        "welcome_subsidised",
        "Welcome! Household %(household_no)s is enrolled and its cover is paid by the subsidy. "
        "Dial %(ussd_code)s to see it.",
    ),
    # The head's confirmation when staff validate a household change (models.enrolment.changes).
    "household_changed": template(
        "household_changed",
        "Household %(household_no)s is updated as asked. From the next period you pay %(next)s. "
        "Dial %(ussd_code)s to see it.",
    ),
    "household_changed_subsidised": template(
        "household_changed_subsidised",
        "Household %(household_no)s is updated as asked; the subsidy still pays its cover. "
        "Dial %(ussd_code)s to see it.",
    ),
}


class TemplateError(ValueError):
    """A template key is unknown or a placeholder has no value."""


def placeholders(key: str) -> set[str]:
    """Return the names of the values the template needs."""
    return set(_placeholders(key))


@functools.cache
def _placeholders(key: str) -> frozenset[str]:
    return frozenset(PLACEHOLDER_RE.findall(_english(key)))


def resolve_language(*candidates: str | None) -> str:
    """Return the first candidate language that has a catalogue, else French."""
    for candidate in candidates:
        if candidate and str(candidate) in LANGUAGES:
            return str(candidate)
    return FALLBACK_LANGUAGE


def render(key: str, language: str, values: Mapping[str, Any]) -> str:
    """Return the template in the language with its placeholders filled."""
    text = str(translations(resolve_language(language)).pgettext(key, _english(key)))
    missing = _placeholders(key) - set(values)
    if missing:
        raise TemplateError(f"template {key!r} needs {', '.join(sorted(missing))}")
    language = resolve_language(language)
    return text % {name: _format_value(value, language) for name, value in values.items()}


@functools.cache
def translations(language: str, domain: str = DOMAIN) -> Translations:
    """Return the language's catalogue, compiling its `.po` in memory when the `.mo` is missing or stale."""
    po_path, mo_path = _paths(language, domain)
    if not po_path.exists():
        raise TemplateError(f"no catalogue for language {language!r} at {po_path}")
    if _is_fresh(po_path, mo_path):
        with mo_path.open("rb") as fp:
            return Translations(fp, domain=domain)
    log.info("i18n: %s is missing or stale; compiling %s in memory (run `make translations`)", mo_path.name, language)
    buffer = io.BytesIO()
    write_mo(buffer, _read_catalog(po_path, domain), use_fuzzy=True)
    buffer.seek(0)
    return Translations(buffer, domain=domain)


def compile_catalogs(directory: Path = LOCALES_DIR) -> list[Path]:
    """Compile every stale `.po` (every domain) under the directory to its `.mo` atomically; return those written."""
    written = []
    for po_path in sorted(directory.glob("*/LC_MESSAGES/*.po")):
        mo_path = po_path.with_suffix(".mo")
        if _is_fresh(po_path, mo_path):
            continue
        fd, tmp_name = tempfile.mkstemp(dir=po_path.parent, suffix=".mo.tmp")
        with os.fdopen(fd, "wb") as fp:
            write_mo(fp, _read_catalog(po_path, po_path.stem), use_fuzzy=True)
        # Concurrent test processes may compile at once: the rename makes each write all-or-nothing.
        os.replace(tmp_name, mo_path)
        written.append(mo_path)
    translations.cache_clear()
    return written


def _english(key: str) -> str:
    try:
        return SMS_TEMPLATES[key]
    except KeyError:
        raise TemplateError(f"unknown SMS template {key!r}") from None


def _paths(language: str, domain: str = DOMAIN) -> tuple[Path, Path]:
    po_path = LOCALES_DIR / language / "LC_MESSAGES" / f"{domain}.po"
    return po_path, po_path.with_suffix(".mo")


def _is_fresh(po_path: Path, mo_path: Path) -> bool:
    return mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime


def _read_catalog(po_path: Path, domain: str = DOMAIN) -> Any:
    with po_path.open("rb") as fp:
        return read_po(fp, domain=domain)


def _format_value(value: Any, language: str) -> str:
    if isinstance(value, Amount):
        return format_money(value, language)
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    return str(value)
