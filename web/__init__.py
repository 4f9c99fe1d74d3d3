"""Browser clients served by `careline serve` at `/` (package data only)."""
