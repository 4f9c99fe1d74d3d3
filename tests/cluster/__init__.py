"""Several `careline serve` processes sharing one redis-server (issue 8)."""
