"""API bearer tokens: the current set, constant-time checks, and the first-start token file."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from daemon.config.loading import token_lines
from daemon.core.canonical import sha256_hex

log = logging.getLogger(__name__)

GENERATED_TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret


class TokenStore:
    """The accepted API tokens; replaced as a whole on reload."""

    def __init__(self, tokens: Iterable[str]):
        self._tokens: tuple[bytes, ...] = ()
        self.replace(tokens)

    def replace(self, tokens: Iterable[str]) -> None:
        cleaned = tuple(t.encode() for t in tokens if t)
        if not cleaned:
            raise ValueError("no API token: refusing to run an API that anyone could call")
        self._tokens = cleaned

    def digest_of(self, presented: str) -> str | None:
        """The SHA-256 of `presented` when it is an accepted token (the console's sign-in),
        else None. Compared against every token, in constant time."""
        given = _as_bytes(presented.strip())
        matches = [hmac.compare_digest(given, token) for token in self._tokens]
        return sha256_hex(given) if any(matches) and given else None

    def accepts_digest(self, token_sha256: str) -> bool:
        """Whether the token with this SHA-256 is still accepted (a reload may remove it)."""
        return any(hmac.compare_digest(sha256_hex(token), token_sha256)
                   for token in self._tokens)

    def check(self, authorization: str | None) -> bool:
        """True when the `Authorization: Bearer <token>` header carries an accepted token."""
        if not authorization:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        given = _as_bytes(presented.strip())
        # Compare against every token, without stopping early, so timing tells nothing.
        matches = [hmac.compare_digest(given, token) for token in self._tokens]
        return any(matches)


def _as_bytes(presented: str) -> bytes:
    """`presented` as bytes for a comparison, whatever it holds. aiohttp hands over header
    bytes that are not UTF-8 as lone surrogates (surrogateescape), which plain `encode()`
    refuses; "surrogatepass" encodes them to bytes that no UTF-8 token contains, so such a
    value is simply wrong, never an error and never equal to a token by accident."""
    return presented.encode("utf-8", "surrogatepass")


def ensure_generated_token(state_dir: Path) -> Path:
    """Create `<state_dir>/api-token` (mode 0600) if missing; return its path.

    Used when no token is configured, so the API is never open. Only the path is logged.
    """
    path = state_dir / GENERATED_TOKEN_FILE
    if path.exists():
        mode = path.stat().st_mode
        if mode & 0o077:
            log.warning("%s is readable by other users (mode %o): chmod 600 it", path,
                        mode & 0o777)
        return path
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)  # a leftover from a crash
    # O_EXCL and O_NOFOLLOW: never write the token through a file or link someone planted.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)  # atomic: a concurrent first start never sees half a token
    log.warning("no [api] tokens configured: generated an API token in %s", path)
    return path


def read_token_file(path: Path) -> list[str]:
    return token_lines(path.read_text())
