"""Normalisation rules of payment intake, as tables: amounts, phones, Wave signatures, operator patterns."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.payments.intake import fields_hash, phones_agree
from models.payments.operator_sms import PatternFileError, default_patterns, load_patterns, normalise_text, read_text
from models.payments.sources import verify_wave_bearer, verify_wave_signature
from models.schemes.amounts import AmountError, parse_amount


@pytest.mark.parametrize(
    ("raw", "exponent", "minor"),
    [
        ("350.00", 2, 35000),
        ("3,500.00", 2, 350000),
        ("3.500", 0, 3500),
        ("3500.0", 0, 3500),
        ("8,000", 0, 8000),
        ("120,500", 0, 120500),
        ("1.234.567", 0, 1234567),
        ("1.234.567,50", 2, 123456750),
        ("7000", 0, 7000),
        ("350", 2, 35000),
        ("0.5", 2, 50),
        (7000, 0, 7000),
        (Decimal("350.00"), 2, 35000),
    ],
)
def test_amounts_in_minor_units(raw: str | int | Decimal, exponent: int, minor: int) -> None:
    assert parse_amount(raw, exponent) == minor


@pytest.mark.parametrize(
    ("raw", "exponent"),
    [
        ("3500.5", 0),
        ("350.5.5", 2),
        ("350.123,456", 2),
        ("0", 0),
        ("-5", 0),
        ("abc", 0),
        ("", 0),
        ("1,2,3", 0),
        ("1.2.3,4.5", 2),
    ],
)
def test_inexact_amounts_are_refused(raw: str, exponent: int) -> None:
    with pytest.raises(AmountError):
        parse_amount(raw, exponent)


@given(st.integers(min_value=1, max_value=10**12))
def test_grouped_amounts_read_back(value: int) -> None:
    assert parse_amount(f"{value:,}", 0) == value
    assert parse_amount(f"{value:,}".replace(",", "."), 0) == value
    assert parse_amount(f"{value // 100:,}.{value % 100:02d}", 2) == value


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        ("+221771234567", "771234567", True),
        ("254708374149", "0708374149", True),
        ("25470****149", "254708374149", True),
        ("+85512345678", "012345678", True),
        ("+221771234567", "+221760000000", False),
        ("0708374149", "0701234567", False),
        (None, "771234567", True),
        ("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "254708374149", True),
    ],
)
def test_payer_phones_compared_on_what_both_show(a: str | None, b: str, agree: bool) -> None:
    assert phones_agree(a, b) is agree


def test_fields_hash_ignores_presentation() -> None:
    assert fields_hash(3500, "xof", " 4827315 ", "+221 77 123 45 67") == fields_hash(
        3500, "XOF", "4827315", "+221771234567"
    )
    assert fields_hash(3500, "XOF", "4827315", None) != fields_hash(3501, "XOF", "4827315", None)


def _sign(t: int, body: bytes, secret: str = "s") -> str:
    return hmac.new(secret.encode(), str(t).encode() + body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("header_at", "now", "ok"),
    [(1000, 1000, True), (1000, 1300, True), (1000, 1301, False), (1400, 1000, False)],
)
def test_wave_signature_freshness(header_at: int, now: int, ok: bool) -> None:
    body = b'{"id":"EV_1"}'
    assert verify_wave_signature(f"t={header_at},v1={_sign(header_at, body)}", body, "s", now=now) is ok


def test_wave_signature_needs_the_secret_and_a_v1() -> None:
    body = b"{}"
    assert not verify_wave_signature(f"t=1000,v1={_sign(1000, body)}", body, "", now=1000)
    assert not verify_wave_signature("t=1000", body, "s", now=1000)
    assert verify_wave_signature(f"t=1000, v1=dead, v1={_sign(1000, body).upper()}", body, "s", now=1000)


def test_wave_bearer() -> None:
    assert verify_wave_bearer("Bearer abc", "abc")
    assert not verify_wave_bearer("Bearer abd", "abc")
    assert not verify_wave_bearer("Basic abc", "abc")
    assert not verify_wave_bearer("Bearer abc", "")


def test_text_normalisation() -> None:
    assert normalise_text("Vous avez reçu\u00a0 3.500F.  Réf.") == "Vous avez recu 3.500F. Ref."


def test_multipart_text_joined_with_newlines_still_reads() -> None:
    text = "RKTQDM7W6S Confirmed.You have received Ksh350.00 from\nWANJIRU KAMAU 0708374149 on 20/11/26 at 10:41 AM"
    verdict = read_text(default_patterns(), "MPESA", text)
    assert verdict.parsed is not None and verdict.parsed.txn_id == "RKTQDM7W6S"


@given(st.text(max_size=300))
def test_any_text_gets_a_verdict(text: str) -> None:
    verdict = read_text(default_patterns(), "Wave", text)
    assert (verdict.parsed is None) == (verdict.reason != "parsed")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[operators.x]\ncurrency='XOF'\npatterns=['(?P<txn_id>a)(?P<amount>1)']", "senders"),
        ("[operators.x]\nsenders=['X']\ncurrency='XOF'\npatterns=['(?P<txn_id>a']", "patterns[0]"),
        ("[operators.x]\nsenders=['X']\ncurrency='XOF'\npatterns=['(?P<txn_id>a)']", "amount"),
        ("x = 1", "no [operators"),
    ],
)
def test_bad_pattern_file_is_refused_naming_the_entry(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PatternFileError, match=problem.replace("[", r"\[")):
        load_patterns(path)
