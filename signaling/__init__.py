"""Careline signaling: the real-time domain, payload schemas and socket.io namespaces."""
