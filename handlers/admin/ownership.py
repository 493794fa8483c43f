"""The mutuelle a staff member gives what they create: a user's mutuelles, a token's, an agent's, a device's.

The choices are the mutuelles the member's session sees (models/views/scope.py), so a member kept to some mutuelles
can only grant those; one kept to one mutuelle gives it without choosing.
"""

from __future__ import annotations

from flask import request
from flask_login import current_user

from extensions import db
from handlers.admin.texts import gettext
from models.schemes.mutuelle import Mutuelle, list_mutuelles


class OwnershipError(ValueError):
    """The mutuelle(s) chosen on a form are not the member's to give."""


def grantable_mutuelles() -> list[Mutuelle]:
    """Return the mutuelles the signed-in member may give: theirs, or every mutuelle for a union's staff."""
    return list_mutuelles(db())


def chosen_mutuelles(field: str = "mutuelle") -> list[Mutuelle]:
    """Return the mutuelles ticked on the form (none: every mutuelle, which only a union's staff may give)."""
    by_code = {m.code: m for m in grantable_mutuelles()}
    codes = [code.strip() for code in request.form.getlist(field) if code.strip()]
    unknown = [code for code in codes if code not in by_code]
    if unknown:
        raise OwnershipError(
            gettext("%(field)s: not one of your mutuelles: %(codes)s", field=field, codes=", ".join(unknown)[:80])
        )
    if not codes and not current_user.sees_every_mutuelle:
        raise OwnershipError(gettext("Choose at least one of your mutuelles."))
    return [by_code[code] for code in dict.fromkeys(codes)]


def chosen_mutuelle(field: str = "mutuelle") -> Mutuelle | None:
    """Return the one mutuelle chosen for a token, agent or device (None: every mutuelle, for a union's staff).

    A member kept to one mutuelle gives theirs without choosing.
    """
    choices = grantable_mutuelles()
    if not request.form.get(field, "").strip() and not current_user.sees_every_mutuelle and len(choices) == 1:
        return choices[0]
    chosen = chosen_mutuelles(field)
    if len(chosen) > 1:
        raise OwnershipError(gettext("Choose one mutuelle."))
    return chosen[0] if chosen else None
