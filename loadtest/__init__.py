"""Careline load tester: replays synthetic and recorded sessions over the public wire protocol."""
