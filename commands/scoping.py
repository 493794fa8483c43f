"""The `--mutuelle CODE` option of the CLI: create a token, agent or device for one mutuelle, or list only its rows.

A listing kept to a mutuelle marks the command's session with `scope_session`, the one place where what a reader
kept to some mutuelles may see is enforced (admin pages, API tokens and agents alike).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from sqlalchemy import select

from extensions import db
from models.schemes.mutuelle import Mutuelle, find_mutuelle
from models.views.scope import scope_session

Command = TypeVar("Command", bound=Callable[..., Any])
EVERY_MUTUELLE = "all"


def mutuelle_option(help_text: str) -> Callable[[Command], Command]:
    """Return the `--mutuelle CODE` option (passed as `mutuelle`)."""
    return click.option("--mutuelle", "mutuelle", default=None, metavar="CODE", help=help_text)


def mutuelle_id_of(code: str | None) -> int | None:
    """Return the id of the mutuelle a `--mutuelle` names (None without one); fail the command for an unknown code."""
    if code is None:
        return None
    mutuelle = find_mutuelle(db(), code)
    if mutuelle is None:
        known = ", ".join(db().scalars(select(Mutuelle.code).order_by(Mutuelle.code))) or "none loaded"
        raise click.ClickException(f"no mutuelle {code} (known: {known})")
    return mutuelle.id


def scope_to(code: str | None) -> None:
    """Keep the command's session to the mutuelle a `--mutuelle` names (every mutuelle without one)."""
    mutuelle_id = mutuelle_id_of(code)
    if mutuelle_id is not None:
        scope_session(db(), [mutuelle_id])


def mutuelle_codes() -> dict[int, str]:
    """Return the code of each mutuelle by id (read before the session is scoped or after: its own are kept)."""
    return dict(db().execute(select(Mutuelle.id, Mutuelle.code)).tuples().all())


def mutuelle_label(codes: dict[int, str], mutuelle_id: int | None) -> str:
    """Return how a listing names a row's mutuelle: its code, or `all` for a row of every mutuelle."""
    return EVERY_MUTUELLE if mutuelle_id is None else codes.get(mutuelle_id, str(mutuelle_id))
