"""How an SMS leaves the building: a small transport interface, Africa's Talking, and a console outbox.

Another aggregator (AT does not cover Cambodia) is one more class with a `send` method.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from africastalking.Service import AfricasTalkingException, validate_phone
from africastalking.SMS import SMSService
from urllib3.exceptions import ProtocolError

from config import Settings
from logs import mask_phone
from models.base import MessageStatus

log = logging.getLogger(__name__)

AT_CONNECT_TIMEOUT_SECONDS = 3.05
# AT per-recipient codes for "accepted": 100 Processed, 101 Sent, 102 Queued.
AT_ACCEPTED_CODES = frozenset({100, 101, 102})


@dataclass(frozen=True)
class SendResult:
    """What the provider answered for one message."""

    status: MessageStatus
    provider_message_id: str | None = None
    status_code: int | None = None
    cost: str | None = None
    failure_reason: str | None = None


class TransientSendError(Exception):
    """The provider certainly did not take the message (connection refused, HTTP 5xx): safe to retry."""


class UncertainSendError(Exception):
    """The provider may have taken the message (read timeout): never resend, wait for the delivery report."""


class SmsTransport(Protocol):
    """Anything that can hand one SMS to a provider."""

    name: str

    def send(self, message: str, to: str, sender_id: str | None) -> SendResult:
        """Send the message to one E.164 number; raise TransientSendError or UncertainSendError."""
        ...


class AtHttpError(AfricasTalkingException):  # type: ignore[misc]  # africastalking ships no types: Any base
    """A non-2xx answer from AT, with its HTTP status (the SDK keeps only the body)."""

    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(f"HTTP {status_code}: {body[:150]}")
        self.status_code = status_code


class _SMSService(SMSService):  # type: ignore[misc]  # africastalking ships no types: Any base
    """The SDK's SMS service (URL, form fields, sandbox host) with the HTTP status kept on errors."""

    def _make_request(
        self,
        url: str,
        method: str,
        headers: dict[str, str],
        data: dict[str, Any],
        params: dict[str, Any] | None,
        callback: Any = None,
        timeout: Any = None,
    ) -> Any:
        response = requests.request(method, url, headers=headers, data=data, params=params, timeout=timeout)
        if not 200 <= response.status_code < 300:
            raise AtHttpError(response.status_code, response.text)
        return response.json()


class AfricasTalkingTransport:
    """Send through Africa's Talking with its Python SDK; username `sandbox` uses AT's sandbox."""

    name = "africastalking"

    def __init__(self, username: str, api_key: str, timeout_seconds: float = 10) -> None:
        self._service = _SMSService(username, api_key)
        self._timeout = (AT_CONNECT_TIMEOUT_SECONDS, timeout_seconds)

    def send(self, message: str, to: str, sender_id: str | None) -> SendResult:
        """Send one SMS and return AT's answer for the recipient."""
        if not validate_phone(to):
            return SendResult(MessageStatus.REJECTED, status_code=403, failure_reason="InvalidPhoneNumber")
        try:
            answer = self._service.send(message, [to], sender_id=sender_id or None, timeout=self._timeout)
        except requests.ReadTimeout as exc:
            raise UncertainSendError("read timeout: AT may have the message") from exc
        except requests.ConnectionError as exc:
            if exc.args and isinstance(exc.args[0], ProtocolError):
                # The connection broke after the request went out: AT may have it.
                raise UncertainSendError(f"connection lost after sending: {type(exc.args[0]).__name__}") from exc
            raise TransientSendError(f"cannot reach AT: {type(exc).__name__}") from exc
        except AtHttpError as exc:
            if exc.status_code >= 500:
                raise TransientSendError(str(exc)) from exc
            return SendResult(MessageStatus.REJECTED, status_code=exc.status_code, failure_reason=str(exc))
        except ValueError as exc:  # a 2xx whose body is not JSON: AT took the request
            raise UncertainSendError("unreadable answer from AT") from exc
        return parse_at_answer(answer)


def parse_at_answer(answer: Any) -> SendResult:
    """Return the result for the first recipient of an AT `SMS.send` answer."""
    try:
        data = answer["SMSMessageData"]
        recipients = data.get("Recipients") or []
    except (KeyError, TypeError, AttributeError) as exc:
        raise UncertainSendError("unexpected answer from AT") from exc
    if not recipients:
        # Message-level refusal (e.g. "InvalidSenderId"): nobody was sent anything.
        return SendResult(MessageStatus.REJECTED, failure_reason=str(data.get("Message") or "no recipient")[:200])
    first = recipients[0]
    code = _int_or_none(first.get("statusCode"))
    message_id = first.get("messageId")
    if message_id in (None, "", "None"):
        message_id = None
    cost = first.get("cost")
    if first.get("status") == "Success" or code in AT_ACCEPTED_CODES:
        return SendResult(MessageStatus.SENT, provider_message_id=message_id, status_code=code, cost=cost)
    return SendResult(
        MessageStatus.REJECTED,
        provider_message_id=message_id,
        status_code=code,
        cost=cost,
        failure_reason=str(first.get("status") or "rejected")[:200],
    )


class ConsoleTransport:
    """Development outbox: log the message instead of sending it, and say so."""

    name = "console"

    def send(self, message: str, to: str, sender_id: str | None) -> SendResult:
        """Log the message as not sent."""
        log.warning("CONSOLE OUTBOX (not sent) to %s from %s: %s", mask_phone(to), sender_id or "-", message)
        return SendResult(MessageStatus.NOT_SENT, failure_reason="console outbox: AT credentials not configured")


def transport_from_settings(settings: Settings) -> SmsTransport:
    """Return Africa's Talking when its credentials are set, else the console outbox."""
    if settings.AT_USERNAME and settings.AT_API_KEY:
        return AfricasTalkingTransport(settings.AT_USERNAME, settings.AT_API_KEY, settings.AT_TIMEOUT_SECONDS)
    return ConsoleTransport()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
