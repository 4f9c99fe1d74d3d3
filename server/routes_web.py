"""Serves the bundled browser clients in web/ (package data): the pages and their assets.

Pages: `/visit/{visit_id}`, `/threads` (and `/threads/{thread_id}`), `/kiosk`, `/pharmacist`;
every other path under `/` is a file of the package (the bundles in `web/dist/`, styles).
Tokens travel in page links, so every answer forbids referrers and framing, and pages may load
nothing but this origin's own scripts and styles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from aiohttp import web

#: Files of the web package that are not web assets.
_HIDDEN_SUFFIXES = {".py", ".pyc", ".mjs"}
_HIDDEN_NAMES = {"package.json", "package-lock.json"}
#: Folders of the web package that are never served (build inputs).
_HIDDEN_FOLDERS = {"__pycache__", "node_modules", "src"}


def web_root() -> Path:
    """The folder of the bundled web clients."""
    return Path(str(resources.files("careline.web"))).resolve()


def _resolve(root: Path, relative: str) -> Path | None:
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or target.suffix in _HIDDEN_SUFFIXES:
        return None
    if target.name in _HIDDEN_NAMES:
        return None
    if _HIDDEN_FOLDERS.intersection(target.relative_to(root).parts) or not target.is_file():
        return None
    return target


#: Security headers of every page and asset: no referrer (links carry tokens), no framing,
#: scripts and styles from this origin only, camera and microphone for this origin only.
#: Connections (fetch, socket.io's polling and WebSocket) may go to any http(s)/ws(s) address:
#: with several nodes the visit page connects to the node holding the visit (`visit.wrong_node`
#: names it at run time), and nodes come and go, so no fixed list fits. Which pages may open a
#: socket is decided by each node (`cluster.allowed_origins`); scripts stay this origin's only.
_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "connect-src 'self' http: https: ws: wss:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=()",
}

#: Page routes -> the HTML file that serves them.
PAGES: dict[str, str] = {
    "/visit/{visit_id}": "visit.html",
    "/threads": "threads.html",
    "/threads/{thread_id}": "threads.html",
    "/kiosk": "kiosk.html",
    "/pharmacist": "pharmacist.html",
}


async def _serve(request: web.Request, relative: str) -> web.FileResponse:
    target = await asyncio.to_thread(_resolve, request.app[_ROOT], relative)
    if target is None:
        raise web.HTTPNotFound()
    response = web.FileResponse(target, headers=_HEADERS)
    if target.suffix == ".html":
        response.headers["Cache-Control"] = "no-cache"
    return response


async def _asset(request: web.Request) -> web.FileResponse:
    return await _serve(request, request.match_info["path"] or "index.html")


def _page(filename: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def page(request: web.Request) -> web.FileResponse:
        return await _serve(request, filename)

    return page


_ROOT = web.AppKey("web_root", Path)


def add_web_routes(app: web.Application) -> None:
    """Register the web assets under `/`; call last, after every API route."""
    app[_ROOT] = web_root()
    for path, filename in PAGES.items():
        app.router.add_get(path, _page(filename))
    app.router.add_get(r"/{path:(?!api/|socket\.io/).*}", _asset)
