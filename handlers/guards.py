"""Guards shared by every callback endpoint: the callback token and the body size limit."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, request

from extensions import settings

F = TypeVar("F", bound=Callable[..., Any])


def token_matches(presented: str | None, expected: str) -> bool:
    """Return whether the presented token equals the expected one, in constant time."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def _guard(view: F, token_required: bool) -> F:
    """Wrap a callback view with the body limit (413) and the callback-token check (403)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The request and the settings once each: every access through Flask's proxies costs a lookup.
        current = request._get_current_object()  # type: ignore[attr-defined]
        config = settings()
        limit = config.CALLBACK_MAX_BYTES
        current.max_content_length = limit
        if current.content_length is not None and current.content_length > limit:
            abort(413)
        presented = current.args.get("token") or current.headers.get("X-Callback-Token")
        if (token_required or presented is not None) and not token_matches(presented, config.CALLBACK_TOKEN):
            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def callback(view: F) -> F:
    """Refuse a callback without the right token (403) or with a body over the callback limit (413)."""
    return _guard(view, token_required=True)


def signed_callback(view: F) -> F:
    """Guard a callback whose provider signs it: body limit (413); the callback token is optional, but wrong → 403.

    The provider's signature, checked by the view, is the authority; a URL registered with `?token=` still works.
    """
    return _guard(view, token_required=False)
