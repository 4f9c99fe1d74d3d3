"""Storage backends (SQLite, Redis) implementing signaling's store Protocols."""
