"""Maps redis-py failures to StoreUnavailable once, for every Redis store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis import exceptions as redis_exceptions

from careline.signaling.errors import StoreUnavailable


@asynccontextmanager
async def redis_unavailable() -> AsyncIterator[None]:
    """Turn a lost or refused Redis connection inside the block into StoreUnavailable."""
    try:
        yield
    except (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is not answering: {exc.__class__.__name__}") from None
