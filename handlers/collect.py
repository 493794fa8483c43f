"""The collection officers' form on a phone: the page, its web app manifest and its service worker, under /collect/.

Plain ES modules from `static/collect/`, no build step. The page holds no session and no cookie: the collector's key
stays in the phone's IndexedDB and every call goes to `/api/enrolments` with `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, send_from_directory
from flask.typing import ResponseReturnValue

ASSETS = Path(__file__).resolve().parent.parent / "static" / "collect"
SCOPE = "/collect/"
WORKER = "sw.js"  # served at /collect/sw.js (not under /assets/) so that its scope may be /collect/
# Scripts, styles, workers and the manifest from this origin only; no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "worker-src 'self'; manifest-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

bp = Blueprint("collect", __name__, url_prefix="/collect", static_folder=str(ASSETS), static_url_path="/assets")


@bp.after_request
def security_headers(response: Response) -> Response:
    """Add CSP, frame denial and no-sniff; pages and the worker are always revalidated (assets by the worker)."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    return response


@bp.get("/")
def shell() -> ResponseReturnValue:
    """Serve the form's HTML shell (the same for every collector: the key is on the phone)."""
    response = send_from_directory(ASSETS, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/manifest.webmanifest")
def manifest() -> ResponseReturnValue:
    """Serve the web app manifest that makes the form installable."""
    body = {
        "name": "Mutuelle — collecte",
        "short_name": "Collecte",
        "description": "Adhésion des ménages à la mutuelle de santé, même sans réseau",
        "lang": "fr",
        "start_url": SCOPE,
        "scope": SCOPE,
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#ffffff",
        "theme_color": "#0b5d3b",
        "icons": [
            {"src": f"{SCOPE}assets/icon-180.png", "sizes": "180x180", "type": "image/png"},
            {"src": f"{SCOPE}assets/icon.svg", "sizes": "any", "type": "image/svg+xml", "purpose": "any"},
        ],
    }
    response = Response(json.dumps(body, ensure_ascii=False), mimetype="application/manifest+json")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/sw.js")
def service_worker() -> ResponseReturnValue:
    """Serve the service worker, its cache named after the assets' digest so that new assets replace the old."""
    version, shell_urls = shell_manifest()
    text = (ASSETS / WORKER).read_text(encoding="utf-8")
    text = text.replace('"__VERSION__"', json.dumps(version)).replace('["__SHELL__"]', json.dumps(shell_urls))
    response = Response(text, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Service-Worker-Allowed"] = SCOPE
    return response


@cache
def shell_manifest() -> tuple[str, list[str]]:
    """Return the digest of the shell's files and their URLs, which the service worker caches on install."""
    digest = hashlib.sha256()
    urls = [SCOPE, f"{SCOPE}manifest.webmanifest"]
    for path in sorted(ASSETS.iterdir()):
        if path.is_file() and path.name != WORKER:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
            if path.name != "index.html":
                urls.append(f"{SCOPE}assets/{path.name}")
    return digest.hexdigest()[:16], urls
