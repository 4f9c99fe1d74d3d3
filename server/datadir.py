"""The data directory: created and checked at start; holds the SQLite file and the dev secret."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from careline.server.errors import StartupError
from careline.server.settings import Settings

SECRET_FILE = "auth-secret"  # noqa: S105 - a file name, not a secret
ORDER_SECRET_FILE = "order-secret"  # noqa: S105 - a file name, not a secret
_MIN_SECRET_LEN = 32


def prepare_data_dir(path: Path) -> None:
    """Create the data dir if missing and prove it is writable; StartupError otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StartupError(
            f"data dir {path} is not writable: {exc.strerror or exc.__class__.__name__}"
        ) from None


def auth_secret(settings: Settings) -> str:
    """The HS256 secret: the configured one, else one generated once and kept in the data dir."""
    if settings.auth.secret:
        return settings.auth.secret
    path = settings.data_path / SECRET_FILE
    try:
        return _read_or_create(path)
    except OSError as exc:
        raise StartupError(
            f"cannot read or create {path}: {exc.strerror or exc.__class__.__name__}"
        ) from None


def order_secret(settings: Settings) -> str:
    """The HS256 key of order tokens: configured, else generated once in the data dir."""
    if settings.hotline.order_secret:
        return settings.hotline.order_secret
    path = settings.data_path / ORDER_SECRET_FILE
    try:
        return _read_or_create(path)
    except OSError as exc:
        raise StartupError(
            f"cannot read or create {path}: {exc.strerror or exc.__class__.__name__}"
        ) from None


def public_key(settings: Settings) -> str | None:
    """The configured RS256 public key (PEM text), checked to be an RSA public key."""
    name = settings.auth.public_key_file
    if not name:
        return None
    try:
        text = Path(name).read_text(encoding="ascii")
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a PEM public key"
        raise StartupError(f"cannot use auth.public_key_file {name}: {reason}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise StartupError(f"cannot use auth.public_key_file {name}: not an RSA public key")
    return text


def _read_or_create(path: Path) -> str:
    try:
        return _checked(path, path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Write a private temp file, then link it into place: the secret appears whole or not at all,
    # and of two processes racing, both end up with the one that was linked first.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".auth-secret-")
    try:
        os.write(fd, secret.encode("ascii") + b"\n")
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            return _checked(path, path.read_text(encoding="ascii").strip())
    finally:
        os.unlink(temp)
    return secret


def _checked(path: Path, secret: str) -> str:
    if len(secret) < _MIN_SECRET_LEN:
        raise StartupError(
            f"{path} holds no usable secret (fewer than {_MIN_SECRET_LEN} characters): "
            "delete it to have a new one generated"
        )
    return secret
