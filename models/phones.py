"""Phone numbers: one normalisation to E.164 for every channel (imports, USSD, SMS, payments, agents)."""

from __future__ import annotations

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
    try:
        parsed = phonenumbers.parse(text, country.upper() if country else None)
    except NumberParseException as exc:
        if country is None and exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            raise ValueError("needs the country code (+…)") from exc
        raise ValueError(_PARSE_REASONS.get(exc.error_type, "not a phone number")) from exc
    if not phonenumbers.is_valid_number(parsed):
        where = f" for {country.upper()}" if country else ""
        raise ValueError(f"not a valid phone number{where}")
    region = phonenumbers.region_code_for_number(parsed)
    if country and not allow_foreign and region != country.upper():
        raise ValueError(f"not a {country.upper()} number (+{parsed.country_code})")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
