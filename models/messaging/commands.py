"""SMS commands as members and agents type them: keywords per language, arguments, and masking before storage.

Pure functions, no database: `parse_command(text)` always returns a `Command` (unknown text is `HELP` with
`unknown=True`), and `mask_secrets(text)` hides PINs and dates of birth before a text is stored or logged.
Keywords are case- and accent-insensitive and may be followed by any punctuation ("Statut.", "AIDE?").

| command  | French          | English          | Wolof    | arguments                          |
|----------|-----------------|------------------|----------|------------------------------------|
| STATUS   | STATUT          | STATUS           | XOOL     | [member no DDMMYYYY]               |
| PAY      | PAYER           | PAY              | FEY      | [household no or network] [amount] |
| BALANCE  | SOLDE           | BALANCE          | XAALIS   | [household no]                     |
| CHECK    | VERIF           | CHECK            | SEET     | member no, PIN (agent phones only) |
| LANGUAGE | LANGUE          | LANG, LANGUAGE   | LAKK     | fr, wo, en or km                   |
| HELP     | AIDE            | HELP             | NDIMBAL  |                                    |
| STOP     | STOP, ARRET     | STOP             | BAYIL    |                                    |
| START    | START           | START            | TAMBALI  |                                    |
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

MASK = "xxxx"
MAX_TEXT = 480  # AT concatenates up to a few segments; anything longer is not a command


class CommandKind(enum.StrEnum):
    STATUS = "status"
    PAY = "pay"
    BALANCE = "balance"
    CHECK = "check"
    LANGUAGE = "language"
    HELP = "help"
    STOP = "stop"
    START = "start"


# Keyword (normalised: no accents, upper case) → command. The language of the keyword does not choose the
# reply's language: replies speak the household's language.
KEYWORDS: dict[str, CommandKind] = {
    "STATUT": CommandKind.STATUS,
    "STATUS": CommandKind.STATUS,
    "XOOL": CommandKind.STATUS,
    "PAYER": CommandKind.PAY,
    "PAY": CommandKind.PAY,
    "FEY": CommandKind.PAY,
    "SOLDE": CommandKind.BALANCE,
    "BALANCE": CommandKind.BALANCE,
    "XAALIS": CommandKind.BALANCE,
    "VERIF": CommandKind.CHECK,
    "CHECK": CommandKind.CHECK,
    "SEET": CommandKind.CHECK,
    "LANGUE": CommandKind.LANGUAGE,
    "LANG": CommandKind.LANGUAGE,
    "LANGUAGE": CommandKind.LANGUAGE,
    "LAKK": CommandKind.LANGUAGE,
    "AIDE": CommandKind.HELP,
    "HELP": CommandKind.HELP,
    "NDIMBAL": CommandKind.HELP,
    "STOP": CommandKind.STOP,
    "ARRET": CommandKind.STOP,
    "BAYIL": CommandKind.STOP,
    "START": CommandKind.START,
    "TAMBALI": CommandKind.START,
}
LANGUAGE_CODES: dict[str, str] = {
    "FR": "fr",
    "FRANCAIS": "fr",
    "FRENCH": "fr",
    "WO": "wo",
    "WOLOF": "wo",
    "EN": "en",
    "ENGLISH": "en",
    "ANGLAIS": "en",
    "KM": "km",
    "KHMER": "km",
}

_TOKEN_RE = re.compile(r"[^\s,;]+")
_EDGE_PUNCTUATION = ".!?:;,'\"()[]"
_DATE_RE = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$")
_DIGITS_DATE_RE = re.compile(r"^(\d{2})(\d{2})(\d{4})$")
# A standalone run of 4 to 8 digits may be a PIN or a date of birth; a date with separators always is one.
_SECRET_RE = re.compile(r"(?<![\w\-])(\d{4,8}|\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4})(?![\w\-])")


# The keyword and the member number as typed: the first two words.
_COMMAND_HEAD_RE = re.compile(r"^\s*[^\s,;]+[\s,;]+[^\s,;]+")


@dataclass(frozen=True)
class Command:
    """A parsed SMS: what to do and its arguments; `problem` says what is missing or malformed."""

    kind: CommandKind
    member_no: str | None = None
    birth_date: date | None = None
    pin: str | None = None
    amount_text: str | None = None
    language: str | None = None
    account: str | None = None  # PAY/BALANCE for this household (or network) rather than the phone's own
    unknown: bool = False  # the text named no command: answered with help
    problem: str | None = None  # a known command whose arguments are wrong: answered with its usage


def normalise(text: str) -> str:
    """Return the text without accents, in upper case, with whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", stripped).strip().upper()


def tokens(text: str) -> list[str]:
    """Return the words of a normalised text, edge punctuation removed and empty words dropped."""
    words = (word.strip(_EDGE_PUNCTUATION) for word in _TOKEN_RE.findall(normalise(text[:MAX_TEXT])))
    return [word for word in words if word]


def parse_date(text: str) -> date | None:
    """Return the date written DDMMYYYY, DD/MM/YYYY, DD-MM-YYYY or DD.MM.YYYY, or None."""
    match = _DATE_RE.match(text) or _DIGITS_DATE_RE.match(text)
    if match is None:
        return None
    day, month, year = (int(part) for part in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_command(text: str) -> Command:
    """Return the command an SMS asks for; never raises, unknown text is help."""
    words = tokens(text)
    if not words:
        return Command(CommandKind.HELP, unknown=True)
    kind = KEYWORDS.get(words[0])
    if kind is None:
        return Command(CommandKind.HELP, unknown=True)
    args = words[1:]
    if kind is CommandKind.STATUS:
        return _status(args)
    if kind is CommandKind.PAY:
        return _pay(args)
    if kind is CommandKind.BALANCE:
        return Command(kind, account=args[0] if args else None)
    if kind is CommandKind.CHECK:
        return _check(args)
    if kind is CommandKind.LANGUAGE:
        code = LANGUAGE_CODES.get(args[0]) if args else None
        return Command(kind, language=code, problem=None if code else "language code")
    return Command(kind)


def _status(args: list[str]) -> Command:
    if not args:
        return Command(CommandKind.STATUS)
    if len(args) < 2:
        return Command(CommandKind.STATUS, member_no=args[0], problem="date of birth")
    born = parse_date(args[1])
    if born is None:
        return Command(CommandKind.STATUS, member_no=args[0], problem="date of birth")
    return Command(CommandKind.STATUS, member_no=args[0], birth_date=born)


def _amount(word: str) -> str | None:
    for suffix in ("FCFA", "CFA", "XOF", "F", "KHR", "RIEL", "KES", "KSH"):
        if word.endswith(suffix) and word[: -len(suffix)]:
            word = word[: -len(suffix)]
            break
    return word if re.fullmatch(r"\d[\d.,]*", word) else None


def _pay(args: list[str]) -> Command:
    """`PAY [amount]` or `PAY <household no, member no or network code> [amount]`: a bare number is an amount."""
    if not args:
        return Command(CommandKind.PAY)
    amount = _amount(args[0])
    if amount is not None:
        return Command(CommandKind.PAY, amount_text=amount)
    if not re.search(r"\d|-", args[0]):  # neither an amount nor a number or code: "PAYER beaucoup"
        return Command(CommandKind.PAY, problem="amount")
    if len(args) == 1:
        return Command(CommandKind.PAY, account=args[0])
    amount = _amount(args[1])
    if amount is None:
        return Command(CommandKind.PAY, account=args[0], problem="amount")
    return Command(CommandKind.PAY, amount_text=amount, account=args[0])


def _check(args: list[str]) -> Command:
    if len(args) < 2:
        return Command(CommandKind.CHECK, member_no=args[0] if args else None, problem="member number and PIN")
    return Command(CommandKind.CHECK, member_no=args[0], pin=args[1])


def mask_secrets(text: str) -> str:
    """Return the text as it may be stored: PINs and dates of birth replaced by `xxxx`, amounts of PAY kept."""
    words = tokens(text)
    kind = KEYWORDS.get(words[0]) if words else None
    if kind is CommandKind.PAY:
        return text
    if kind in (CommandKind.CHECK, CommandKind.STATUS):
        # Whatever follows the member number is the PIN or the date of birth, however it is typed ("4 8 2 1").
        head = _COMMAND_HEAD_RE.match(text)
        if head is not None and text[head.end() :].strip():
            return head.group(0) + " " + MASK
    return _SECRET_RE.sub(MASK, text)
