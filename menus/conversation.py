"""Answer one AT hop: the session from Redis, the new inputs from `text`, the engine, effects once, few writes.

Round trips per hop: one Redis `GETEX` (read + TTL renewal), none on the dial (`text` is "": a new session,
nothing to read; a duplicate dial is answered afresh, it has no effect); a `SET` only when the hop loaded
data or applied an effect, when it replayed `SAVE_AFTER_INPUTS` inputs or more, or when the session was
rebuilt (the dial always loads data: one `SET` and no `GETEX`). The database only when the session has no
cached data yet (the dial, which reads the households and their coverage, or a replay), when a screen needs
data for the first time (the payments), or for an effect (a language change, a payment request, a PIN check).

`text` is every input so far joined by `*`. The stored session is the state at some earlier `text` (the last
one saved); the new inputs are what follows it, replayed over the stored state by the pure engine. That is
the same computation as when each hop saved its state, because the engine is deterministic given the state
and its cached data, and every hop that changed the cached data or did a side effect was saved. The same
`text` as the stored one is a duplicate hop (the stored reply, nothing redone); a duplicate of an unsaved hop
replays to the same reply with no effect (none happened since the save). A lost session or a `text` that does
not extend the stored one is replayed from the dial, and effects keyed on session + hop are not repeated.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from menus.engine import Effect, Reply, State, new_state, secret_hops_after, step
from menus.render import DEFAULT_LANGUAGE, apology
from menus.session_store import SessionStore, StoredSession, mask_inputs

log = logging.getLogger(__name__)

MAX_HOPS = 64  # AT closes a session after ~3 minutes: far more inputs than that is not a phone
MAX_DATA_ROUNDS = 4
# A navigation hop replays the inputs typed since the last saved state; saving once this many are replayed
# bounds that work (a replayed input costs a render, ~0.1-0.3 ms; a SET one more Redis round trip).
SAVE_AFTER_INPUTS = 3
MAX_SESSION_ID_IN_KEY = 100


class MenuData(Protocol):
    """Where the engine's data comes from and its effects go."""

    def load(self, key: str, state: State) -> dict[str, Any]:
        """Return the value of a `state.data` key, keyed, with any other keys read along with it."""

    def apply(self, effect: Effect, key: str, state: State) -> Any:
        """Apply the effect unless its key was used already; return its outcome (the first one on a replay)."""


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


def effect_key(session_id: str, hop: int, path: str, secret_hops: Iterable[int] = ()) -> str:
    """Return the idempotency key of an effect of a hop: the session, the hop and the inputs that led to it.

    Inputs typed on secret screens (PINs, dates of birth) are masked before hashing: a short hash of a
    4-digit PIN would be found by trying them all. The key fits `effect_keys.key` and
    `payment_requests.caller_key` (160) whatever the session id's length.
    """
    masked = mask_secrets(path, secret_hops)
    digest = hashlib.sha256(masked.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    sid = session_id if len(session_id) <= MAX_SESSION_ID_IN_KEY else hashlib.sha256(session_id.encode()).hexdigest()
    return f"ussd:{sid}:{hop}:{digest}"


mask_secrets = mask_inputs  # the inputs typed on secret hops masked: effect keys and stored sessions alike


@dataclass
class Progress:
    """How far a hop got: the session language, for an apology if it fails later."""

    language: str = DEFAULT_LANGUAGE
    worked: bool = False  # data was loaded or an effect applied: the state must be saved


def answer_hop(hop: Hop, store: SessionStore, data: MenuData, progress: Progress | None = None) -> str:
    """Return the reply to a hop (raises on failure; see `answer`)."""
    progress = progress or Progress()
    stored = store.load(hop.session_id) if hop.text else None
    if stored is not None and stored.state.phone == hop.phone:
        progress.language = stored.language
        added = stored.added_inputs(hop.text, store.key)
        if added == []:
            return stored.reply
        if added is not None:
            if stored.state.hop + len(added) > MAX_HOPS:
                raise SessionTooLong(hop.session_id)
            state, path = stored.state, stored.text
            for index, user_input in enumerate(added, start=1):
                path = f"{path}*{user_input}" if path else user_input
                reply, state = _advance(hop, state, user_input, path, data, progress, render=index == len(added))
            if progress.worked or len(added) >= SAVE_AFTER_INPUTS:
                store.save(hop.session_id, StoredSession.at(state, hop.text, reply.text, store.key))
            return reply.text
    inputs = split_inputs(hop.text)
    if len(inputs) > MAX_HOPS:
        raise SessionTooLong(hop.session_id)
    reply, state = _advance(hop, new_state(hop.phone), "", "", data, progress, render=not inputs)
    for index, user_input in enumerate(inputs, start=1):
        path = "*".join(inputs[:index])
        reply, state = _advance(hop, state, user_input, path, data, progress, render=index == len(inputs))
    store.save(hop.session_id, StoredSession.at(state, hop.text, reply.text, store.key))
    return reply.text


def state_at(stored: StoredSession, text: str, key: bytes = b"") -> State | None:
    """Return the session's state at `text`: the inputs typed since the stored one replayed without data.

    For the end-of-session record (its last screen, its secret hops): the pure engine only, no data loaded
    and no effect applied, so it is None when `text` does not extend the stored text or a screen on the way
    needs data the session has not read.
    """
    added = stored.added_inputs(text, key)
    if added is None:
        return None
    if not added:
        return stored.state
    if stored.state.hop + len(added) > MAX_HOPS:
        return None
    state = stored.state
    for user_input in added:
        reply, state = step(state, user_input)
        if reply.needs:
            return None
    return state


def answer(hop: Hop, store: SessionStore, data: MenuData) -> str:
    """Return the reply to a hop; on any failure an END apology in the session language, logged once."""
    progress = Progress()
    try:
        return answer_hop(hop, store, data, progress)
    except Exception as exc:  # noqa: BLE001 - a phone must never see a failure, only an apology
        log.warning("ussd: hop failed (session %s): %s", hop.session_id[:80], type(exc).__name__)
        return apology(progress.language)


def _advance(
    hop: Hop, state: State, user_input: str, path: str, data: MenuData, progress: Progress, render: bool = True
) -> tuple[Reply, State]:
    """Step the engine once, loading the data and effect outcomes it asks for, then apply its other effects once.

    Only the hop's last input is rendered: the screens of the inputs replayed before it are never shown.
    """
    start = state

    def key() -> str:  # only a hop with an effect needs it (a hash): most replayed inputs have none
        return effect_key(hop.session_id, start.hop + 1, path, secret_hops_after(start))

    for _ in range(MAX_DATA_ROUNDS):
        reply, nxt = step(state, user_input, render=render)
        if not reply.needs:
            break
        progress.worked = True
        state = state.copy()
        outcomes = {effect.result: effect for effect in reply.effects if effect.result is not None}
        for need in reply.needs:
            if need in state.data:  # read along with an earlier need (the dial brings the caller and coverage)
                continue
            effect = outcomes.get(need)
            if effect is not None:
                state.data[need] = data.apply(effect, key(), state)
            else:
                state.data.update(data.load(need, state))
    else:
        raise RuntimeError("menu data still missing after loading it")
    progress.language = nxt.lang
    for effect in reply.effects:
        if effect.result is None:  # effects with an outcome were applied while stepping
            progress.worked = True
            data.apply(effect, key(), nxt)
    return reply, nxt
