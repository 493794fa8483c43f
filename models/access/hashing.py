"""Argon2 hashes for staff passwords and agent PINs."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# Passwords: argon2-cffi's defaults (RFC 9106 low-memory profile).
_PASSWORDS = PasswordHasher()
# PINs: OWASP's minimum argon2id profile (19 MiB, t=2). A 4-6 digit PIN falls to an offline search
# whatever the cost, so the lockout is the real defence; a cheaper hash keeps a USSD hop fast.
_PINS = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    """Return the argon2 hash of a staff password."""
    return _PASSWORDS.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Return whether the password matches the hash (False for a malformed hash)."""
    return _verify(_PASSWORDS, password_hash, password)


def password_needs_rehash(password_hash: str) -> bool:
    """Return whether the hash was made with weaker parameters than today's."""
    return _PASSWORDS.check_needs_rehash(password_hash)


def hash_pin(pin: str) -> str:
    """Return the argon2 hash of an agent PIN."""
    return _PINS.hash(pin)


def verify_pin(pin_hash: str, pin: str) -> bool:
    """Return whether the PIN matches the hash (False for a malformed hash)."""
    return _verify(_PINS, pin_hash, pin)


def _verify(hasher: PasswordHasher, encoded: str, secret: str) -> bool:
    try:
        return hasher.verify(encoded, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
