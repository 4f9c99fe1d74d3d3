"""Serves the bundled browser clients in web/ (package data) at `/`."""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

from aiohttp import web

#: Files of the web package that are not web assets.
_HIDDEN_SUFFIXES = {".py", ".pyc"}


def web_root() -> Path:
    """The folder of the bundled web clients."""
    return Path(str(resources.files("careline.web"))).resolve()


def _resolve(root: Path, relative: str) -> Path | None:
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or target.suffix in _HIDDEN_SUFFIXES:
        return None
    if "__pycache__" in target.parts or not target.is_file():
        return None
    return target


async def _asset(request: web.Request) -> web.FileResponse:
    relative = request.match_info["path"] or "index.html"
    target = await asyncio.to_thread(_resolve, request.app[_ROOT], relative)
    if target is None:
        raise web.HTTPNotFound()
    return web.FileResponse(target)


_ROOT = web.AppKey("web_root", Path)


def add_web_routes(app: web.Application) -> None:
    """Register the web assets under `/`; call last, after every API route."""
    app[_ROOT] = web_root()
    app.router.add_get(r"/{path:(?!api/|socket\.io/).*}", _asset)
