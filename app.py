"""The application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

import extensions
import redis_keys
from config import INSTANCE_DIR, Settings
from handlers.ussd import install_fast_path
from logs import configure_logging


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings (defaults → environment → `config`), extensions, blueprints, CLI, USSD fast path."""
    settings = Settings.from_env(overrides=config)
    configure_logging(settings.LOG_LEVEL, settings.secrets())
    redis_keys.use_prefix(settings.REDIS_KEY_PREFIX)
    INSTANCE_DIR.mkdir(exist_ok=True)

    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    # `<int:…>` ids beyond a 32-bit INTEGER are no row (404), not a database error.
    app.url_map.converters["int"] = BoundedIntConverter
    app.config.update(settings.as_flask_config())
    extensions.init_app(app, settings)

    register_blueprints(app)
    register_commands(app)
    if settings.TRUSTED_PROXIES:
        # Behind N proxies: the client address (sign-in limits, DARAJA_ALLOWED_IPS), scheme and host they forward.
        hops = settings.TRUSTED_PROXIES
        # Flask's documented way to add WSGI middleware replaces the `wsgi_app` method: mypy's method-assign.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    install_fast_path(app)
    return app


class BoundedIntConverter(IntegerConverter):
    """Werkzeug's `int` converter limited to what an INTEGER id column holds."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def register_blueprints(app: Flask) -> None:
    """Register one blueprint per channel; machine callbacks have their own auth, so no CSRF there."""
    from handlers import admin, api, collect, enrolments, fhir, health, payments, sms, ussd

    # The collectors' form (`collect`) sends no form posts and holds no cookie: its key goes as a Bearer header.
    machine = (health, sms, ussd, payments, api, fhir, enrolments, collect)
    for module in machine:
        extensions.csrf.exempt(module.bp)
        app.register_blueprint(module.bp)
    admin.register(app)
    api.register_limits(app, api.LIMITED_ENDPOINTS + fhir.LIMITED_ENDPOINTS + enrolments.LIMITED_ENDPOINTS)
    extensions.scope_to_blueprint(app, admin.bp.name)


def register_commands(app: Flask) -> None:
    """Register the `flask --app app …` command groups."""
    from commands import (
        access,
        admin,
        campaigns,
        db,
        demo,
        enrolments,
        members,
        mutuelles,
        networks,
        payments,
        reports,
        schemes,
        sms,
        ussd,
    )

    for group in (
        db.db_group,
        schemes.schemes_group,
        mutuelles.mutuelles_group,
        sms.sms_group,
        members.members_group,
        access.api_token_group,
        access.agents_group,
        access.devices_group,
        demo.demo_group,
        ussd.ussd_command,
        payments.payments_group,
        payments.reconcile_group,
        admin.admin_group,
        enrolments.collectors_group,
        enrolments.enrolments_group,
        campaigns.campaigns_group,
        networks.networks_group,
        reports.reports_group,
    ):
        app.cli.add_command(group)
