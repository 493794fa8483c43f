"""Phone numbers: one normalisation to E.164 for every channel (imports, USSD, SMS, payments, agents)."""

from __future__ import annotations

import functools

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


def normalise_phone(raw: str, country: str | None, *, allow_foreign: bool = False) -> str:
    """Return the E.164 form of a phone number dialled in `country`, or raise ValueError with the reason.

    Parsing with the region makes national forms (`771234567`) and the country's international
    prefix (`00221…` in Senegal) work. Numbers of another country are refused unless `allow_foreign`
    (a relative abroad may pay, but a member's phone belongs to the scheme's country).
    """
    text = raw.strip()
    if not text:
        raise ValueError("empty phone number")
    # A number written with its country code reads the same whatever the region: one cache entry for all.
    outcome = _parsed(text, None if text.startswith("+") else (country.upper() if country else None))
    if isinstance(outcome, int):  # a parse error
        if country is None and outcome == NumberParseException.INVALID_COUNTRY_CODE:
            raise ValueError("needs the country code (+…)")
        raise ValueError(_PARSE_REASONS.get(outcome, "not a phone number"))
    if outcome is None:
        where = f" for {country.upper()}" if country else ""
        raise ValueError(f"not a valid phone number{where}")
    e164, region, country_code = outcome
    if country and not allow_foreign and region != country.upper():
        raise ValueError(f"not a {country.upper()} number (+{country_code})")
    return e164


@functools.lru_cache(maxsize=8192)
def _parsed(text: str, region: str | None) -> tuple[str, str | None, int] | int | None:
    """Return (E.164, the number's region, its country code), the parse error type, or None when not valid.

    Cached: a reconcile batch reads each payer's phone several times (each scheme country, then the receipt).
    """
    try:
        parsed = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        return int(exc.error_type)
    if not phonenumbers.is_valid_number(parsed):
        return None
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(parsed), int(parsed.country_code or 0)


def normalise_many(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str | ValueError]:
    """Return the E.164 form, or the ValueError saying why there is none, of each (text, country) pair.

    What a helper process computes for an import reading ahead of its checks (`models.imports.member_file`).
    """
    normalised: dict[tuple[str, str], str | ValueError] = {}
    for text, country in pairs:
        try:
            normalised[(text, country)] = normalise_phone(text, country)
        except ValueError as exc:
            normalised[(text, country)] = exc
    return normalised
