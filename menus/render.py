"""Turn a screen into the text a phone shows: translated, formatted, paginated and within the length budget.

Budget: 160 characters when the whole reply is in the GSM 03.38 alphabet, 80 otherwise (UCS-2). The
`CON `/`END ` prefix is counted, because AT counts the whole text it shows; a GSM extension character
(`€ [ ] { } ^ ~ | \\`) costs two. Lists paginate with `98` more, `0` back and `00` home.

Messages are gettext ids (English text with `{name}` placeholders) marked with `N_` and translated from the
shared catalogues `locales/<lang>/LC_MESSAGES/messages.po` through `models.texts.i18n` (no Flask). A language
whose catalogue lacks a USSD message falls back along `FALLBACKS` (Wolof → French, Khmer → English).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from models.schemes.amounts import Amount, format_money
from models.texts import i18n

log = logging.getLogger(__name__)

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")
GSM_ALL = GSM_BASIC | GSM_EXTENSION
GSM_BUDGET = 160
UCS2_BUDGET = 80
DEFAULT_LANGUAGE = "fr"
FALLBACKS: Mapping[str, str] = {"wo": "fr", "km": "en"}
# Endonyms: a language is offered in its own name, whatever the screen's language.
LANGUAGE_NAMES: Mapping[str, str] = {"fr": "Français", "wo": "Wolof", "en": "English", "km": "ខ្មែរ"}

MORE_KEY, BACK_KEY, HOME_KEY = "98", "0", "00"


def N_(msgid: str) -> str:
    """Mark a USSD message for extraction (`pybabel extract -k N_`) and return it untranslated."""
    return msgid


APOLOGY = N_("Sorry, the service is not available right now. Please try again later.")
HINT = N_("Invalid choice.")
MORE = N_("More")
BACK = N_("Back")
HOME = N_("Home")
# Said when everything else failed (even the catalogues): French, the schemes' common language.
LAST_RESORT_APOLOGY = "END Désolé, le service est indisponible. Réessayez plus tard."


class Msg(NamedTuple):
    """A message id and its values, translated at render time."""

    id: str
    args: Mapping[str, Any] = {}


Text = Msg | str


@dataclass(frozen=True)
class Page:
    """A rendered reply and where its page sits in the list."""

    text: str
    page: int
    pages: int


@dataclass(frozen=True)
class Layout:
    """What a screen shows before pagination: header lines, list lines, and which navigation it allows."""

    header: Sequence[Text]
    items: Sequence[Text] = ()
    end: bool = False
    back: bool = False
    home: bool = False
    notes: Sequence[Text] = field(default_factory=tuple)


# ---------------------------------------------------------------- alphabet and length


def is_gsm(text: str) -> bool:
    """Return whether every character of the text is in the GSM 03.38 alphabet (basic or extension)."""
    return GSM_ALL.issuperset(text)


def screen_length(text: str) -> int:
    """Return how many characters the text costs on the screen in its encoding."""
    if GSM_BASIC.issuperset(text):
        return len(text)
    if GSM_ALL.issuperset(text):
        return len(text) + sum(text.count(ch) for ch in GSM_EXTENSION)
    return len(text.encode("utf-16-le")) // 2


def budget(text: str) -> int:
    """Return the screen budget for the text: 160 in the GSM alphabet, else 80."""
    return GSM_BUDGET if is_gsm(text) else UCS2_BUDGET


def fits(text: str) -> bool:
    """Return whether the whole reply (prefix included) fits its budget."""
    if GSM_BASIC.issuperset(text):  # the usual case, in one pass over the text
        return len(text) <= GSM_BUDGET
    return screen_length(text) <= budget(text)


# ---------------------------------------------------------------- translation and formatting


@functools.lru_cache(maxsize=4096)
def translate(language: str, msgid: str) -> str:
    """Return the message in the language, falling back along FALLBACKS, then to the English id."""
    seen: set[str] = set()
    current: str | None = language
    while current and current not in seen:
        seen.add(current)
        try:
            text = str(i18n.translations(current).gettext(msgid))
        except i18n.TemplateError:
            text = msgid
        if text != msgid or current == "en":
            return text
        current = FALLBACKS.get(current)
    return msgid


def format_date(value: date | str, language: str) -> str:
    """Return the date as DD/MM/YYYY (ISO strings accepted)."""
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return day.strftime("%d/%m/%Y")


def text_of(item: Text, language: str) -> str:
    """Return a message (or plain string) translated and filled in."""
    if isinstance(item, str):
        return item
    template = translate(language, item.id)
    if not item.args:
        return template
    values = {name: _value(value, language) for name, value in item.args.items()}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        # A broken translation must not break the screen: fall back to the English id.
        log.warning("ussd: bad translation of %r in %s", item.id, language)
        return item.id.format(**values)


def _value(value: Any, language: str) -> str:
    if isinstance(value, Msg):
        return text_of(value, language)
    if isinstance(value, Amount):
        return format_money(value, language)
    if isinstance(value, date):
        return format_date(value, language)
    return str(value)


# ---------------------------------------------------------------- pagination


def render_layout(layout: Layout, language: str, page: int = 0, hint: bool = False) -> Page:
    """Return one page of the screen in the language, every page within the budget."""
    prefix = "END " if layout.end else "CON "
    header = [text_of(line, language) for line in layout.header]
    if hint:
        header.insert(0, text_of(Msg(HINT), language))
    items = [text_of(line, language) for line in layout.items]
    notes = [text_of(line, language) for line in layout.notes]
    if layout.end:
        # An END screen cannot page: drop notes (nice to have) from the last until it fits, then cut lines.
        while notes and not fits(prefix + "\n".join(header + items + notes)):
            notes.pop()
        return Page(_squeeze(prefix, header + items + notes), 0, 1)
    pages = _paginate(prefix, header, items, notes, layout, language)
    page = max(0, min(page, len(pages) - 1))
    start, stop = pages[page]
    nav = _nav(layout, language, page, more=stop < len(items))
    text = _squeeze(prefix, header + items[start:stop] + notes, nav)
    return Page(text, page, len(pages))


def _nav(layout: Layout, language: str, page: int, more: bool) -> list[str]:
    lines = []
    if more:
        lines.append(f"{MORE_KEY} {translate(language, MORE)}")
    if layout.back or page > 0:
        lines.append(f"{BACK_KEY} {translate(language, BACK)}")
    if layout.home or (page > 0 and layout.back):
        lines.append(f"{HOME_KEY} {translate(language, HOME)}")
    return lines


def _paginate(
    prefix: str, header: list[str], items: list[str], notes: list[str], layout: Layout, language: str
) -> list[tuple[int, int]]:
    """Return (start, stop) of each page: as many whole items as fit, at least one per page."""
    if not items:
        return [(0, 0)]
    pages: list[tuple[int, int]] = []
    start = 0
    while start < len(items):
        stop = start + 1
        while stop < len(items):
            nav = _nav(layout, language, len(pages), more=stop + 1 < len(items))
            if not fits(prefix + "\n".join(header + items[start : stop + 1] + notes + nav)):
                break
            stop += 1
        pages.append((start, stop))
        start = stop
    return pages


def _squeeze(prefix: str, lines: list[str], nav: Sequence[str] = ()) -> str:
    """Join the lines under the prefix, shortening the longest content lines until the reply fits."""
    lines = [line for line in lines if line]
    text = prefix + "\n".join([*lines, *nav])
    while not fits(text) and lines:
        excess = screen_length(text) - budget(text)
        index = max(range(len(lines)), key=lambda i: len(lines[i]))
        line = lines[index]
        keep = max(0, len(line) - max(excess, 1) - 1)
        lines[index] = line[:keep].rstrip() + "." if keep > 0 else ""
        lines = [line for line in lines if line]
        text = prefix + "\n".join([*lines, *nav])
    if not fits(text):  # navigation alone overflows (cannot happen with the shipped catalogues)
        text = text[: UCS2_BUDGET - 1]
    return text


def apology(language: str | None) -> str:
    """Return the END reply that apologises in the language (French when unknown or on any failure)."""
    try:
        return _squeeze("END ", [translate(language or DEFAULT_LANGUAGE, APOLOGY)])
    except Exception:  # noqa: BLE001 - the apology itself must never fail
        return LAST_RESORT_APOLOGY
