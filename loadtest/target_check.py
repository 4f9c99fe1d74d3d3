"""Fail fast when the target is not a reachable Careline deployment (`GET /healthz`)."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from careline.loadtest.errors import LoadtestError


class TargetUnreachable(LoadtestError):
    """The target URL is malformed, unreachable, or not a Careline server."""

    code = "loadtest.unreachable"


def normalize_target(url: str) -> str:
    """`url` without a trailing slash; TargetUnreachable unless it is http(s)://host[:port]."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetUnreachable(f"the target must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


async def check_target(url: str, within: float = 5.0) -> None:
    """GET /healthz within `within` seconds; TargetUnreachable with the reason otherwise."""
    timeout = aiohttp.ClientTimeout(total=within)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"{url}/healthz") as response,
        ):
            status = response.status
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or str(exc.os_error)
        raise TargetUnreachable(f"cannot reach {url}: {reason}") from None
    except TimeoutError:
        raise TargetUnreachable(f"cannot reach {url}: no answer within {within:g} s") from None
    except aiohttp.ClientError as exc:
        raise TargetUnreachable(f"cannot reach {url}: {type(exc).__name__}") from None
    if status != 200:
        raise TargetUnreachable(f"{url}/healthz answered {status}: not a healthy Careline server")
