"""Adapters: each route's payload turned into one normalised `Report` (docs/http-contract.md, "Payments")."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.access.tables import CollectionDevice
from models.base import EvidenceSource, RequestStatus, utcnow
from models.inputs import InputError, check_text, load_json_body, squash
from models.members.household import Household, Member, Network
from models.payments.intake import IntakeResult, Report, clean_reference, record_report, store_unparsed
from models.payments.operator_sms import OperatorPatterns, default_patterns, load_patterns, read_text
from models.payments.payment import PAYER_MAX, REFERENCE_MAX, TXN_ID_MAX, PaymentRequest
from models.payments.references import is_valid_reference
from models.schemes.amounts import AmountError, currency_exponent, parse_amount
from models.schemes.mutuelle import ACCOUNT_MAX

WAVE_SIGNATURE_TOLERANCE_SECONDS = 300
WAVE_PAYMENT_EVENTS = frozenset({"merchant.payment_received", "checkout.session.completed"})
MAX_FORWARDED_TEXT = 2000  # a few concatenated SMS; an operator confirmation is one
DARAJA_TIMEZONE = ZoneInfo("Africa/Nairobi")  # Safaricom's TransTime is Kenya local time


class PayloadError(InputError):
    """A payload that cannot be read as a payment; the message says which field."""


def load_json(body: bytes) -> Any:
    """Return the JSON body with decimals read as Decimal (never float), numbers bounded; PayloadError otherwise."""
    try:
        return load_json_body(body)
    except InputError as exc:
        raise PayloadError(str(exc)) from exc


def _field(data: Any, name: str) -> Any:
    if not isinstance(data, dict) or data.get(name) in (None, ""):
        raise PayloadError(f"{name} is required")
    return data[name]


def _text(data: Any, name: str, max_length: int, required: bool = False, label: str | None = None) -> str | None:
    """Return a text field of an object, bounded and free of control characters; None when absent or blank."""
    value = data.get(name) if isinstance(data, dict) else None
    if isinstance(value, dict | list):
        raise PayloadError(f"{label or name} must be a string")
    try:
        text = check_text(value, label or name, max_length, required=required)
    except InputError as exc:
        raise PayloadError(str(exc)) from exc
    return text or None


def _required_text(data: Any, name: str, max_length: int, label: str | None = None) -> str:
    text = _text(data, name, max_length, required=True, label=label)
    assert text is not None
    return text


def _amount(session: Session, raw: Any, currency: str, name: str = "amount") -> int:
    if isinstance(raw, float):
        raise PayloadError(f"{name} must not be a float")
    if not isinstance(raw, (str, int, Decimal)):
        raise PayloadError(f"{name} must be a decimal string")
    try:
        return parse_amount(raw, currency_exponent(session, currency))
    except AmountError as exc:
        raise PayloadError(f"{name}: {exc}") from exc


def _iso_time(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        return utcnow()
    try:
        if len(value) > 40:
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError) as exc:
        raise PayloadError(f"bad timestamp {value[:40]!r}") from exc
    return parsed


def _currency(data: Any) -> str:
    currency = _required_text(data, "currency", 3).upper()
    if not currency.isascii() or not currency.isalpha() or len(currency) != 3:
        raise PayloadError("currency must be a three-letter code")
    return currency


# ---------------------------------------------------------------- Wave


def verify_wave_signature(
    header: str | None,
    body: bytes,
    secret: str,
    now: float | None = None,
    tolerance: int = WAVE_SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """Return whether `Wave-Signature: t=…,v1=…` signs the body with the secret, at most `tolerance` seconds old."""
    if not header or not secret:
        return False
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1" and value:
            signatures.append(value.lower())
    if timestamp is None or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if not signatures:
        return False
    age = (time.time() if now is None else now) - int(timestamp)
    if age > tolerance or age < -tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).hexdigest()
    # Compare with every v1 (several while a secret is rotated) without stopping early.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    return any(matches)


def verify_wave_bearer(authorization: str | None, shared_secret: str) -> bool:
    """Return whether `Authorization: Bearer <shared secret>` carries the configured Wave shared secret."""
    if not authorization or not shared_secret:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), shared_secret.encode())


def account_parameter(value: Any) -> str | None:
    """Return the `?account=` a payment route was called with (the mutuelle's own URL), bounded; None when absent."""
    try:
        return check_text(value, "account", ACCOUNT_MAX) or None
    except InputError as exc:
        raise PayloadError(str(exc)) from exc


def wave_report(session: Session, event: Any, raw: str, account: str | None = None) -> Report | None:
    """Return the payment a Wave event reports, or None for events that are not a completed payment.

    The account paid: `account` (the `?account=` of the mutuelle's webhook URL), else the business name the event
    carries (`merchant_name`, or `business_name` on a checkout), matched against the accounts' display names.
    """
    if not isinstance(event, dict):
        raise PayloadError("event must be an object")
    kind = event.get("type")
    if kind not in WAVE_PAYMENT_EVENTS:
        return None
    data = _field(event, "data")
    if not isinstance(data, dict):
        raise PayloadError("data must be an object")
    currency = _currency(data)
    if kind == "checkout.session.completed":
        if data.get("payment_status") != "succeeded":
            return None
        txn_id = _required_text(data, "transaction_id", TXN_ID_MAX)
        reference = _text(data, "client_reference", REFERENCE_MAX)
        paid_at = _iso_time(data.get("when_completed"))
    else:
        txn_id = _required_text(data, "id", TXN_ID_MAX)
        custom = data.get("custom_fields") or {}
        reference = _text(custom, "reference", REFERENCE_MAX, label="custom_fields.reference")
        reference = reference or _text(data, "client_reference", REFERENCE_MAX)
        paid_at = _iso_time(data.get("when_created"))
    payer = _text(data, "sender_mobile", PAYER_MAX)
    account = account or _text(data, "merchant_name", ACCOUNT_MAX) or _text(data, "business_name", ACCOUNT_MAX)
    return Report(
        provider="wave",
        provider_txn_id=txn_id,
        amount=_amount(session, _field(data, "amount"), currency),
        currency=currency,
        payer_phone=payer,
        reference=reference,
        paid_at=paid_at,
        source=EvidenceSource.WEBHOOK,
        route=f"wave:{kind}",
        raw=raw,
        account=account,
    )


# ---------------------------------------------------------------- Safaricom Daraja C2B


def daraja_report(session: Session, payload: Any, raw: str) -> Report:
    """Return the payment of a Daraja C2B confirmation (amount "350.00" KES → 35000)."""
    if not isinstance(payload, dict):
        raise PayloadError("body must be an object")
    txn_id = _required_text(payload, "TransID", TXN_ID_MAX)
    paid_at = utcnow()
    trans_time = _text(payload, "TransTime", 14) or ""
    if trans_time:
        try:
            local = datetime.strptime(trans_time, "%Y%m%d%H%M%S").replace(tzinfo=DARAJA_TIMEZONE)
        except ValueError as exc:
            raise PayloadError(f"bad TransTime {trans_time!r}") from exc
        paid_at = local.astimezone(UTC).replace(tzinfo=None)
    return Report(
        provider="mpesa",
        provider_txn_id=txn_id,
        amount=_amount(session, _field(payload, "TransAmount"), "KES", "TransAmount"),
        currency="KES",
        # Masked or hashed (a 64-hex SHA-256) by Safaricom: stored in full, as sent.
        payer_phone=_text(payload, "MSISDN", PAYER_MAX),
        reference=_text(payload, "BillRefNumber", REFERENCE_MAX),
        paid_at=paid_at,
        source=EvidenceSource.WEBHOOK,
        route="daraja:confirm",
        raw=raw,
        account=_text(payload, "BusinessShortCode", ACCOUNT_MAX),  # the paybill or till the payer paid
    )


def daraja_amount_valid(session: Session, payload: Any) -> bool:
    """Return whether a validation request carries a positive KES amount."""
    try:
        _amount(session, _field(payload, "TransAmount"), "KES", "TransAmount")
    except PayloadError:
        return False
    return True


def is_known_account(session: Session, reference: str | None) -> bool:
    """Return whether an account reference names an open payment request, a household, a member or a network."""
    ref = clean_reference(reference)
    if not ref:
        return False
    if is_valid_reference(ref):
        request = session.scalar(
            select(PaymentRequest.id).where(
                PaymentRequest.reference == ref,
                PaymentRequest.status == RequestStatus.OPEN,
                PaymentRequest.expires_at > utcnow(),
            )
        )
        if request is not None:
            return True
    if session.scalar(select(Household.id).where(func.upper(Household.household_no) == ref)) is not None:
        return True
    if session.scalar(select(Member.id).where(func.upper(Member.member_no) == ref)) is not None:
        return True
    if session.scalar(select(Network.id).where(func.upper(Network.code) == ref).limit(1)) is not None:
        return True
    # A network's name as enrolled or an alias, however spaced or accented (networks are few).
    return any(squash(ref) in network.match_keys for network in session.scalars(select(Network)))


# ---------------------------------------------------------------- sandbox


def sandbox_report(session: Session, payload: Any, raw: str) -> Report:
    """Return the payment of a sandbox notification `{txn_id, amount, currency, phone, reference, account?}`."""
    if not isinstance(payload, dict):
        raise PayloadError("body must be an object")
    currency = _currency(payload)
    return Report(
        provider="sandbox",
        provider_txn_id=_required_text(payload, "txn_id", TXN_ID_MAX),
        amount=_amount(session, _field(payload, "amount"), currency),
        currency=currency,
        payer_phone=_text(payload, "phone", PAYER_MAX),
        reference=_text(payload, "reference", REFERENCE_MAX),
        paid_at=_iso_time(payload.get("paid_at")),
        source=EvidenceSource.WEBHOOK,
        route="sandbox",
        raw=raw,
        account=_text(payload, "account", ACCOUNT_MAX),
    )


# ---------------------------------------------------------------- forwarded operator texts


@dataclass(frozen=True)
class ForwardedText:
    """A text forwarded by a registered collection device: its payment, or why it is kept for review."""

    device: CollectionDevice
    sender: str
    text: str
    report: Report | None
    reason: str
    not_a_payment: bool = False


def find_device(session: Session, device_key: Any) -> CollectionDevice | None:
    """Return the active collection device registered under this key."""
    if not isinstance(device_key, str) or not device_key.strip():
        return None
    return session.scalar(
        select(CollectionDevice).where(
            CollectionDevice.device_key == device_key.strip(), CollectionDevice.active.is_(True)
        )
    )


def forwarded_text(
    session: Session, patterns: OperatorPatterns, device: CollectionDevice, payload: Any, raw: str
) -> ForwardedText:
    """Read a forwarded operator text into a provisional (or, from a trusted device, confirmed) payment."""
    sender = _required_text(payload, "sender", 40)
    if isinstance(payload.get("text"), dict | list):
        raise PayloadError("text must be a string")
    try:
        text = check_text(payload.get("text"), "text", MAX_FORWARDED_TEXT, required=True, multiline=True)
    except InputError as exc:
        raise PayloadError(str(exc)) from exc
    verdict = read_text(patterns, sender, text, list(device.operator_senders or []))
    if verdict.parsed is None:
        return ForwardedText(device, sender, text, None, verdict.reason, verdict.not_a_payment)
    parsed = verdict.parsed
    try:
        amount = parse_amount(parsed.amount_text, currency_exponent(session, parsed.currency))
    except AmountError as exc:
        return ForwardedText(device, sender, text, None, f"amount: {exc}")
    received_at = payload.get("received_at")
    paid_at = parsed.paid_at
    if paid_at is None:
        try:
            paid_at = _iso_time(received_at)
        except PayloadError:
            paid_at = utcnow()
    report = Report(
        provider=parsed.operator,
        provider_txn_id=parsed.txn_id,
        amount=amount,
        currency=parsed.currency,
        payer_phone=parsed.payer,
        reference=parsed.reference,
        paid_at=paid_at,
        source=EvidenceSource.SMS_FORWARD,
        route="sms_forward",
        raw=raw,
        device_id=device.id,
        scheme_id=device.scheme_id,
        mutuelle_id=device.mutuelle_id,  # the merchant phone is that mutuelle's
        confirms=device.trusted,
        # A forwarding app's retry carries the same text: the same report whatever its timestamps.
        repeat_key=json.dumps([device.device_key, sender, text]),
    )
    return ForwardedText(device, sender, text, report, "parsed")


@dataclass(frozen=True)
class ForwardIntake:
    """A forwarded text taken in: the stored payment's intake result, or None when kept for review."""

    forwarded: ForwardedText
    result: IntakeResult | None


def operator_patterns(path: str | None) -> OperatorPatterns:
    """Return the operator patterns of the configured file, else the shipped ones."""
    return load_patterns(path) if path else default_patterns()


def take_forwarded_text(
    session: Session, patterns: OperatorPatterns, device: CollectionDevice, payload: Any, raw: str
) -> ForwardIntake:
    """Store a forwarded operator text: its payment, or the text kept for review; the caller commits.

    Used by `POST /payments/sms-forward` (a forwarding app) and by texts a collection phone sends to the
    short code (`POST /sms/inbound`), so both paths read, trust and store texts the same way.
    """
    forwarded = forwarded_text(session, patterns, device, payload, raw)
    if forwarded.report is None:
        reviewed_at = utcnow() if forwarded.not_a_payment else None
        store_unparsed(session, device.id, forwarded.sender, forwarded.text, forwarded.reason, reviewed_at)
        return ForwardIntake(forwarded, None)
    return ForwardIntake(forwarded, record_report(session, forwarded.report))


def take_short_code_text(
    session: Session, patterns: OperatorPatterns, device: CollectionDevice, text: str, received_at: str | None
) -> ForwardIntake:
    """Store an operator text a collection phone sent to the short code by hand; the caller commits.

    A hand-forwarded text has lost the operator's sender name: it is read as coming from each sender the
    device is registered to forward, in turn, and the first reading as a payment is kept. The payment stays
    PROVISIONAL (unless the device is trusted) like any forwarded text.
    """
    senders = [str(sender) for sender in (device.operator_senders or [])] or [""]
    payloads = [{"sender": sender or "short-code", "text": text, "received_at": received_at} for sender in senders]
    for payload in payloads:
        if forwarded_text(session, patterns, device, payload, text).report is not None:
            return take_forwarded_text(session, patterns, device, payload, text)
    return take_forwarded_text(session, patterns, device, payloads[0], text)
