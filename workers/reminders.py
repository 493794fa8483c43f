"""The clock's reminder job: thin wrapper around `models.messaging.reminders`."""

from __future__ import annotations

import logging

from models.base import utcnow
from models.messaging.reminders import send_due_reminders
from workers import runtime

log = logging.getLogger(__name__)


def send_reminders() -> int:
    """Queue the renewal reminders due now (idempotent: each is sent once); return how many were queued."""
    with runtime.job_session() as session:
        queued = send_due_reminders(session, utcnow(), runtime.settings().USSD_SERVICE_CODE)
    log.info("reminders: %s queued", queued)
    return queued
