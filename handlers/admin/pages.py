"""The overview and queue-health pages."""

from __future__ import annotations

import logging

from flask import render_template
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError

from extensions import db, redis, settings
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.texts import gettext
from models.base import StaffRole, utcnow
from models.views.reports import overview as overview_figures
from workers.queue_health import heartbeat_time, queue_depth, queue_health

log = logging.getLogger(__name__)


@bp.get("/")
@role_required(StaffRole.VIEWER)
def overview() -> ResponseReturnValue:
    """Show collections, matching, suspense and conflicts, SMS failures and queue depth."""
    figures = overview_figures(db(), utcnow())
    try:
        depth: int | None = queue_depth(redis(), settings().RQ_QUEUE)
    except RedisError as exc:
        log.warning("overview: Redis unreachable (%s)", type(exc).__name__)
        depth = None
    return render_template("admin/overview.html", figures=figures, queue_depth=depth, queue=settings().RQ_QUEUE)


@bp.get("/queues")
@role_required(StaffRole.VIEWER, every_mutuelle=True)
def queues() -> ResponseReturnValue:
    """Show RQ queues with started, failed and scheduled counts, failed jobs, workers and the clock heartbeat."""
    try:
        health = queue_health(redis(), (settings().RECONCILE_QUEUE, settings().RQ_QUEUE))
    except RedisError as exc:
        log.warning("queues: Redis unreachable (%s)", type(exc).__name__)
        return render_template("admin/queues.html", health=None, error=gettext("Redis does not answer.")), 503
    return render_template(
        "admin/queues.html", health=health, heartbeat_at=heartbeat_time(health.heartbeat_age_seconds), error=None
    )
