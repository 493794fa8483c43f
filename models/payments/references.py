"""Payment requests and their references: 6 digits + a Damm check digit, unique while open."""

from __future__ import annotations

import random
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.base import RequestStatus
from models.db import begin_write
from models.members.household import Household, Network
from models.payments.payment import PaymentRequest
from models.schemes.amounts import Amount, format_money
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import PaymentChannel, Scheme
from models.texts.i18n import render, resolve_language
from models.texts.sms_text import measure

REFERENCE_DIGITS = 6
# Collisions need ~1 % of the 900,000 references open at once to matter; a few retries cover it.
MAX_REFERENCE_ATTEMPTS = 20

# The Damm quasigroup (totally anti-symmetric, order 10): catches every single-digit error and
# every adjacent transposition, which Luhn does not (it misses 09 <-> 90).
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def damm_check_digit(digits: str) -> str:
    """Return the Damm check digit of a string of digits."""
    interim = 0
    for char in digits:
        interim = _DAMM[interim][int(char)]
    return str(interim)


def make_reference(rng: random.Random | None = None) -> str:
    """Return a new reference: 6 random digits (no leading zero) and their check digit."""
    source = rng if rng is not None else secrets.SystemRandom()
    # No leading zero: a payer or an operator app may treat the reference as a number and drop it.
    body = str(source.randrange(10 ** (REFERENCE_DIGITS - 1), 10**REFERENCE_DIGITS))
    return body + damm_check_digit(body)


def is_valid_reference(text: str) -> bool:
    """Return whether the text is exactly a reference with a correct check digit."""
    if len(text) != REFERENCE_DIGITS + 1 or not (text.isascii() and text.isdigit()):
        return False
    return damm_check_digit(text) == "0"


def create_payment_request(
    session: Session,
    *,
    scheme: Scheme,
    household: Household | None = None,
    network: Network | None = None,
    amount: int,
    periods: int = 1,
    payer_phone: str | None = None,
    channel: str,
    caller_key: str | None = None,
    now: datetime,
    rng: random.Random | None = None,
) -> PaymentRequest:
    """Create an open payment request, or return the one already made for `caller_key`.

    The caller commits. A replay with the same `caller_key` (USSD session + hop) writes nothing and
    returns the first request, even when both calls race: the unique `caller_key` column decides.
    """
    if (household is None) == (network is None):
        raise ValueError("a payment request is for exactly one household or one network")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"amount must be a positive integer of {scheme.currency}, not {amount!r}")
    if periods < 1:
        raise ValueError("periods must be at least 1")
    owner = household if household is not None else network
    assert owner is not None
    if owner.scheme_id != scheme.id:
        raise ValueError(f"{type(owner).__name__.lower()} is not in scheme {scheme.code}")
    begin_write(session)
    if caller_key is not None:
        existing = _by_caller_key(session, caller_key)
        if existing is not None:
            return existing
    for _attempt in range(MAX_REFERENCE_ATTEMPTS):
        request = PaymentRequest(
            reference=make_reference(rng),
            scheme_id=scheme.id,
            household_id=household.id if household is not None else None,
            network_id=network.id if network is not None else None,
            amount=amount,
            currency=scheme.currency,
            periods=periods,
            payer_phone=payer_phone,
            channel=channel,
            caller_key=caller_key,
            status=RequestStatus.OPEN,
            expires_at=now + timedelta(hours=scheme.request_ttl_hours),
            created_at=now,
        )
        try:
            # A savepoint so a lost race or a reference collision leaves the caller's transaction usable.
            with session.begin_nested():
                session.add(request)
                session.flush()
        except IntegrityError:
            if caller_key is not None:
                winner = _by_caller_key(session, caller_key)
                if winner is not None:
                    return winner
            continue  # the reference is open for someone else: draw another
        return request
    raise RuntimeError(f"no free payment reference after {MAX_REFERENCE_ATTEMPTS} attempts")


def _by_caller_key(session: Session, caller_key: str) -> PaymentRequest | None:
    return session.scalar(select(PaymentRequest).where(PaymentRequest.caller_key == caller_key))


def expire_payment_requests(session: Session, now: datetime, limit: int | None = None) -> int:
    """Mark open requests whose expiry has passed EXPIRED and return how many; the caller commits.

    `limit`: at most so many, the oldest ids first (the clock's batches; the partial index on open requests'
    expiry finds them).
    """
    due = PaymentRequest.status == RequestStatus.OPEN, PaymentRequest.expires_at <= now
    # The conditions stay on the UPDATE itself: a row paid meanwhile is checked again once its lock is released.
    statement = update(PaymentRequest).where(*due).values(status=RequestStatus.EXPIRED)
    if limit is not None:
        batch = select(PaymentRequest.id).where(*due).order_by(PaymentRequest.id).limit(limit)
        statement = statement.where(PaymentRequest.id.in_(batch.scalar_subquery()))
    # An UPDATE answers a CursorResult (with its rowcount); SQLAlchemy 2.0 types Session.execute as any Result.
    result = cast("CursorResult[Any]", session.execute(statement.execution_options(synchronize_session=False)))
    return result.rowcount


LANGUAGE_FALLBACKS = {"wo": "fr", "km": "en"}  # the same fallbacks as the USSD screens'


def channel_account(channel: PaymentChannel, mutuelle: Mutuelle | None) -> str:
    """Return the account a payer dials for a channel: the mutuelle's with that provider, else the scheme's."""
    return (mutuelle.account(channel.provider) if mutuelle is not None else None) or channel.account


def payment_instructions(
    scheme: Scheme, language: str, reference: str, amount_text: str, mutuelle: Mutuelle | None = None
) -> list[str]:
    """Return how to pay the scheme with each of its providers, in the language, on the mutuelle's accounts.

    A channel without instructions in the language uses its fallback (Wolof → French, Khmer → English), then the
    scheme's default language, then any it has, then `<label>: <account> <amount> ref <reference>`. The account is
    the mutuelle's with the channel's provider, else the channel's own (`channel_account`).
    """
    lines = []
    for channel in scheme.channels:
        account = channel_account(channel, mutuelle)
        texts = channel.instructions or {}
        candidates = (language, LANGUAGE_FALLBACKS.get(language, ""), str(scheme.default_language))
        text = next((texts[c] for c in candidates if texts.get(c)), "") or next(iter(texts.values()), "")
        if not text:
            text = f"{channel.label}: {{account}} {{amount}} ref {{reference}}"
        try:
            lines.append(str(text).format(account=account, reference=reference, amount=amount_text))
        except (KeyError, IndexError, ValueError):
            lines.append(f"{channel.label}: {account} ref {reference}")
    return lines


def how_to_pay(
    scheme: Scheme,
    language: str,
    reference: str,
    amount: Amount,
    template: str = "payment_reference",
    values: Mapping[str, object] | None = None,
    mutuelle: Mutuelle | None = None,
) -> str:
    """Return the one "how to pay" text of USSD and SMS: as many providers' instructions as keep the SMS in one segment.

    Always at least the first provider's; `template` is the SMS that carries them, with `reference`, `amount` and
    the template's other `values`; the accounts are the mutuelle's (the payer's household's or network's).
    """
    language = resolve_language(language)
    lines = payment_instructions(scheme, language, reference, format_money(amount, language), mutuelle)
    kept = list(lines)
    values = {**(values or {}), "reference": reference, "amount": amount}
    while len(kept) > 1 and measure(render(template, language, {**values, "how_to_pay": "; ".join(kept)})).segments > 1:
        kept.pop()
    return "; ".join(kept)


# A head's first name in a reference SMS is cut to this many characters (the SMS stays one segment).
FIRST_NAME_LENGTH = 40


def reference_values(household: Household, reference: str, amount: int, language: str) -> dict[str, Any]:
    """Return the values of the `payment_reference_for` SMS: the household, its head, the reference and how to pay.

    One builder for USSD's SMS and the SMS reply alike.
    """
    scheme = household.scheme
    head = household.head
    shown = Amount(amount, scheme.currency, scheme.currency_exponent)
    values: dict[str, Any] = {
        "household_no": household.household_no,
        "first_name": head.first_name[:FIRST_NAME_LENGTH] if head is not None else "-",
        "reference": reference,
        "amount": shown,
    }
    values["how_to_pay"] = how_to_pay(
        scheme, language, reference, shown, "payment_reference_for", values, household.mutuelle
    )
    return values
