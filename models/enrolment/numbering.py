"""Household and member numbers issued at validation: the scheme's pattern, a serial per mutuelle, a check digit.

The check digit is the Damm digit of the serial (the one payment references carry): it catches every
single-digit error and every swap of adjacent digits a collector or a member may make typing the number.
Member numbers are the household number followed by `-NN`, as the member import requires (the head `-01`).
"""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.enrolment.tables import Enrolment
from models.members.household import Household
from models.payments.references import damm_check_digit
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme

_FIELD = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def household_number(pattern: str, scheme: Scheme, mutuelle: Mutuelle, serial: int) -> str:
    """Return the household number of a serial in the scheme's pattern, upper case, with its check digit."""
    check = damm_check_digit(str(serial))
    return pattern.format(scheme=scheme.code, mutuelle=mutuelle.code, serial=serial, check=check).upper()


def member_number(household_no: str, index: int) -> str:
    """Return the number of a household's member: the household number and `-NN` (the head is `-01`)."""
    return f"{household_no}-{index:02d}"


def has_valid_check_digit(pattern: str, number: str) -> bool:
    """Return whether a household number in this pattern carries the right check digit for its serial."""
    parts: list[str] = []
    last = 0
    for match in _FIELD.finditer(pattern):
        parts.append(re.escape(pattern[last : match.start()].upper()))
        name = match.group(1)
        parts.append({"serial": r"(?P<serial>\d+)", "check": r"(?P<check>\d)"}.get(name, r"[A-Z0-9-]+?"))
        last = match.end()
    parts.append(re.escape(pattern[last:].upper()))
    found = re.fullmatch("".join(parts), number.upper())
    if found is None:
        return False
    return damm_check_digit(str(int(found.group("serial")))) == found.group("check")


def next_household_number(session: Session, scheme: Scheme, mutuelle: Mutuelle) -> tuple[int, str]:
    """Return the mutuelle's next serial and its household number, skipping numbers a household already has.

    Call it holding the mutuelle's lock (`validate.lock_numbering`): two validations then draw one serial each.
    The serial stays unique per mutuelle (a constraint) should anything else write one. Numbers imported from
    elsewhere in the same pattern are stepped over.
    """
    pattern = scheme.household_number_pattern
    last = session.scalar(select(func.max(Enrolment.serial)).where(Enrolment.mutuelle_id == mutuelle.id))
    serial = int(last or 0) + 1
    while True:
        number = household_number(pattern, scheme, mutuelle, serial)
        taken = session.scalar(select(Household.id).where(func.upper(Household.household_no) == number))
        if taken is None:
            return serial, number
        serial += 1
