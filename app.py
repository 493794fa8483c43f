"""The application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

import extensions
from config import INSTANCE_DIR, Settings
from logs import configure_logging


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings (defaults → environment → `config`), extensions, blueprints, CLI."""
    settings = Settings.from_env(overrides=config)
    configure_logging(settings.LOG_LEVEL, settings.secrets())
    INSTANCE_DIR.mkdir(exist_ok=True)

    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    app.config.update(settings.as_flask_config())
    extensions.init_app(app, settings)

    from handlers import health, payments, sms

    app.register_blueprint(health.bp)
    app.register_blueprint(sms.bp)
    app.register_blueprint(payments.bp)

    from commands import access as access_commands
    from commands import db as db_commands
    from commands import members as member_commands
    from commands import payments as payment_commands
    from commands import schemes as scheme_commands
    from commands import sms as sms_commands

    app.cli.add_command(db_commands.db_group)
    app.cli.add_command(scheme_commands.schemes_group)
    app.cli.add_command(sms_commands.sms_group)
    app.cli.add_command(payment_commands.payments_group)
    app.cli.add_command(payment_commands.reconcile_group)
    app.cli.add_command(member_commands.members_group)
    app.cli.add_command(access_commands.api_token_group)
    app.cli.add_command(access_commands.agents_group)
    return app
