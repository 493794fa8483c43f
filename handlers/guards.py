"""Guards of the callback endpoints: each source's own credential, and the body size limit.

Credentials per source, each revocable on its own (docs/callbacks.md):
- Africa's Talking (USSD, SMS) and the development sandbox: `CALLBACK_TOKEN` as `?token=` or
  `X-Callback-Token`, or `CALLBACK_TOKEN_PREVIOUS` during a rotation (each use logged) — `@callback`;
- Safaricom Daraja: `DARAJA_CALLBACK_TOKEN` as `?token=`, and the caller's address within `DARAJA_ALLOWED_IPS`
  when set (the client address as ProxyFix reads it behind `TRUSTED_PROXIES`) — `@daraja_callback`;
- Wave: its signature, checked by the view (any `?token=` is ignored) — `@signed_callback`;
- collection devices: their own key, checked by the view — `@device_callback`.
Every guard counts the body against `CALLBACK_MAX_BYTES` (413), a chunked body too.
"""

from __future__ import annotations

import functools
import hmac
import io
import logging
from collections.abc import Callable, Iterable
from ipaddress import ip_address
from typing import ParamSpec, TypeVar, cast

from flask import Request, abort, request
from werkzeug.local import LocalProxy

from config import Settings
from extensions import settings

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger(__name__)


def token_matches(presented: str | None, expected: str) -> bool:
    """Return whether the presented token equals the expected one, in constant time."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode())


def matching_token(presented: str | None, accepted: Iterable[str]) -> int | None:
    """Return the index of the accepted token the presented one equals (every one compared), or None."""
    found = None
    for index, expected in enumerate(accepted):
        if token_matches(presented, expected) and found is None:
            found = index
    return found


def presented_token(current: Request) -> str | None:
    """Return the callback token of a request: the `token` query argument, else the `X-Callback-Token` header."""
    return current.args.get("token") or current.headers.get("X-Callback-Token")


def limit_body(current: Request, limit: int) -> None:
    """Refuse a body over the limit (413), counting a chunked body (no Content-Length) as it is read.

    A chunked body is read here, at most one byte past the limit, and handed on as a sized body, so the
    view, its form parser and `get_data` never see a silently truncated one.
    """
    current.max_content_length = limit
    length = current.content_length
    if length is not None:
        if length > limit:
            abort(413)
        return
    environ = current.environ
    if "wsgi.input_terminated" not in environ and environ.get("HTTP_TRANSFER_ENCODING", "").lower() != "chunked":
        return  # no body at all (Werkzeug reads an unsized, unterminated body as empty)
    data = environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        abort(413)
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ.pop("wsgi.input_terminated", None)
    current.__dict__.pop("stream", None)  # a cached_property: read the sized body from now on


def _check_at_token(current: Request, config: Settings) -> None:
    index = matching_token(presented_token(current), config.callback_tokens())
    if index is None:
        abort(403)
    if index == 1:
        log.warning("callback authorised with CALLBACK_TOKEN_PREVIOUS on %s: move it to CALLBACK_TOKEN", current.path)


def _check_daraja(current: Request, config: Settings) -> None:
    if not token_matches(presented_token(current), config.DARAJA_CALLBACK_TOKEN):
        abort(403)
    networks = config.daraja_networks()
    if networks:
        try:
            address = ip_address(current.remote_addr or "")
        except ValueError:
            abort(403)
        if not any(address in network for network in networks):
            log.warning("daraja callback from %s refused: not in DARAJA_ALLOWED_IPS", address)
            abort(403)


def _guard(view: Callable[P, R], check: Callable[[Request, Settings], None] | None) -> Callable[P, R]:
    """Wrap a callback view with the body limit (413) and its source's credential check (403)."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        # The request and the settings once each: every access through Flask's proxies costs a lookup.
        # (Flask types the `request` proxy as the Request it stands for; it is werkzeug's LocalProxy.)
        current = cast("LocalProxy[Request]", request)._get_current_object()
        config = settings()
        limit_body(current, config.CALLBACK_MAX_BYTES)
        if check is not None:
            check(current, config)
        return view(*args, **kwargs)

    return wrapper


def callback(view: Callable[P, R]) -> Callable[P, R]:
    """Guard an Africa's Talking callback (or the sandbox): the callback token (403) and the body limit (413)."""
    return _guard(view, _check_at_token)


def daraja_callback(view: Callable[P, R]) -> Callable[P, R]:
    """Guard a Safaricom Daraja callback: its own URL token and allowed networks (403), the body limit (413)."""
    return _guard(view, _check_daraja)


def signed_callback(view: Callable[P, R]) -> Callable[P, R]:
    """Guard a callback whose provider signs it: the body limit only; the view checks the signature."""
    return _guard(view, None)


def device_callback(view: Callable[P, R]) -> Callable[P, R]:
    """Guard a collection device's forward: the body limit only; the view checks the device's own key."""
    return _guard(view, None)
