"""Answer one AT hop: the session from Redis, the new input from `text`, the engine, effects once, one write.

Round trips per hop: one Redis GET, then one Redis SET; the database only when the session has no cached
data yet (the dial, a replay) or a screen needs data for the first time (eligibility, payments), or for an
effect. `text` is every input so far joined by `*`: the new input is what follows the stored `text`; the same
`text` again is a duplicate hop (the stored reply, nothing redone); a lost session or a `text` that does not
extend the stored one is replayed from the dial, and effects keyed on session + hop are not repeated.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from menus.engine import Effect, Reply, State, new_state, step
from menus.render import DEFAULT_LANGUAGE, apology
from menus.session_store import SessionStore, StoredSession

log = logging.getLogger(__name__)

MAX_HOPS = 64  # AT closes a session after ~3 minutes: far more inputs than that is not a phone
MAX_DATA_ROUNDS = 4


class MenuData(Protocol):
    """Where the engine's data comes from and its effects go."""

    def load(self, key: str, state: State) -> Any:
        """Return the value of a `state.data` key."""

    def apply(self, effect: Effect, key: str) -> bool:
        """Apply the effect unless its key was used already."""


@dataclass(frozen=True)
class Hop:
    """One AT request to `/ussd`."""

    session_id: str
    phone: str
    text: str


class SessionTooLong(ValueError):
    """More inputs than any real session has."""


def split_inputs(text: str) -> list[str]:
    """Return the inputs of an AT `text` (empty on the dial)."""
    return text.split("*") if text else []


def new_input(stored_text: str, text: str) -> str | None:
    """Return the input `text` adds to the stored text, or None when it does not extend it."""
    if stored_text == "":
        return text if text else None
    prefix = stored_text + "*"
    return text[len(prefix) :] if text.startswith(prefix) else None


def effect_key(session_id: str, hop: int, path: str) -> str:
    """Return the idempotency key of an effect of a hop: the session, the hop and the inputs that led to it."""
    digest = hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"ussd:{session_id[:150]}:{hop}:{digest}"


@dataclass
class Progress:
    """How far a hop got: the session language, for an apology if it fails later."""

    language: str = DEFAULT_LANGUAGE


def answer_hop(hop: Hop, store: SessionStore, data: MenuData, progress: Progress | None = None) -> str:
    """Return the reply to a hop (raises on failure; see `answer`)."""
    progress = progress or Progress()
    stored = store.load(hop.session_id)
    if stored is not None and stored.state.phone == hop.phone:
        progress.language = stored.language
        if stored.text == hop.text:
            return stored.reply
        extra = new_input(stored.text, hop.text)
        if extra is not None:
            if stored.state.hop >= MAX_HOPS:
                raise SessionTooLong(hop.session_id)
            reply, state = _advance(hop, stored.state, extra, hop.text, data, progress)
            store.save(hop.session_id, StoredSession(state, hop.text, reply.text))
            return reply.text
    inputs = split_inputs(hop.text)
    if len(inputs) > MAX_HOPS:
        raise SessionTooLong(hop.session_id)
    reply, state = _advance(hop, new_state(hop.phone), "", "", data, progress)
    for index, user_input in enumerate(inputs, start=1):
        reply, state = _advance(hop, state, user_input, "*".join(inputs[:index]), data, progress)
    store.save(hop.session_id, StoredSession(state, hop.text, reply.text))
    return reply.text


def answer(hop: Hop, store: SessionStore, data: MenuData) -> str:
    """Return the reply to a hop; on any failure an END apology in the session language, logged once."""
    progress = Progress()
    try:
        return answer_hop(hop, store, data, progress)
    except Exception as exc:  # noqa: BLE001 - a phone must never see a failure, only an apology
        log.warning("ussd: hop failed (session %s): %s", hop.session_id[:80], type(exc).__name__)
        return apology(progress.language)


def _advance(
    hop: Hop, state: State, user_input: str, path: str, data: MenuData, progress: Progress
) -> tuple[Reply, State]:
    """Step the engine once, loading the data it asks for, then apply its effects once."""
    for _ in range(MAX_DATA_ROUNDS):
        reply, nxt = step(state, user_input)
        if not reply.needs:
            break
        state = state.copy()
        for key in reply.needs:
            state.data[key] = data.load(key, state)
    else:
        raise RuntimeError("menu data still missing after loading it")
    progress.language = nxt.lang
    for effect in reply.effects:
        data.apply(effect, effect_key(hop.session_id, nxt.hop, path))
    return reply, nxt
