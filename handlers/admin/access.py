"""Admin-only pages: staff users, facility agents, API tokens and collection devices."""

from __future__ import annotations

import logging
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from extensions import db, settings
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.language import LANGUAGE_NAMES
from handlers.admin.ownership import OwnershipError, chosen_mutuelle, chosen_mutuelles, grantable_mutuelles
from handlers.admin.texts import gettext
from models.access.agents import AgentError, create_agent, list_agents, unlock_agent
from models.access.devices import (
    DeviceError,
    get_device,
    issue_device_key,
    list_devices,
    parse_senders,
    register_device,
    revoke_device_key,
    set_device_trust,
)
from models.access.staff import (
    StaffError,
    create_staff_user,
    deactivate_staff_user,
    find_staff_user,
    list_staff_users,
)
from models.access.tables import CollectionDevice
from models.access.tokens import TokenError, issue_token, list_tokens, revoke_token
from models.base import StaffRole, utcnow
from models.payments.rejections import rejected_counts_by_device
from models.schemes.scheme import Scheme

log = logging.getLogger(__name__)


def _field(name: str, limit: int = 200) -> str:
    return request.form.get(name, "").strip()[:limit]


def _page(template: str, error: str | None = None, status: int = 200, **context: Any) -> tuple[str, int]:
    mutuelles = grantable_mutuelles()
    context.setdefault("mutuelles", mutuelles)
    context.setdefault("mutuelle_codes", {m.id: m.code for m in mutuelles})
    return render_template(template, error=error, posted=request.form if error else {}, **context), status


def _done(endpoint: str, message: str) -> ResponseReturnValue:
    db().commit()
    log.info("admin: %s (by %s)", message, current_user.username)
    flash(message)
    return redirect(url_for(endpoint))


# ---------------------------------------------------------------- staff users


def _staff_page(error: str | None = None, status: int = 200) -> tuple[str, int]:
    users = list_staff_users(db())
    return _page("admin/staff.html", error, status, users=users, roles=list(StaffRole), language_names=LANGUAGE_NAMES)


@bp.get("/staff")
@role_required(StaffRole.ADMIN)
def staff() -> ResponseReturnValue:
    """List staff users with the form to add one."""
    return _staff_page()


@bp.post("/staff")
@role_required(StaffRole.ADMIN)
def create_staff() -> ResponseReturnValue:
    """Create a staff user with a role, a language and an initial password."""
    try:
        role = StaffRole(_field("role"))
        password = request.form.get("password", "")
        language = _field("language", 5) or None
        codes = [m.code for m in chosen_mutuelles()]
        user = create_staff_user(db(), _field("username"), password, role, language=language, mutuelles=codes).user
    except (StaffError, OwnershipError, ValueError) as exc:
        db().rollback()
        return _staff_page(str(exc), 400)
    message = gettext("User %(name)s created with role %(role)s.", name=user.username, role=user.role.value)
    return _done("admin.staff", message)


@bp.post("/staff/<username>/deactivate")
@role_required(StaffRole.ADMIN)
def deactivate_staff(username: str) -> ResponseReturnValue:
    """Deactivate a staff user: they are signed out and cannot sign in again."""
    if find_staff_user(db(), username) is None:
        return _staff_page(gettext("No user %(name)s.", name=username[:80]), 404)
    try:
        user = deactivate_staff_user(db(), username, by=current_user.username)
    except StaffError as exc:
        db().rollback()
        return _staff_page(str(exc), 400)
    return _done("admin.staff", gettext("User %(name)s deactivated.", name=user.username))


# ---------------------------------------------------------------- agents


def _agents_page(error: str | None = None, status: int = 200) -> tuple[str, int]:
    return _page("admin/agents.html", error, status, agents=list_agents(db()), now=utcnow(), countries=_countries())


def _countries() -> list[str]:
    return sorted(set(db().scalars(select(Scheme.country).distinct())))


@bp.get("/agents")
@role_required(StaffRole.ADMIN)
def agents() -> ResponseReturnValue:
    """List facility agents with their lock state, and the form to add one."""
    return _agents_page()


@bp.post("/agents")
@role_required(StaffRole.ADMIN)
def create_agent_view() -> ResponseReturnValue:
    """Create an agent with a PIN (hashed; never shown again)."""
    country = _field("country", 2).upper() or None
    if country is not None and country not in _countries():
        return _agents_page(gettext("Choose one of the schemes' countries."), 400)
    try:
        mutuelle = chosen_mutuelle()
        agent = create_agent(
            db(),
            facility=_field("facility"),
            phone=_field("phone", 40),
            pin=request.form.get("pin", ""),
            name=_field("name") or None,
            country=country,
        )
        agent.mutuelle_id = mutuelle.id if mutuelle else None
    except (AgentError, OwnershipError) as exc:
        db().rollback()
        return _agents_page(str(exc), 400)
    message = gettext("Agent %(phone)s created for %(facility)s.", phone=agent.phone, facility=agent.facility)
    return _done("admin.agents", message)


@bp.post("/agents/<int:agent_id>/unlock")
@role_required(StaffRole.ADMIN)
def unlock_agent_view(agent_id: int) -> ResponseReturnValue:
    """Clear an agent's wrong-PIN count and lock."""
    agent = next((a for a in list_agents(db()) if a.id == agent_id), None)
    if agent is None:
        return _agents_page(gettext("No agent %(id)s.", id=agent_id), 404)
    unlock_agent(db(), agent.phone)
    return _done("admin.agents", gettext("Agent %(phone)s unlocked.", phone=agent.phone))


# ---------------------------------------------------------------- API tokens


def _tokens_page(error: str | None = None, status: int = 200, **extra: Any) -> tuple[str, int]:
    rate_limit = settings().API_RATE_LIMIT
    return _page("admin/tokens.html", error, status, tokens=list_tokens(db()), rate_limit=rate_limit, **extra)


@bp.get("/tokens")
@role_required(StaffRole.ADMIN)
def tokens() -> ResponseReturnValue:
    """List API tokens (prefix only) with the form to create one."""
    return _tokens_page()


@bp.post("/tokens")
@role_required(StaffRole.ADMIN)
def create_token() -> ResponseReturnValue:
    """Create a facility token and show it on this one page only; only its hash is kept."""
    session = db()
    try:
        mutuelle = chosen_mutuelle()
        token, plain = issue_token(session, name=_field("name", 80), facility=_field("facility"), now=utcnow())
        token.mutuelle_id = mutuelle.id if mutuelle else None
    except (TokenError, OwnershipError) as exc:
        session.rollback()
        return _tokens_page(str(exc), 400)
    session.commit()
    log.info("admin: token %s created for %s (by %s)", token.name, token.facility, current_user.username)
    body, status = _tokens_page(None, 200, created=token, plain=plain)
    # The plain token is in this response only: never cached, never stored, never shown again.
    return body, status, {"Cache-Control": "no-store"}


@bp.post("/tokens/<int:token_id>/revoke")
@role_required(StaffRole.ADMIN)
def revoke_token_view(token_id: int) -> ResponseReturnValue:
    """Revoke a token: requests with it get 401 from now on."""
    token = next((t for t in list_tokens(db()) if t.id == token_id), None)
    if token is None:
        return _tokens_page(gettext("No token %(id)s.", id=token_id), 404)
    revoke_token(db(), token.name, utcnow())
    return _done("admin.tokens", gettext("Token %(name)s revoked.", name=token.name))


# ---------------------------------------------------------------- collection devices


def _devices_page(error: str | None = None, status: int = 200, **extra: Any) -> tuple[str, int]:
    session = db()
    schemes = list(session.execute(select(Scheme.id, Scheme.name).order_by(Scheme.name)).tuples())
    refused = rejected_counts_by_device(session)
    return _page(
        "admin/devices.html", error, status, devices=list_devices(session), schemes=schemes, refused=refused, **extra
    )


def _key_shown(device: CollectionDevice, plain: str, message: str) -> ResponseReturnValue:
    """Commit, then show the device's new key on this one response (never cached, never shown again)."""
    db().commit()
    log.info("admin: %s (by %s)", message, current_user.username)
    body, status = _devices_page(None, 200, keyed=device, plain=plain)
    return body, status, {"Cache-Control": "no-store"}


@bp.get("/devices")
@role_required(StaffRole.ADMIN)
def devices() -> ResponseReturnValue:
    """List collection devices with their key state, and the form to register one."""
    return _devices_page()


@bp.post("/devices")
@role_required(StaffRole.ADMIN)
def register_device_view() -> ResponseReturnValue:
    """Register a collection device with the operator senders whose texts it may forward; show its key once."""
    raw_scheme = _field("scheme", 12)
    scheme_id = int(raw_scheme) if raw_scheme.isascii() and raw_scheme.isdigit() and len(raw_scheme) < 10 else None
    if scheme_id is not None and db().get(Scheme, scheme_id) is None:
        return _devices_page(gettext("Choose a scheme from the list."), 400)
    try:
        mutuelle = chosen_mutuelle()
        device, plain = register_device(
            db(),
            device_key=_field("device_key", 80),
            label=_field("label", 120),
            senders=parse_senders(_field("senders", 1000)),
            scheme_id=scheme_id,
            trusted=request.form.get("trusted") == "1",
        )
        device.mutuelle_id = mutuelle.id if mutuelle else None
    except (DeviceError, OwnershipError) as exc:
        db().rollback()
        return _devices_page(str(exc), 400)
    return _key_shown(device, plain, f"device {device.device_key} registered")


@bp.post("/devices/<int:device_id>/rotate")
@role_required(StaffRole.ADMIN)
def rotate_device_key(device_id: int) -> ResponseReturnValue:
    """Give a device a new key (its old key stops working at once) and show it once."""
    try:
        device = get_device(db(), device_id)
    except DeviceError as exc:
        return _devices_page(str(exc), 404)
    plain = issue_device_key(db(), device)
    return _key_shown(device, plain, f"device {device.device_key} re-keyed")


@bp.post("/devices/<int:device_id>/revoke")
@role_required(StaffRole.ADMIN)
def revoke_device_key_view(device_id: int) -> ResponseReturnValue:
    """Revoke a device's key: its forwards are refused (and kept for review) until it is re-keyed."""
    try:
        device = get_device(db(), device_id)
    except DeviceError as exc:
        return _devices_page(str(exc), 404)
    revoke_device_key(db(), device)
    return _done("admin.devices", gettext("Device %(device)s: key revoked.", device=device.device_key))


@bp.post("/devices/<int:device_id>/trust")
@role_required(StaffRole.ADMIN)
def trust_device(device_id: int) -> ResponseReturnValue:
    """Trust or untrust a device (`trusted=1` or `0`): a trusted device's texts confirm payments."""
    try:
        device = set_device_trust(db(), device_id, request.form.get("trusted") == "1")
    except DeviceError as exc:
        db().rollback()
        return _devices_page(str(exc), 404)
    if device.trusted:
        message = gettext("Device %(device)s is now trusted.", device=device.device_key)
    else:
        message = gettext("Device %(device)s is now untrusted.", device=device.device_key)
    return _done("admin.devices", message)
