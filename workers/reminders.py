"""The clock's reminder job: thin wrapper around `models.messaging.reminders`."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from models.base import utcnow
from models.messaging.reminders import send_due_reminders
from workers import runtime
from workers.clock_jobs import household_window
from workers.clock_runs import run_batched

log = logging.getLogger(__name__)


def send_reminders() -> dict[str, Any]:
    """Queue the renewal reminders due now (idempotent: each is sent once), a window of households a batch."""

    def batch(session: Session, after: int) -> tuple[int, int | None]:
        upto = household_window(session, after)
        return send_due_reminders(session, utcnow(), runtime.settings().USSD_SERVICE_CODE, after, upto), upto

    report = run_batched("send_reminders", batch, send_reminders)
    log.info("reminders: %s queued", report.done)
    return report.as_dict()
