"""Logging for every process: one line per event, secrets, PINs and phone numbers redacted."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TextIO

PHONE_RE = re.compile(r"(?<![\w])(\+|00)?(\d[\d \-]{6,16}\d)(?![\w])")
TOKEN_PARAM_RE = re.compile(
    r"(?i)(token|api_key|apikey|secret|password|authorization)([=:]\s*|\"\s*:\s*\")(Bearer\s+)?[^&\s\"',]+"
)
PIN_RE = re.compile(r"(?i)\b(pin)([=:\s]+)\d{3,8}\b")


def mask_phone(phone: str | None) -> str:
    """Return a phone number with all but its first four and last two characters hidden."""
    if not phone:
        return ""
    if len(phone) <= 6:
        return "*" * len(phone)
    return phone[:4] + "*" * (len(phone) - 6) + phone[-2:]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return the text with secrets, token parameters, PINs and phone-like digit runs masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    text = TOKEN_PARAM_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]", text)
    text = PIN_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}****", text)

    def _phone(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if len(digits) < 8:
            return match.group(0)
        return mask_phone(match.group(0))

    return PHONE_RE.sub(_phone, text)


class RedactingFilter(logging.Filter):
    """Rewrite each record's message so nothing sensitive reaches a handler."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message, self.secrets)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, redacted, so handlers print the safe text only.
            formatted = logging.Formatter().formatException(record.exc_info)
            record.msg = f"{record.msg}\n{redact(formatted, self.secrets)}"
            record.exc_info = None
            record.exc_text = None
        return True


class _RootHandler(logging.StreamHandler[TextIO]):
    """The stream handler `configure_logging` installs on the root logger (found again by a second call)."""


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Install one redacting stream handler on the root logger (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    redacting = RedactingFilter(secrets)
    for handler in root.handlers:
        if isinstance(handler, _RootHandler):
            handler.filters = [redacting]
            return
    handler = _RootHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(redacting)
    root.addHandler(handler)
    # Werkzeug's dev-server access log prints the query string (callback token): same filter.
    for name in ("werkzeug", "gunicorn.access", "gunicorn.error", "rq.worker", "rq.cron"):
        logging.getLogger(name).addFilter(redacting)
    # rq installs its own handler on these loggers; propagating would print every line twice.
    for name in ("rq.worker", "rq.cron"):
        logging.getLogger(name).propagate = False
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
