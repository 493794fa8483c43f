"""How a text travels as SMS: GSM 03.38 (7-bit) or UCS-2, and how many segments it costs.

One module for every length budget (SMS bodies here, USSD screens in `menus/`).
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# GSM 03.38 default alphabet (the escape 0x1B itself excluded). Note é è ù ì ò à Ç are in it;
# ê ô â ç (lowercase), Wolof ë ŋ and all Khmer are not.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each character is sent as escape + code, so it counts as two.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

# (characters in a single message, characters per part of a concatenated message)
GSM7_LIMITS = (160, 153)
UCS2_LIMITS = (70, 67)


@dataclass(frozen=True)
class SmsShape:
    """The encoding of a text, its length in that encoding's units, and the segments it needs."""

    encoding: str
    length: int
    segments: int


_GSM7 = GSM7_BASIC | GSM7_EXTENSION


def is_gsm7(text: str) -> bool:
    """Return whether every character of the text is in the GSM 03.38 alphabet (basic or extension)."""
    return set(text) <= _GSM7


def measure(text: str) -> SmsShape:
    """Return the encoding, length in units and segment count of the text sent as one SMS."""
    chars = set(text)
    if chars <= _GSM7:
        single, per_part = GSM7_LIMITS
        encoding = GSM7
        double = chars & GSM7_EXTENSION
    else:
        single, per_part = UCS2_LIMITS
        encoding = UCS2
        # UCS-2 on the air is UTF-16: characters outside the BMP (emoji) take two units.
        double = {ch for ch in chars if ord(ch) > 0xFFFF}
    if not double:  # one unit per character (most texts): the parts are whole runs of `per_part`
        length = len(text)
        return SmsShape(encoding, length, 1 if length <= single else -(-length // per_part))
    units = [2 if ch in double else 1 for ch in text]
    return SmsShape(encoding, sum(units), _parts(units, single, per_part))


def segments(text: str) -> int:
    """Return how many SMS segments the text costs."""
    return measure(text).segments


def _parts(units: list[int], single: int, per_part: int) -> int:
    """Pack characters into parts; an escape pair or surrogate pair is never split across two parts."""
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > per_part:
            parts += 1
            used = 0
        used += size
    return parts
