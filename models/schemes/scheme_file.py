"""Load a scheme from its TOML file: validate every field first, then write it in one transaction."""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import Language, PremiumKind
from models.schemes.mutuelle import MUTUELLE_CODE_MAX, Mutuelle, MutuelleAccount, account_key
from models.schemes.scheme import (
    ENROLMENT_ID_FIELDS,
    HOUSEHOLD_PATTERN_FIELDS,
    PaymentChannel,
    Plan,
    PremiumBand,
    Scheme,
    SubsidyCategory,
)

# A household number as the member import takes it, with room for the member suffix `-NN` (44 characters).
_HOUSEHOLD_NO = re.compile(r"[A-Z0-9][A-Z0-9/_.-]{0,39}")
CURRENCY_EXPONENTS = {"XOF": 0, "KHR": 0, "KES": 2, "USD": 2, "GHS": 2, "UGX": 0, "TZS": 2, "RWF": 0}


class SchemeFileError(ValueError):
    """A scheme file is invalid; the message names the field."""

    def __init__(self, path: str, field_name: str, problem: str) -> None:
        super().__init__(f"{path}: {field_name}: {problem}")
        self.field_name = field_name


@dataclass
class _Reader:
    path: str
    data: dict[str, Any]
    prefix: str = ""
    errors: list[SchemeFileError] = field(default_factory=list)

    def fail(self, name: str, problem: str) -> None:
        self.errors.append(SchemeFileError(self.path, self.prefix + name, problem))

    def get(
        self, name: str, kind: type | tuple[type, ...], default: Any = ..., check: Any = None, problem: str = ""
    ) -> Any:
        if name not in self.data:
            if default is ...:
                self.fail(name, "is required")
            return None if default is ... else default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.fail(name, f"must be {_kind_name(kinds)}, not {value!r}")
            return None
        if not isinstance(value, kinds):
            self.fail(name, f"must be {_kind_name(kinds)}, not {value!r}")
            return None
        if check is not None and not check(value):
            self.fail(name, problem or f"invalid value {value!r}")
            return None
        return value

    def child(self, name: str, data: Any) -> _Reader:
        return _Reader(self.path, data if isinstance(data, dict) else {}, f"{self.prefix}{name}.", self.errors)


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        str: "a string",
        bool: "true or false",
        list: "a list",
        dict: "a table",
        float: "a number",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _clock(value: str) -> time | None:
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        return None


def _positive(value: int) -> bool:
    return value > 0


def _non_negative(value: int) -> bool:
    return value >= 0


@dataclass
class SchemeSpec:
    """A validated scheme file."""

    values: dict[str, Any]
    plans: list[dict[str, Any]]
    bands: list[tuple[int, int]]
    subsidies: list[dict[str, Any]]
    channels: list[dict[str, Any]]
    # Each: code, name, communes, sms_sender_id, contact, position, accounts [{provider, account, display_name}].
    mutuelles: list[dict[str, Any]] = field(default_factory=list)


def parse_scheme_file(path: str | Path) -> SchemeSpec:
    """Return the validated content of a scheme TOML file, or raise naming the first bad field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SchemeFileError(str(path), "(file)", f"not valid TOML: {exc}") from exc
    except OSError as exc:
        raise SchemeFileError(str(path), "(file)", f"cannot read: {exc.strerror}") from exc
    spec = _validate(_Reader(path.name, data))
    return spec


def _validate(r: _Reader) -> SchemeSpec:
    languages = {lang.value for lang in Language}
    values: dict[str, Any] = {
        "code": r.get(
            "code", str, check=lambda v: v and v.replace("-", "").isalnum(), problem="letters, digits and dashes only"
        ),
        "name": r.get("name", str, check=bool, problem="must not be empty"),
        "country": r.get(
            "country",
            str,
            check=lambda v: phonenumbers.country_code_for_region(v) != 0,
            problem="must be an ISO 3166 two-letter country code",
        ),
        "currency": r.get(
            "currency",
            str,
            check=lambda v: v in CURRENCY_EXPONENTS,
            problem=f"must be one of {', '.join(sorted(CURRENCY_EXPONENTS))}",
        ),
        "membership_fee": r.get("membership_fee", int, default=0, check=_non_negative, problem="must be ≥ 0"),
        "grace_days": r.get("grace_days", int, default=0, check=_non_negative, problem="must be ≥ 0"),
        "grace_covered": r.get("grace_covered", bool, default=False),
        "max_advance_months": r.get("max_advance_months", int, default=12, check=_positive, problem="must be > 0"),
        "default_language": r.get(
            "default_language",
            str,
            check=lambda v: v in languages,
            problem=f"must be one of {', '.join(sorted(languages))}",
        ),
        "languages": r.get(
            "languages",
            list,
            check=lambda v: v and set(v) <= languages,
            problem=f"must list codes among {', '.join(sorted(languages))}",
        ),
        "timezone": r.get("timezone", str, check=_valid_zone, problem="unknown time zone"),
        "sms_sender_id": r.get(
            "sms_sender_id", str, default=None, check=lambda v: 0 < len(v) <= 11, problem="1 to 11 characters"
        ),
        "request_ttl_hours": r.get("request_ttl_hours", int, default=72, check=_positive, problem="must be > 0"),
    }
    if values["currency"]:
        exponent = r.get(
            "currency_exponent",
            int,
            default=CURRENCY_EXPONENTS[values["currency"]],
            check=_non_negative,
            problem="must be ≥ 0",
        )
        values["currency_exponent"] = exponent
    if values["languages"] and values["default_language"] and values["default_language"] not in values["languages"]:
        r.fail("default_language", "must be one of `languages`")

    reminders = r.child("reminders", r.get("reminders", dict, default={}))
    days = reminders.get(
        "days_before",
        list,
        default=[14, 3],
        check=lambda v: all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v),
        problem="must be a list of whole days ≥ 0",
    )
    daytime = reminders.get(
        "daytime",
        list,
        default=["08:00", "20:00"],
        check=lambda v: len(v) == 2 and all(isinstance(x, str) and _clock(x) for x in v),
        problem='must be ["HH:MM", "HH:MM"]',
    )
    values["reminder_days"] = sorted(days or [], reverse=True)
    if daytime:
        values["daytime_start"], values["daytime_end"] = _clock(daytime[0]), _clock(daytime[1])

    fhir = r.child("fhir", r.get("fhir", dict, default={}))
    for key, column in (
        ("member_identifier_system", "fhir_member_system"),
        ("coverage_identifier_system", "fhir_coverage_system"),
    ):
        values[column] = fhir.get(
            key,
            str,
            default=None,
            check=_system_uri,
            problem="must be an absolute URI (http(s): or urn:), at most 200 characters",
        )
    if values["fhir_member_system"] and values["fhir_member_system"] == values["fhir_coverage_system"]:
        fhir.fail("coverage_identifier_system", "must differ from member_identifier_system")

    premium = r.child("premium", r.get("premium", dict))
    kind = premium.get(
        "kind", str, check=lambda v: v in {k.value for k in PremiumKind}, problem="must be per_person or bands"
    )
    bands: list[tuple[int, int]] = []
    if kind == PremiumKind.PER_PERSON.value:
        values["premium_amount"] = premium.get("amount", int, check=_positive, problem="must be > 0")
        values["premium_per_months"] = premium.get("per_months", int, default=1, check=_positive, problem="must be > 0")
    elif kind == PremiumKind.BANDS.value:
        raw_bands = premium.get("bands", list, check=bool, problem="must list at least one band")
        for index, band in enumerate(raw_bands or []):
            b = premium.child(f"bands[{index}]", band)
            size = b.get("min_size", int, check=_positive, problem="must be > 0")
            monthly = b.get("monthly", int, check=_positive, problem="must be > 0")
            if size and monthly:
                bands.append((size, monthly))
        sizes = [size for size, _ in bands]
        if bands and (sizes != sorted(set(sizes)) or sizes[0] != 1):
            premium.fail("bands", "min_size must start at 1 and increase")
        values["premium_amount"], values["premium_per_months"] = 0, 1
    values["premium_kind"] = kind

    plans: list[dict[str, Any]] = []
    for index, raw in enumerate(r.get("plans", list, check=bool, problem="must list at least one plan") or []):
        p = r.child(f"plans[{index}]", raw)
        plan = {
            "code": p.get("code", str, check=bool, problem="must not be empty"),
            "months": p.get("months", int, check=lambda v: 0 < v <= 24, problem="must be 1 to 24"),
            "waiting_months": p.get("waiting_months", int, default=0, check=_non_negative, problem="must be ≥ 0"),
            "is_default": p.get("default", bool, default=False),
            "position": index,
        }
        plans.append(plan)
    codes = [p["code"] for p in plans]
    if len(codes) != len(set(codes)):
        r.fail("plans", "plan codes must be unique")
    if plans and not any(p["is_default"] for p in plans):
        plans[0]["is_default"] = True

    subsidies: list[dict[str, Any]] = []
    raw_subsidies = r.get("subsidies", dict, check=bool, problem="must define at least one category")
    for code, raw in (raw_subsidies or {}).items():
        s = r.child(f"subsidies.{code}", raw)
        subsidies.append(
            {
                "code": code,
                "share_bp": _percent_to_bp(
                    s.get("share_percent", (int, float), check=lambda v: 0 <= v <= 100, problem="must be 0 to 100")
                ),
                "funder": s.get("funder", str, default="state"),
                "label": s.get("label", str, default=None),
            }
        )

    channels: list[dict[str, Any]] = []
    for index, raw in enumerate(r.get("channels", list, default=[]) or []):
        c = r.child(f"channels[{index}]", raw)
        instructions = c.get(
            "instructions",
            dict,
            check=lambda v: all(isinstance(x, str) for x in v.values()),
            problem="must map language codes to text",
        )
        if instructions and values["languages"]:
            missing = [lang for lang in values["languages"] if lang not in instructions]
            if missing:
                c.fail("instructions", f"missing text for {', '.join(missing)}")
        channels.append(
            {
                "provider": c.get("provider", str, check=bool, problem="must not be empty"),
                "label": c.get("label", str, check=bool, problem="must not be empty"),
                "account": c.get("account", str, check=bool, problem="must not be empty"),
                "instructions": instructions or {},
                "position": index,
            }
        )

    _enrolment(r, values, subsidies)
    networks = r.child("networks", r.get("networks", dict, default={}))
    values["network_savings_bp"] = _percent_to_bp(
        networks.get(
            "savings_share_of_grant",
            (int, float),
            default=None,
            check=lambda v: 0 < v <= 100,
            problem="must be a percentage above 0, at most 100",
        )
    )
    mutuelles = _mutuelles(r, values, channels)
    if r.errors:
        raise r.errors[0]
    return SchemeSpec(
        values=values, plans=plans, bands=bands, subsidies=subsidies, channels=channels, mutuelles=mutuelles
    )


def _enrolment(r: _Reader, values: dict[str, Any], subsidies: list[dict[str, Any]]) -> None:
    """Read `[enrolment]`: the head's required ID fields, the card categories, the household number pattern."""
    e = r.child("enrolment", r.get("enrolment", dict, default={}))
    values["enrolment_required"] = e.get(
        "required",
        list,
        default=[],
        check=lambda v: all(isinstance(x, str) and x in ENROLMENT_ID_FIELDS for x in v),
        problem=f"must list fields among {', '.join(ENROLMENT_ID_FIELDS)}",
    )
    # By default the categories the funder pays in full: the state asks for the grant's or the card's number.
    funded = [s["code"] for s in subsidies if s["share_bp"] == 10_000]
    codes = {s["code"] for s in subsidies}
    values["enrolment_card_categories"] = e.get(
        "card_required_for",
        list,
        default=funded,
        check=lambda v: all(isinstance(x, str) and x in codes for x in v),
        problem=f"must list subsidy categories among {', '.join(sorted(codes))}",
    )
    sms_at = e.get(
        "collector_sms_at", str, default="19:00", check=lambda v: _clock(v) is not None, problem='must be "HH:MM"'
    )
    values["collector_sms_at"] = _clock(sms_at or "19:00") or time(19, 0)
    pattern = e.get("household_pattern", str, default=None)
    if pattern is not None:
        problem = household_pattern_problem(pattern)
        if problem:
            e.fail("household_pattern", problem)
        values["household_pattern"] = None if problem else pattern
    else:
        values["household_pattern"] = None


def household_pattern_problem(pattern: str) -> str | None:
    """Return why a household number pattern cannot be used, or None when it can."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
        sample = pattern.format(scheme="cmu-thies", mutuelle="SN-TN", serial=999_999, check="7").upper()
    except (ValueError, KeyError, IndexError) as exc:
        return f"not a pattern ({exc}); write e.g. {{mutuelle}}-{{serial:06d}}-{{check}}"
    if not fields <= HOUSEHOLD_PATTERN_FIELDS or not {"serial", "check"} <= fields:
        return f"must name {{serial}} and {{check}}, and only {', '.join(sorted(HOUSEHOLD_PATTERN_FIELDS))}"
    if pattern.count("{serial") != 1 or pattern.count("{check") != 1:
        return "must name {serial} and {check} once each"
    if not _HOUSEHOLD_NO.fullmatch(sample):
        return f"gives {sample!r}: letters, digits and - / _ . only, at most 40 characters"
    return None


def _code(value: str) -> bool:
    return bool(value) and len(value) <= MUTUELLE_CODE_MAX and value.replace("-", "").isalnum()


def _mutuelles(r: _Reader, values: dict[str, Any], channels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the scheme's mutuelles (`[[mutuelles]]`); none listed: one, the scheme itself, on its channels."""
    raw_list = r.get("mutuelles", list, default=[]) or []
    if not raw_list:
        accounts = [
            {"provider": c["provider"], "account": c["account"], "display_name": None}
            for c in channels
            if c["provider"] and c["account"]
        ]
        code = str(values.get("code") or "")[:MUTUELLE_CODE_MAX]
        return [
            {
                "code": code,
                "name": values.get("name"),
                "communes": [],
                "sms_sender_id": values.get("sms_sender_id"),
                "contact": None,
                "position": 0,
                "accounts": accounts,
            }
        ]
    mutuelles: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_list):
        m = r.child(f"mutuelles[{index}]", raw)
        communes = m.get(
            "communes",
            list,
            default=[],
            check=lambda v: all(isinstance(c, str) and c.strip() for c in v),
            problem="must list commune names",
        )
        accounts = []
        raw_accounts = m.get("accounts", dict, default={}) or {}
        for provider, spec in raw_accounts.items():
            a = m.child(f"accounts.{provider}", spec if isinstance(spec, dict) else {"account": spec})
            account = a.get("account", str, check=lambda v: bool(account_key(v)), problem="must not be empty")
            name = a.get("name", str, default=None)
            if account:
                accounts.append({"provider": provider, "account": account, "display_name": name})
        mutuelles.append(
            {
                "code": m.get(
                    "code", str, check=_code, problem=f"letters, digits and dashes, {MUTUELLE_CODE_MAX} at most"
                ),
                "name": m.get("name", str, check=bool, problem="must not be empty"),
                "communes": [" ".join(c.split()) for c in communes or []],
                "sms_sender_id": m.get(
                    "sms_sender_id",
                    str,
                    default=values.get("sms_sender_id"),
                    check=lambda v: 0 < len(v) <= 11,
                    problem="1 to 11 characters",
                ),
                "contact": m.get("contact", str, default=None),
                "position": index,
                "accounts": accounts,
            }
        )
    codes = [str(m["code"]).upper() for m in mutuelles]
    if len(codes) != len(set(codes)):
        r.fail("mutuelles", "mutuelle codes must be unique")
    return mutuelles


def _percent_to_bp(value: int | float | None) -> int | None:
    return None if value is None else round(value * 100)


def _system_uri(value: str) -> bool:
    return (
        0 < len(value) <= 200
        and value.startswith(("https://", "http://", "urn:"))
        and value.isprintable()
        and " " not in value
    )


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def load_scheme(session: Session, spec: SchemeSpec) -> Scheme:
    """Create or update the scheme of the spec and replace its plans, bands, subsidies and channels."""
    scheme = session.scalar(select(Scheme).where(Scheme.code == spec.values["code"]))
    if scheme is None:
        scheme = Scheme(**spec.values)
        session.add(scheme)
    else:
        for key, value in spec.values.items():
            setattr(scheme, key, value)
    _sync(scheme.plans, spec.plans, "code", Plan)
    _sync(scheme.subsidy_categories, spec.subsidies, "code", SubsidyCategory)
    _sync(scheme.channels, spec.channels, "provider", PaymentChannel)
    _sync(scheme.bands, [{"min_size": s, "monthly_amount": m} for s, m in spec.bands], "min_size", PremiumBand)
    session.flush()
    _load_mutuelles(session, scheme, spec.mutuelles)
    return scheme


def _load_mutuelles(session: Session, scheme: Scheme, wanted: list[dict[str, Any]]) -> None:
    """Create or update the scheme's mutuelles by code; one no longer listed stays (its households keep it)."""
    existing = {m.code.upper(): m for m in session.scalars(select(Mutuelle).where(Mutuelle.scheme_id == scheme.id))}
    for values in wanted:
        fields = {k: v for k, v in values.items() if k != "accounts"}
        mutuelle = existing.get(str(values["code"]).upper())
        if mutuelle is None:
            taken = session.scalar(select(Mutuelle.scheme_id).where(Mutuelle.code == values["code"]))
            if taken is not None:
                raise SchemeFileError(scheme.code, "mutuelles", f"code {values['code']} belongs to another scheme")
            mutuelle = Mutuelle(scheme_id=scheme.id, **fields)
            session.add(mutuelle)
        else:
            for name, value in fields.items():
                setattr(mutuelle, name, value)
        accounts = [{**a, "account_key": account_key(a["account"])} for a in values["accounts"]]
        _sync(mutuelle.accounts, accounts, "provider", MutuelleAccount)
    session.flush()


def _sync(current: list[Any], wanted: list[dict[str, Any]], key: str, model: type) -> None:
    """Update rows in place by key, add new ones, remove the ones no longer listed."""
    by_key = {getattr(row, key): row for row in current}
    keep = []
    for values in wanted:
        row = by_key.get(values[key])
        if row is None:
            row = model(**values)
        else:
            for name, value in values.items():
                setattr(row, name, value)
        keep.append(row)
    current[:] = keep
