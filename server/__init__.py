"""Careline server: the composition root (settings, CLI, aiohttp app, auth, storage, metrics)."""

__version__ = "0.1.0"
