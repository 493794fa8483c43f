"""Inbound SMS: store each AT message once (secrets masked), then answer its command with one reply.

`record_inbound` runs in the web request: one `Message` per AT id (`at-in-<id>`), so AT's retries every minute
for 12 hours store nothing new. `answer_inbound` runs in the RQ job: it claims the message (RECEIVED → HANDLED)
in the same transaction as every effect of the command and its reply (keyed `reply:<message id>`), so a
retried or concurrent job executes the command once and sends one reply. Texts from a registered collection
phone are operator confirmations forwarded by hand: they go to the payments SMS parser, not to the commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import phonenumbers
from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from logs import mask_phone
from models.access.agents import PinOutcome, agent_scope, find_agent, verify_agent_pin
from models.access.rate_limit import allow_member_check
from models.access.tables import CollectionDevice
from models.base import CheckChannel, EligibilityStatus, Language, MessageDirection, MessageStatus, utcnow
from models.coverage.checks import check_member, find_member_born
from models.coverage.eligibility import Eligibility, household_eligibility, member_eligibility, pay_offer
from models.db import begin_write
from models.enrolment.tables import Collector
from models.inputs import squash
from models.members.household import Household, Network, find_household, phone_household_ids
from models.messaging.commands import Command, CommandKind, mask_secrets, parse_command
from models.messaging.message import Message
from models.messaging.outbox import send_sms
from models.payments.operator_sms import OperatorPatterns
from models.payments.references import create_payment_request, how_to_pay, reference_values
from models.payments.sources import find_device, operator_patterns, take_short_code_text
from models.schemes.amounts import Amount, AmountError, parse_amount
from models.schemes.scheme import Scheme
from models.texts.i18n import resolve_language
from models.texts.sms_text import measure

log = logging.getLogger(__name__)

INBOUND_DEDUPE_KEY = "at-in-{}"
REPLY_DEDUPE_KEY = "reply:{}"
PAYMENT_FORWARD = "payment_forward"
LANGUAGE_NAMES = {"fr": "Français", "wo": "Wolof", "en": "English", "km": "ខ្មែរ"}
STATUS_TEMPLATES = {
    EligibilityStatus.ACTIVE: "status_active",
    EligibilityStatus.WAITING: "status_waiting",
    EligibilityStatus.GRACE: "status_grace",
    EligibilityStatus.LAPSED: "status_lapsed",
    EligibilityStatus.PENDING: "status_pending",
    EligibilityStatus.SUSPENDED: "status_suspended",
    EligibilityStatus.INACTIVE: "status_suspended",
}


@dataclass(frozen=True)
class InboundSms:
    """One AT inbound SMS as posted to `/sms/inbound`."""

    at_id: str
    phone: str
    text: str
    short_code: str | None = None
    link_id: str | None = None
    received_at: str | None = None


@dataclass(frozen=True)
class StoredInbound:
    """The stored message of an inbound SMS and what the web request still has to do about it."""

    message_id: int
    created: bool  # False: AT sent this id before
    pending: bool  # still RECEIVED: its job must be (re)enqueued
    masked: bool  # the stored body hides secrets: the job needs the text itself


@dataclass(frozen=True)
class CommandContext:
    """What answering a command needs besides the database: the clock, Redis for rate limits, settings."""

    now: datetime
    ussd_code: str
    redis: Redis | None = None
    patterns: OperatorPatterns | None = None
    default_scheme: str = ""


@dataclass(frozen=True)
class InboundOutcome:
    """What the job did: the command (or `payment_forward`), the reply template, a payment to reconcile."""

    kind: str
    reply: str | None = None
    reconcile_payment_id: int | None = None


@dataclass
class SmsReply:
    """The reply to send: a template, its values, and whose language it speaks."""

    template: str
    values: dict[str, Any] = field(default_factory=dict)
    household: Household | None = None
    language: str | None = None
    mutuelle_id: int | None = None  # a reply to no household sent for a mutuelle (a collector's): its sender id


def record_inbound(session: Session, sms: InboundSms) -> StoredInbound:
    """Store an inbound SMS once per AT id with PINs and dates of birth masked; the caller commits."""
    key = INBOUND_DEDUPE_KEY.format(sms.at_id)[:160]
    existing = _by_key(session, key)
    if existing is not None:
        return _stored(existing, sms.text, created=False)
    device = find_device(session, sms.phone)
    # An operator confirmation forwarded by a collection phone holds no PIN, and its digits are the payment.
    body = sms.text if device is not None else mask_secrets(sms.text)
    shape = measure(sms.text)
    message = Message(
        direction=MessageDirection.INBOUND,
        phone=sms.phone[:20],
        body=body,
        template=PAYMENT_FORWARD if device is not None else None,
        encoding=shape.encoding,
        segments=shape.segments,
        status=MessageStatus.RECEIVED,
        dedupe_key=key,
        link_id=sms.link_id[:80] if sms.link_id else None,
        short_code=sms.short_code[:20] if sms.short_code else None,
    )
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:
        # A concurrent request stored the same AT id first: that row is the message.
        winner = _by_key(session, key)
        if winner is None:
            raise
        return _stored(winner, sms.text, created=False)
    log.info("sms in %s from %s stored (message %s)", sms.at_id[:80], mask_phone(sms.phone), message.id)
    return StoredInbound(message.id, True, True, body != sms.text)


def _by_key(session: Session, key: str) -> Message | None:
    return session.scalar(select(Message).where(Message.dedupe_key == key))


def _stored(message: Message, text: str, created: bool) -> StoredInbound:
    return StoredInbound(message.id, created, message.status == MessageStatus.RECEIVED, message.body != text)


def answer_inbound(session: Session, message_id: int, text: str | None, context: CommandContext) -> InboundOutcome:
    """Execute the command of a stored inbound SMS once and queue its reply; the caller commits.

    `text` is the SMS as sent (with its PIN or date of birth); without it the stored, masked body is read, and
    a command that needed the secret is answered with its usage.
    """
    begin_write(session)
    claimed = session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.direction == MessageDirection.INBOUND,
            Message.status == MessageStatus.RECEIVED,
        )
        .values(status=MessageStatus.HANDLED, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    message = session.get(Message, message_id, populate_existing=True)
    if not getattr(claimed, "rowcount", 0) or message is None:
        return InboundOutcome("already handled")
    body = text if text is not None else message.body
    device = find_device(session, message.phone)
    if device is not None:
        return _payment_forward(session, message, device, body, context)
    command = parse_command(body)
    message.template = f"cmd:{command.kind.value}"
    reply = _reply(session, message, command, context)
    if reply.household is not None:
        message.household_id = reply.household.id
    send_sms(
        session,
        message.phone,
        reply.template,
        language=reply.language,
        household=reply.household,
        dedupe_key=REPLY_DEDUPE_KEY.format(message.id),
        mutuelle_id=reply.mutuelle_id,
        **reply.values,
    )
    log.info("sms in message %s from %s: %s → %s", message.id, mask_phone(message.phone), command.kind, reply.template)
    return InboundOutcome(command.kind.value, reply.template)


def _payment_forward(
    session: Session, message: Message, device: CollectionDevice, text: str, context: CommandContext
) -> InboundOutcome:
    """Hand a collection phone's text to the payments SMS parser (no reply: the collector is not a member)."""
    message.template = PAYMENT_FORWARD
    if not text.strip():
        return InboundOutcome(PAYMENT_FORWARD)
    patterns = context.patterns or operator_patterns(None)
    intake = take_short_code_text(session, patterns, device, text, message.created_at.isoformat())
    if intake.result is None:
        log.info("short-code text from device %s kept for review: %s", device.id, intake.forwarded.reason)
        return InboundOutcome(PAYMENT_FORWARD)
    result = intake.result
    log.info("short-code text from device %s: payment %s %s", device.id, result.payment_id, result.outcome.value)
    return InboundOutcome(PAYMENT_FORWARD, reconcile_payment_id=result.payment_id if result.needs_reconcile else None)


# ---------------------------------------------------------------- commands


def phone_households(session: Session, phone: str) -> list[Household]:
    """Return the households in which the phone is an active member's, by household number."""
    owners = phone_household_ids(phone)
    return list(session.scalars(select(Household).where(Household.id.in_(owners)).order_by(Household.household_no)))


def fallback_scheme(session: Session, phone: str, default_scheme: str = "") -> Scheme | None:
    """Return the scheme that speaks to a phone with no household: the configured default, else its country's."""
    if default_scheme:
        scheme = session.scalar(select(Scheme).where(Scheme.code == default_scheme))
        if scheme is not None:
            return scheme
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return None
    return session.scalar(select(Scheme).where(Scheme.country == region).order_by(Scheme.id).limit(1))


def phone_collectors(session: Session, phone: str) -> list[Collector]:
    """Return the collectors with this phone."""
    return list(session.scalars(select(Collector).where(Collector.phone == phone).order_by(Collector.id)))


def _collector_reply(template: str, collector: Collector) -> SmsReply:
    """Return a reply to a collector: in their language (else their scheme's), with their mutuelle's sender id."""
    language = resolve_language(collector.language, collector.mutuelle.scheme.default_language)
    return SmsReply(template, {}, None, language, collector.mutuelle_id)


def contact_networks(session: Session, phone: str) -> list[Network]:
    """Return the networks whose contact (treasurer) has this phone."""
    return list(session.scalars(select(Network).where(Network.contact_phone == phone).order_by(Network.code)))


# A head's first name in a choice is cut to this many characters, so two households' choice fits one SMS.
CHOICE_NAME_LENGTH = 12


def _choices(households: list[Household]) -> str:
    """Return each household as its number and head's first name: "SN-1 (Awa), SN-2 (Moussa)"."""
    return ", ".join(
        f"{h.household_no} ({h.head.first_name[:CHOICE_NAME_LENGTH].strip()})" if h.head is not None else h.household_no
        for h in households
    )


def _reply(session: Session, message: Message, command: Command, context: CommandContext) -> SmsReply:
    phone = message.phone
    households = phone_households(session, phone)
    chosen = _chosen_household(command, households)
    if chosen is not None:  # `STATUS`/`BALANCE <household no>` from a phone registered to several households
        households = [chosen]
    household = households[0] if households else None
    scheme = household.scheme if household is not None else fallback_scheme(session, phone, context.default_scheme)
    language = None if household is not None else (scheme.default_language.value if scheme is not None else None)
    kind = command.kind
    if kind is CommandKind.CHECK:
        reply = _check(session, phone, command, context, scheme)
        own = household.language.value if household is not None else None
        reply.language = reply.language or own or language
        return reply
    if kind is CommandKind.STATUS and command.member_no is not None and chosen is None:
        return _member_status(session, message, command, context, language)
    if kind is CommandKind.HELP:
        return SmsReply("help", {"ussd_code": context.ussd_code}, household, language)
    if kind in (CommandKind.STOP, CommandKind.START):
        # A collector's phone: STOP and START turn the evening summary of their day off and on
        # (models.enrolment.collector_sms); a phone that is also a household's is answered as the household's.
        collectors = phone_collectors(session, phone)
        for collector in collectors:
            collector.sms_opt_in = kind is CommandKind.START
        if collectors and household is None:
            return _collector_reply(f"collector_{kind.value}_done", collectors[0])
    if kind is CommandKind.STOP:
        for each in households:
            each.sms_opt_in = False
        return SmsReply("stop_done", {}, household, language)
    if kind is CommandKind.LANGUAGE and command.language is None:
        return SmsReply("language_usage", {}, household, language)
    if kind is CommandKind.PAY and command.account is not None and command.problem is None:
        return _pay_for(session, message, command, context, households, language)
    if kind is CommandKind.PAY and command.problem is None:
        networks = contact_networks(session, phone)
        if networks:  # a treasurer: the network, or a household by its number
            speaks = household.language.value if household is not None else language
            return SmsReply("network_offer", {"network": networks[0].code.upper()}, None, speaks)
    if len(households) > 1 and kind in _CHOOSE_TEMPLATES:
        # A phone several households share: never answer for the first one, ask which.
        return SmsReply(_CHOOSE_TEMPLATES[kind], {"choices": _choices(households)}, None, households[0].language.value)
    if household is None:
        return SmsReply("not_registered", {"ussd_code": context.ussd_code}, None, language)
    if kind is CommandKind.START:
        for each in households:
            each.sms_opt_in = True
        return SmsReply("start_done", {}, household)
    if kind is CommandKind.LANGUAGE:
        assert command.language is not None
        for each in households:
            each.language = Language(command.language)
        return SmsReply(
            "language_set", {"language_name": LANGUAGE_NAMES[command.language]}, household, command.language
        )
    today = household.scheme.local_today(context.now)
    if kind is CommandKind.STATUS:
        return _status_reply(household, household_eligibility(session, household, today))
    if kind is CommandKind.BALANCE:
        answer = household_eligibility(session, household, today)
        money = _money(household.scheme)
        values = {
            "household_no": household.household_no,
            "credit": money(answer.credit),
            "amount": money(answer.amount_due),
            **_next_payment(household, answer),
        }
        return SmsReply("balance", values, household)
    return _pay(session, message, household, command, context, today)


_CHOOSE_TEMPLATES = {
    CommandKind.PAY: "choose_household_pay",
    CommandKind.STATUS: "choose_household_status",
    CommandKind.BALANCE: "choose_household_balance",
}


def _chosen_household(command: Command, households: list[Household]) -> Household | None:
    """Return the phone's household that `STATUS <household no>` or `BALANCE <household no>` names, if any."""
    if len(households) < 2 or command.kind not in (CommandKind.STATUS, CommandKind.BALANCE):
        return None
    number = command.account if command.kind is CommandKind.BALANCE else command.member_no
    if number is None or (command.kind is CommandKind.STATUS and command.birth_date is not None):
        return None
    return next((h for h in households if h.household_no.upper() == number.upper()), None)


def _money(scheme: Scheme) -> Callable[[int], Amount]:
    # Formatted in the reply's language when it is rendered (`models.schemes.amounts.format_amount`).
    return lambda amount: Amount(amount, scheme.currency, scheme.currency_exponent)


def _next_payment(household: Household, answer: Eligibility) -> dict[str, Any]:
    """Return the next payment's values of a reply: `next` (amount) and `next_due` (the day cover ends, or today)."""
    return {"next": _money(household.scheme)(answer.next_payment_amount), "next_due": answer.next_payment_due or "-"}


def _status_reply(household: Household, answer: Eligibility) -> SmsReply:
    values: dict[str, Any] = {
        "household_no": household.household_no,
        "until": answer.valid_until if answer.valid_until is not None else "-",
        "waiting": answer.waiting_until if answer.waiting_until is not None else "-",
        "amount": _money(household.scheme)(answer.amount_due),
        **_next_payment(household, answer),
    }
    template = "status_partly_paid" if answer.partly_paid else STATUS_TEMPLATES[answer.status]
    return SmsReply(template, values, household)


def _member_status(
    session: Session, message: Message, command: Command, context: CommandContext, language: str | None
) -> SmsReply:
    """Answer `STATUS <member no> <DDMMYYYY>` from any phone, rate-limited per phone and per member."""
    if command.problem is not None or command.birth_date is None:
        return SmsReply("status_usage", {}, None, language)
    member_no = (command.member_no or "").upper()[:44]
    event = f"sms:{message.id}"
    if context.redis is not None and not allow_member_check(context.redis, message.phone, member_no, event):
        return SmsReply("rate_limited", {"ussd_code": context.ussd_code}, None, language)
    member = find_member_born(session, member_no, command.birth_date)
    if member is None:  # an unknown number and a wrong date of birth answer alike: neither is revealed
        return SmsReply("member_not_found", {"member_no": member_no}, None, language)
    household = member.household
    answer = member_eligibility(session, member, household.scheme.local_today(context.now))
    return _status_reply(household, answer)


def _check(session: Session, phone: str, command: Command, context: CommandContext, scheme: Scheme | None) -> SmsReply:
    """Answer an agent's `CHECK <member no> <PIN>`: the PIN first (same lockout as USSD), then the member."""
    agent = find_agent(session, phone)
    if agent is None:
        return SmsReply("agent_only")
    pin = command.pin or ""
    if command.problem is not None or not (pin.isascii() and pin.isdigit()):
        return SmsReply("check_usage")
    result = verify_agent_pin(session, agent, pin, context.now)
    if result.outcome is PinOutcome.INACTIVE:
        return SmsReply("agent_only")
    if result.outcome is PinOutcome.LOCKED:
        until = result.locked_until or context.now
        local = scheme.local_now(until) if scheme is not None else until
        return SmsReply("pin_locked", {"time": local.strftime("%H:%M")})
    if result.outcome is PinOutcome.WRONG:
        return SmsReply("pin_wrong", {"attempts": result.attempts_left})
    member_no = (command.member_no or "").upper()[:44]
    with agent_scope(session, agent):
        answer = check_member(session, member_no, None, CheckChannel.SMS, agent.facility, agent_id=agent.id)
    if answer is None:
        return SmsReply("member_not_found", {"member_no": member_no})
    e = answer.eligibility
    values = {
        "member_no": answer.member_no,
        "first_name": answer.first_name,
        "birth_year": answer.birth_year if answer.birth_year is not None else "-",
        "until": e.valid_until if e.valid_until is not None else "-",
        "status": e.status.value,
    }
    return SmsReply("check_covered" if e.covered else "check_not_covered", values)


def _pay(
    session: Session,
    message: Message,
    household: Household,
    command: Command,
    context: CommandContext,
    today: date,
    speaks: str | None = None,
) -> SmsReply:
    """Answer `PAY [amount]`: a payment request for the amount (default: what is due, else the next payment).

    A household suspended by staff, closed or fully subsidised is told why instead (a lapsed one may always pay).
    `speaks`: the sender's language when it pays for a household that is not its own.
    """
    scheme = household.scheme
    answer = household_eligibility(session, household, today)
    offer = pay_offer(session, household, answer, today)
    if offer.refusal is not None:
        refused = {"household_no": household.household_no}
        return SmsReply(f"pay_refused_{offer.refusal.value}", refused, household, speaks)
    if command.problem is not None:
        return SmsReply("pay_usage", {}, household, speaks)
    if command.amount_text is not None:
        try:
            amount = parse_amount(command.amount_text, scheme.currency_exponent)
        except AmountError:
            return SmsReply("pay_usage", {}, household, speaks)
    else:
        if not offer.choices:
            nothing = {"household_no": household.household_no, **_next_payment(household, answer)}
            return SmsReply("pay_nothing_due", nothing, household, speaks)
        amount = offer.choices[0].amount
    request = create_payment_request(
        session,
        scheme=scheme,
        household=household,
        amount=amount,
        payer_phone=message.phone,
        channel="sms",
        caller_key=f"sms:{message.id}",
        now=context.now,
    )
    language = resolve_language(speaks, household.language, scheme.default_language)
    return _reference_reply(household, request.reference, amount, language)


def _reference_reply(household: Household, reference: str, amount: int, language: str) -> SmsReply:
    """Return the reply with a household's payment reference, naming the household and its head."""
    return SmsReply(
        "payment_reference_for", reference_values(household, reference, amount, language), household, language
    )


def _pay_for(
    session: Session,
    message: Message,
    command: Command,
    context: CommandContext,
    own: list[Household],
    fallback_language: str | None,
) -> SmsReply:
    """Answer `PAY <household no> [amount]` from any phone (rate-limited), or `PAY <network>` from its contact."""
    number = (command.account or "").upper()[:44]
    speaks = own[0].language.value if own else fallback_language
    network = next((n for n in contact_networks(session, message.phone) if squash(number) in n.match_keys), None)
    if network is not None:
        return _pay_network(session, message, network, command, context)
    if not any(h.household_no.upper() == number for h in own):  # another household's: limited like STATUS <no>
        event = f"sms:{message.id}"
        if context.redis is not None and not allow_member_check(context.redis, message.phone, number, event):
            return SmsReply("rate_limited", {"ussd_code": context.ussd_code}, None, speaks)
    household = find_household(session, number)
    if household is None:
        return SmsReply("household_not_found", {"household_no": number}, None, speaks)
    return _pay(session, message, household, command, context, household.scheme.local_today(context.now), speaks)


def _pay_network(
    session: Session, message: Message, network: Network, command: Command, context: CommandContext
) -> SmsReply:
    """Answer a treasurer's `PAY <network> <amount>`: a payment request for the network account."""
    scheme = network.scheme
    language = resolve_language(scheme.default_language)
    values: dict[str, Any] = {"network": network.code.upper()}
    if command.amount_text is None:
        return SmsReply("network_offer", values, None, language)
    try:
        amount = parse_amount(command.amount_text, scheme.currency_exponent)
    except AmountError:
        return SmsReply("network_offer", values, None, language)
    request = create_payment_request(
        session,
        scheme=scheme,
        network=network,
        amount=amount,
        payer_phone=message.phone,
        channel="sms",
        caller_key=f"sms:{message.id}",
        now=context.now,
    )
    shown = _money(scheme)(amount)
    values.update(reference=request.reference, amount=shown)
    values["how_to_pay"] = how_to_pay(
        scheme, language, request.reference, shown, "network_reference", values, network.mutuelle
    )
    return SmsReply("network_reference", values, None, language)
