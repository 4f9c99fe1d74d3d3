"""The one token check: signatures, expiry, claims, algorithms, revocation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from careline.server.auth import JwtAuthenticator
from careline.server.storage.sqlite_storage import SqliteStorage
from careline.server.tokens import TokenIssuer
from careline.signaling.errors import AuthError
from careline.signaling.identity import Role, subject_revocation_key, token_revocation_key

SECRET = "s" * 40
NOW = 1_900_000_000.0


class Clock:
    """Controllable time."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    store = SqliteStorage(tmp_path / "auth.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _issuer(clock: Clock, secret: str = SECRET) -> TokenIssuer:
    return TokenIssuer(
        secret, issuer="careline", audience="careline", default_ttl=600, max_ttl=3600, clock=clock
    )


def _authenticator(
    storage: SqliteStorage, clock: Clock, public_key: str | None = None
) -> JwtAuthenticator:
    return JwtAuthenticator(
        SECRET,
        issuer="careline",
        audience="careline",
        leeway=5,
        revocations=storage.revocations,
        public_key=public_key,
        clock=clock,
    )


def _claims(**extra: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": "careline",
        "aud": "careline",
        "sub": "p-1",
        "role": "parent",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "jti": "t-1",
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


async def _code(auth: JwtAuthenticator, token: str | None) -> str:
    with pytest.raises(AuthError) as caught:
        await auth.authenticate(token)
    return caught.value.code


async def test_valid_token_gives_principal(storage: SqliteStorage, clock: Clock) -> None:
    token = _issuer(clock).issue(sub="c-9", role=Role.CLINICIAN, visit_id="v-1").token
    principal = await _authenticator(storage, clock).authenticate(token)
    assert principal.sub == "c-9"
    assert principal.role is Role.CLINICIAN
    assert principal.visit_id == "v-1"
    assert principal.thread_id is None
    assert principal.expires_at == NOW + 600


async def test_expired_token_is_refused(storage: SqliteStorage, clock: Clock) -> None:
    token = _issuer(clock).issue(sub="p-1", role=Role.PARENT, ttl=10).token
    clock.now += 10 + 6  # past exp plus the 5 s leeway
    assert await _code(_authenticator(storage, clock), token) == "auth.expired"


async def test_tampered_token_is_refused(storage: SqliteStorage, clock: Clock) -> None:
    token = _issuer(clock).issue(sub="p-1", role=Role.PARENT).token
    header, _, signature = token.split(".")
    forged = jwt.encode(_claims(role="admin"), "other" * 10, algorithm="HS256").split(".")[1]
    auth = _authenticator(storage, clock)
    assert await _code(auth, f"{header}.{forged}.{signature}") == "auth.bad_signature"
    other_secret = _issuer(clock, secret="o" * 40).issue(sub="p-1", role=Role.PARENT).token
    assert await _code(auth, other_secret) == "auth.bad_signature"


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c", "x" * 50])
async def test_missing_or_malformed(
    storage: SqliteStorage, clock: Clock, token: str | None
) -> None:
    code = await _code(_authenticator(storage, clock), token)
    assert code == ("auth.missing" if not token else "auth.malformed")


@pytest.mark.parametrize(
    "claims",
    [
        _claims(aud="elsewhere"),
        _claims(iss="elsewhere"),
        _claims(jti=None),
        _claims(role="superuser"),
        _claims(sub=""),
        _claims(visit=42),
        _claims(visit="v-1", thread="t-1"),
        _claims(iat="yesterday"),
    ],
)
async def test_invalid_claims(storage: SqliteStorage, clock: Clock, claims: dict[str, Any]) -> None:
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert await _code(_authenticator(storage, clock), token) == "auth.invalid_claims"


async def test_not_yet_valid(storage: SqliteStorage, clock: Clock) -> None:
    auth = _authenticator(storage, clock)
    token = jwt.encode(_claims(nbf=int(NOW) + 3600), SECRET, algorithm="HS256")
    assert await _code(auth, token) == "auth.not_yet_valid"
    future = jwt.encode(_claims(iat=int(NOW) + 3600, exp=int(NOW) + 7200), SECRET, "HS256")
    assert await _code(auth, future) == "auth.not_yet_valid"


async def test_unsigned_and_unknown_algorithms_are_refused(
    storage: SqliteStorage, clock: Clock
) -> None:
    auth = _authenticator(storage, clock)
    unsigned = jwt.encode(_claims(role="admin"), "", algorithm="none")
    assert await _code(auth, unsigned) == "auth.bad_algorithm"
    hs512 = jwt.encode(_claims(), SECRET * 2, algorithm="HS512")
    assert await _code(auth, hs512) == "auth.bad_algorithm"


async def test_rs256_with_configured_public_key(storage: SqliteStorage, clock: Clock) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = jwt.encode(_claims(role="pharmacist", sub="ph-1"), key, algorithm="RS256")
    principal = await _authenticator(storage, clock, public_pem).authenticate(token)
    assert (principal.role, principal.sub) == (Role.PHARMACIST, "ph-1")
    # Without a configured key RS256 is not accepted at all.
    assert await _code(_authenticator(storage, clock), token) == "auth.bad_algorithm"
    # An HS256 token signed with the public key text must not pass as RS256 (key confusion).
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(role="admin"), other, algorithm="RS256")
    assert await _code(_authenticator(storage, clock, public_pem), forged) == "auth.bad_signature"


async def test_revoked_token_subject_and_scope(storage: SqliteStorage, clock: Clock) -> None:
    issuer, auth = _issuer(clock), _authenticator(storage, clock)
    one = issuer.issue(sub="p-1", role=Role.PARENT, visit_id="v-1")
    two = issuer.issue(sub="p-1", role=Role.PARENT, visit_id="v-2")
    three = issuer.issue(sub="p-2", role=Role.PARENT)

    await storage.revocations.revoke(token_revocation_key(one.token_id), until=NOW + 600)
    assert await _code(auth, one.token) == "auth.revoked"
    await auth.authenticate(two.token)

    await storage.revocations.revoke(subject_revocation_key("p-1", "v-2"), until=NOW + 600)
    assert await _code(auth, two.token) == "auth.revoked"
    await auth.authenticate(three.token)

    await storage.revocations.revoke(subject_revocation_key("p-2"), until=NOW + 600)
    assert await _code(auth, three.token) == "auth.revoked"
    clock.now += 601
    fresh = _issuer(clock).issue(sub="p-2", role=Role.PARENT)
    await auth.authenticate(fresh.token)


def test_issuer_refuses_bad_ttl_ids_and_double_scope() -> None:
    issuer = _issuer(Clock())
    with pytest.raises(ValueError, match="ttl"):
        issuer.issue(sub="x", role=Role.ADMIN, ttl=4000)
    for bad in ["", "Jane Doe", "x" * 129, "a/b"]:
        with pytest.raises(ValueError, match="sub must be an opaque id"):
            issuer.issue(sub=bad, role=Role.ADMIN)
    with pytest.raises(ValueError, match="visit must be an opaque id"):
        issuer.issue(sub="p-1", role=Role.PARENT, visit_id="visit one")
    with pytest.raises(ValueError, match="not both"):
        issuer.issue(sub="p-1", role=Role.PARENT, visit_id="v", thread_id="t")


def test_issued_claims_hold_opaque_ids_only() -> None:
    token = _issuer(Clock()).issue(sub="p-7", role=Role.PARENT, thread_id="th-1").token
    claims = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience="careline",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert set(claims) == {"iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti", "thread"}
    assert (claims["sub"], claims["role"], claims["thread"]) == ("p-7", "parent", "th-1")
