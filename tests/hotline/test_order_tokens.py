"""Order tokens: `careline token issue --role order`, and what the server accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from careline.server.order_tokens import OrderTokens
from careline.signaling.errors import Forbidden


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "careline.server", "token", "issue", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_issues_order_tokens_with_the_generated_order_key(tmp_path: Path) -> None:
    result = cli(
        "--role", "order", "--sub", "ord-9", "--skill", "lang:es", "--data-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    key = (tmp_path / "order-secret").read_text().strip()
    assert key not in result.stdout
    assert not (tmp_path / "auth-secret").exists()  # never signed with the access-token key
    grant = OrderTokens(key, issuer="careline", audience="careline", leeway=0).verify_order(
        result.stdout.strip()
    )
    assert (grant.order_id, grant.skills) == ("ord-9", ("lang:es",))
    refused = cli("--role", "kiosk", "--sub", "k-1", "--skill", "x", "--data-dir", str(tmp_path))
    assert refused.returncode == 2
    assert "only for --role order" in refused.stderr
    scoped = cli("--role", "order", "--sub", "o-1", "--visit", "v-1", "--data-dir", str(tmp_path))
    assert scoped.returncode == 2


def test_order_tokens_refuse_expiry_other_keys_and_bad_claims() -> None:
    now = [1_000_000.0]
    tokens = OrderTokens(
        "a" * 40, issuer="careline", audience="careline", leeway=30, clock=lambda: now[0]
    )
    token = tokens.issue("ord-1", 60).token
    assert tokens.verify_order(token).order_id == "ord-1"
    now[0] += 60 + 29
    assert tokens.verify_order(token).expires_at == 1_000_060.0  # within the leeway
    now[0] += 2
    with pytest.raises(Forbidden) as caught:
        tokens.verify_order(token)
    assert caught.value.code == "hotline.order_expired"
    other = OrderTokens("b" * 40, issuer="careline", audience="careline", leeway=30)
    with pytest.raises(Forbidden) as caught:
        other.verify_order(
            OrderTokens("a" * 40, issuer="careline", audience="careline", leeway=30)
            .issue("o", 60)
            .token
        )
    assert caught.value.code == "hotline.order_invalid"
    with pytest.raises(ValueError, match="opaque"):
        tokens.issue("not an id", 60)
    with pytest.raises(ValueError, match="skills"):
        tokens.issue("o-1", 60, ["bad skill"])
