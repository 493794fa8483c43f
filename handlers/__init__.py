"""Flask blueprints: HTTP in, HTTP out. One module per channel."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask.typing import ResponseReturnValue, RouteCallable

if TYPE_CHECKING:
    from typing_extensions import TypeIs

SyncView = Callable[..., ResponseReturnValue]


def _is_sync(view: RouteCallable) -> TypeIs[SyncView]:
    return not inspect.iscoroutinefunction(view)


def sync_view(view: RouteCallable) -> SyncView:
    """Return a registered view function as the plain (not async) view every view of this app is.

    Flask types `app.view_functions` as sync-or-async views; wrapping one (a rate limit) or calling it directly
    (the simulator) needs the sync one.
    """
    if _is_sync(view):
        return view
    raise TypeError(f"view {view.__name__!r} is async: this app's views are plain functions")
