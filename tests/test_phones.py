"""Phone numbers are stored in E.164, whatever way an enrolment agent or a phone wrote them."""

from __future__ import annotations

import re

import pytest

from models.members.phones import normalise_phone


@pytest.mark.parametrize(
    ("raw", "country", "e164"),
    [
        ("771234567", "SN", "+221771234567"),  # national form, as typed on a form
        ("77 123 45 67", "SN", "+221771234567"),
        ("77-123-45-67", "SN", "+221771234567"),
        ("+221 78 111 22 33", "SN", "+221781112233"),
        ("00221761234500", "SN", "+221761234500"),  # 00 is Senegal's international prefix
        ("221771234567", "SN", "+221771234567"),  # country code without the +
        ("+221771234567", "sn", "+221771234567"),
        (" 70 123 45 67 ", "SN", "+221701234567"),
        ("012 345 678", "KH", "+85512345678"),  # Cambodia keeps its trunk 0
        ("+855 12 345 678", "KH", "+85512345678"),
        ("0712345678", "KE", "+254712345678"),
        ("+221771234567", None, "+221771234567"),
    ],
)
def test_accepted_forms(raw: str, country: str | None, e164: str) -> None:
    assert normalise_phone(raw, country) == e164


@pytest.mark.parametrize(
    ("raw", "country", "reason"),
    [
        ("", "SN", "empty"),
        ("   ", "SN", "empty"),
        ("12345", "SN", "not a valid phone number for SN"),
        ("0771234567", "SN", "not a valid phone number for SN"),  # Senegal has no trunk 0
        ("7712345678", "SN", "not a valid phone number for SN"),
        ("abc", "SN", "not a phone number"),
        ("+33 6 12 34 56 78", "SN", "not a SN number (+33)"),  # valid, but French
        ("771234567", None, "needs the country code"),  # national form needs a country
    ],
)
def test_refused_forms(raw: str, country: str | None, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalise_phone(raw, country)


def test_foreign_numbers_when_allowed() -> None:
    # A relative in France paying for a household in Senegal.
    assert normalise_phone("+33 6 12 34 56 78", "SN", allow_foreign=True) == "+33612345678"
    assert normalise_phone("0033612345678", "SN", allow_foreign=True) == "+33612345678"
