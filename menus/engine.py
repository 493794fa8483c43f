"""The USSD engine: a pure `step(state, input) -> (reply, state)` over menu trees that are data.

A tree (one module per tree, e.g. `menus.member`) lists its screens and its transitions, like
pytransitions' states and transitions. `step` does no I/O: when a screen needs data that is not in
`state.data` it answers with `Reply.needs` and the unchanged state, and the caller loads the data and
steps again; side effects come back as `Reply.effects` for the caller to apply once per session and hop.
An effect whose outcome the next screen shows (a PIN check, a payment request) names a `result` key: `step`
answers with it in `Reply.needs` (and the effect in `Reply.effects`) until the caller has applied the effect
and put its outcome in `state.data[result]`, exactly like data to load.

Free input (a member number, a PIN, an amount) is taken by an `INPUT` transition whose action validates it
and raises `Invalid` to re-ask the screen with a hint.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from menus.render import BACK_KEY, HOME_KEY, MORE_KEY, Layout, Msg, Text, render_layout

TREES = ("member",)
AUTO = ""  # trigger of a transition taken without input (from an `auto` screen)
CHOICE = "<choice>"  # trigger matching any numbered item of a screen's view
INPUT = "<input>"  # trigger matching any other non-empty input; the action gets the text
MAX_AUTO_MOVES = 8


@dataclass(frozen=True)
class Option:
    """A fixed numbered choice of a screen."""

    key: str
    label: str


@dataclass(frozen=True)
class Item:
    """A line of a screen's list; with a key it is a choice whose `value` goes to the transition's action."""

    text: Text
    key: str | None = None
    value: Any = None


@dataclass(frozen=True)
class View:
    """The dynamic part of a screen built from the state: header lines, list items, and notes (dropped first)."""

    header: Sequence[Text] = ()
    items: Sequence[Item] = ()
    notes: Sequence[Text] = ()


@dataclass(frozen=True)
class Screen:
    """A screen: its title, fixed options, the view that fills it, the data it needs, and its kind."""

    name: str
    title: str = ""
    options: tuple[Option, ...] = ()
    view: str | None = None
    needs: tuple[str, ...] = ()
    auto: bool = False  # no display: leave at once through its AUTO transitions
    end: bool = False  # closes the session (END)
    secret: bool = False  # the input typed here is a PIN or a date of birth: masked in records


@dataclass(frozen=True)
class Transition:
    """Leave `source` on `trigger` for `dest` when every condition holds, running `action` first."""

    source: str
    trigger: str
    dest: str
    conditions: tuple[str, ...] = ()
    action: str | None = None


@dataclass(frozen=True)
class Effect:
    """A side effect for the caller to apply once per session and hop (e.g. a language change).

    With `result`, the caller stores the effect's outcome in `state.data[result]` before the step completes.
    """

    kind: str
    target: int
    value: str
    result: str | None = None


class Invalid(ValueError):
    """An action refuses the input: the screen is asked again with the hint (a message id) or the generic one."""

    def __init__(self, hint: str | None = None) -> None:
        super().__init__(hint or "invalid input")
        self.hint = hint


ViewFn = Callable[["State"], View]
ConditionFn = Callable[["State"], bool]
ActionFn = Callable[["State", Any], tuple["State", list[Effect]]]
NeedsFn = Callable[[str, "State"], list[str]]
DecodeFn = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Tree:
    """A menu tree: screens and transitions as data, plus the named views, conditions and actions they use."""

    name: str
    entry: str
    home: str
    screens: tuple[Screen, ...]
    transitions: tuple[Transition, ...]
    views: Mapping[str, ViewFn] = field(default_factory=dict)
    conditions: Mapping[str, ConditionFn] = field(default_factory=dict)
    actions: Mapping[str, ActionFn] = field(default_factory=dict)
    data_keys: NeedsFn = lambda need, state: [need]
    decode: DecodeFn = lambda key, value: value  # a `state.data` value (records) from its JSON form

    def screen(self, name: str) -> Screen:
        """Return the screen of this name."""
        return _screens(self)[name]

    def check(self) -> None:
        """Raise ValueError if a transition names an unknown screen, condition or action."""
        names = {s.name for s in self.screens}
        for t in self.transitions:
            if t.source not in names or t.dest not in names:
                raise ValueError(f"{self.name}: transition {t} names an unknown screen")
            for name in t.conditions:
                if name not in self.conditions:
                    raise ValueError(f"{self.name}: unknown condition {name!r}")
            if t.action is not None and t.action not in self.actions:
                raise ValueError(f"{self.name}: unknown action {t.action!r}")
        for s in self.screens:
            if s.view is not None and s.view not in self.views:
                raise ValueError(f"{self.name}: unknown view {s.view!r}")


@dataclass
class State:
    """Everything a session remembers between hops; plain JSON once `to_dict`-ed.

    `data` holds what the screens read and the effects' outcomes, as the tree's records (`menus.values`): their
    `to_json` form in `to_dict`, read back by the tree's `decode` in `from_dict`.
    """

    phone: str = ""
    tree: str = "member"
    screen: str = ""
    lang: str = "fr"
    page: int = 0
    history: list[str] = field(default_factory=list)
    household: int | None = None
    hop: int = -1  # index of the last input consumed; 0 is the dial itself
    secret_hops: list[int] = field(default_factory=list)
    notice: str | None = None
    hint: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> State:
        """Return a copy whose lists and data mapping can be changed without touching this one."""
        # Spelt out rather than `dataclasses.replace`: the engine copies the state a few times per input.
        return State(
            phone=self.phone,
            tree=self.tree,
            screen=self.screen,
            lang=self.lang,
            page=self.page,
            history=list(self.history),
            household=self.household,
            hop=self.hop,
            secret_hops=list(self.secret_hops),
            notice=self.notice,
            hint=self.hint,
            data=dict(self.data),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the state as a JSON-ready mapping (records in their JSON form)."""
        values = {name: getattr(self, name) for name in _STATE_FIELDS}
        values["data"] = {key: _plain(value) for key, value in self.data.items()}
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> State:
        """Return the state stored as `to_dict` made it (unknown keys ignored), its data decoded by its tree."""
        state = cls(**{k: v for k, v in values.items() if k in _STATE_FIELDS})
        if state.data:
            decode = load_tree(state.tree).decode
            state.data = {key: decode(key, value) for key, value in state.data.items()}
        return state


def _plain(value: Any) -> Any:
    """Return a `state.data` value in its JSON form: a record's `to_json`, a list of records' each."""
    to_json = getattr(value, "to_json", None)
    if to_json is not None:
        return to_json()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


_STATE_FIELDS = tuple(f.name for f in fields(State))


@dataclass(frozen=True)
class Reply:
    """What a hop answers: the full `CON …`/`END …` text, effects to apply, or the data still needed."""

    text: str = ""
    end: bool = False
    effects: tuple[Effect, ...] = ()
    needs: tuple[str, ...] = ()


_tree_cache: dict[str, Tree] = {}
_screen_cache: dict[int, dict[str, Screen]] = {}


def _screens(tree: Tree) -> dict[str, Screen]:
    cached = _screen_cache.get(id(tree))
    if cached is None:
        cached = _screen_cache[id(tree)] = {s.name: s for s in tree.screens}
    return cached


def load_tree(name: str) -> Tree:
    """Return the menu tree of this name (`menus.<name>.TREE`), checked once."""
    tree = _tree_cache.get(name)
    if tree is None:
        if name not in TREES:
            raise ValueError(f"unknown menu tree {name!r}")
        tree = importlib.import_module(f"menus.{name}").TREE
        tree.check()
        _tree_cache[name] = tree
    return tree


def new_state(phone: str, tree: str = "member", lang: str = "fr") -> State:
    """Return the state of a session that has not been dialled yet."""
    return State(phone=phone, tree=tree, lang=lang)


def secret_hops_after(state: State, tree: Tree | None = None) -> list[int]:
    """Return the secret hops once the next input is typed (it is one when the current screen is secret)."""
    hops = list(state.secret_hops)
    if state.screen:
        tree = tree or load_tree(state.tree)
        if tree.screen(state.screen).secret:
            hops.append(state.hop + 1)
    return hops


def step(state: State, user_input: str, tree: Tree | None = None, render: bool = True) -> tuple[Reply, State]:
    """Consume one input (the dial is input "" of a new state) and return the reply and the next state.

    With `render=False` the reply's text is left empty (an input replayed on the way to a later screen: nobody
    sees its screen); everything else is the same. Rendering only clamps the state's page into the screen's
    pages, and the engine never moves a page out of them (`98` checks the page count, `0` only goes back).
    """
    tree = tree or load_tree(state.tree)
    if state.screen == "":
        return _enter(tree, state, tree.entry, hop_input=True, render=render)
    screen = tree.screen(state.screen)
    missing = _missing(tree, screen, state)
    if missing:
        return Reply(needs=missing), state
    nxt = state.copy()
    nxt.hop += 1
    nxt.hint = False
    nxt.notice = None
    if screen.secret:
        nxt.secret_hops.append(nxt.hop)
    if screen.end:
        return _show(tree, nxt, screen, render)
    value = user_input.strip()
    if value == HOME_KEY:
        nxt.history = []
        return _enter(tree, nxt, tree.home, render=render)
    if value == MORE_KEY and nxt.page + 1 < _page_count(tree, nxt, screen):
        nxt.page += 1
        return _show(tree, nxt, screen, render)
    if value == BACK_KEY and (state.page > 0 or state.history):
        if state.page > 0:
            nxt.page -= 1
            return _show(tree, nxt, screen, render)
        previous = nxt.history.pop()
        return _enter(tree, nxt, previous, render=render)
    chosen = _match(tree, screen, state, value)
    if chosen is None:
        nxt.hint = True
        return _show(tree, nxt, screen, render)
    transition, item_value = chosen
    effects: list[Effect] = []
    if transition.action is not None:
        before = nxt.copy()
        try:
            nxt, effects = tree.actions[transition.action](nxt, item_value)
        except Invalid as exc:
            before.hint = exc.hint is None
            before.notice = exc.hint
            return _show(tree, before, screen, render)
        pending = tuple(e for e in effects if e.result is not None and e.result not in nxt.data)
        if pending:
            return Reply(effects=pending, needs=tuple(str(e.result) for e in pending)), state
    nxt.history.append(screen.name)
    reply, after = _enter(tree, nxt, transition.dest, render=render)
    if reply.needs:
        return reply, state
    return Reply(reply.text, reply.end, tuple(effects) + reply.effects, reply.needs), after


def _enter(tree: Tree, state: State, name: str, hop_input: bool = False, render: bool = True) -> tuple[Reply, State]:
    """Arrive on a screen: follow auto screens, then render the first page (or ask for missing data)."""
    original = state
    nxt = state.copy()
    if hop_input:
        nxt.hop += 1
    if name == tree.home:
        nxt.history = []
    effects: list[Effect] = []
    for _ in range(MAX_AUTO_MOVES):
        screen = tree.screen(name)
        missing = _missing(tree, screen, nxt)
        if missing:
            return Reply(needs=missing), original
        if not screen.auto:
            break
        transition = _first(tree, screen, AUTO, nxt)
        if transition is None:
            raise ValueError(f"{tree.name}: auto screen {name!r} has no open transition")
        if transition.action is not None:
            nxt, more = tree.actions[transition.action](nxt, None)
            effects.extend(more)
        name = transition.dest
    else:
        raise ValueError(f"{tree.name}: auto screens loop at {name!r}")
    nxt.screen = name
    nxt.page = 0
    reply, after = _show(tree, nxt, screen, render)
    return Reply(reply.text, reply.end, tuple(effects), reply.needs), after


def _show(tree: Tree, state: State, screen: Screen, render: bool = True) -> tuple[Reply, State]:
    """Render the state's page of the screen (or only say whether it ends the session)."""
    if not render:
        return Reply(end=screen.end), state
    layout = _layout(tree, screen, state)
    page = render_layout(layout, state.lang, state.page, hint=state.hint)
    state.page = page.page
    return Reply(text=page.text, end=screen.end), state


def _layout(tree: Tree, screen: Screen, state: State) -> Layout:
    view = tree.views[screen.view](state) if screen.view else View()
    header: list[Text] = []
    if state.notice:
        header.append(Msg(state.notice))
    if view.header:
        header.extend(view.header)
    elif screen.title:
        header.append(Msg(screen.title))
    items: list[Text] = [_numbered(o.key, Msg(o.label)) for o in screen.options]
    items.extend(_numbered(i.key, i.text) if i.key else i.text for i in view.items)
    # `0` goes back one screen; `00` home is offered once back would not already be home.
    return Layout(
        header=header,
        items=items,
        end=screen.end,
        back=bool(state.history),
        home=len(state.history) > 1,
        notes=tuple(view.notes),
    )


def _numbered(key: str, text: Text) -> Text:
    if isinstance(text, str):
        return f"{key} {text}"
    return Msg("{key} {label}", {"key": key, "label": text})


def _page_count(tree: Tree, state: State, screen: Screen) -> int:
    return render_layout(_layout(tree, screen, state), state.lang, state.page, hint=state.hint).pages


def _missing(tree: Tree, screen: Screen, state: State) -> tuple[str, ...]:
    keys = [key for need in screen.needs for key in tree.data_keys(need, state)]
    return tuple(key for key in keys if key not in state.data)


def _match(tree: Tree, screen: Screen, state: State, value: str) -> tuple[Transition, Any] | None:
    """Return the transition the input opens and the chosen item's value, or None when the input is invalid."""
    if not value:
        return None
    for option in screen.options:
        if option.key == value:
            transition = _first(tree, screen, value, state)
            return (transition, None) if transition else None
    if screen.view is not None:
        for item in tree.views[screen.view](state).items:
            if item.key == value:
                # An item may open its own transition (triggered by its key), else the screen's CHOICE one.
                transition = _first(tree, screen, value, state) or _first(tree, screen, CHOICE, state)
                return (transition, item.value) if transition else None
    transition = _first(tree, screen, INPUT, state)
    return (transition, value) if transition else None


def _first(tree: Tree, screen: Screen, trigger: str, state: State) -> Transition | None:
    for transition in tree.transitions:
        if transition.source != screen.name or transition.trigger != trigger:
            continue
        if all(tree.conditions[name](state) for name in transition.conditions):
            return transition
    return None
