"""Web console sessions in the database, so every alertd instance on one database knows them.

The browser holds a random secret (the cookie); the row is keyed by its SHA-256, so a copy of
the database opens no session. A session remembers which API token opened it by the token's
SHA-256 only, and carries the CSRF token its forms must send back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from daemon.core.canonical import sha256_hex
from daemon.store.database import Database
from daemon.store.models import ConsoleSession

# last_seen_at is written at most this often per session: a page view is a read, not a write.
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True)
class SessionInfo:
    token_sha256: str
    csrf_token: str


class ConsoleSessions:
    def __init__(self, db: Database, idle_s: float):
        self._db = db
        self._idle = timedelta(seconds=idle_s)

    async def open(self, token_sha256: str, now: datetime) -> tuple[str, SessionInfo]:
        """A new session: (the cookie secret for the browser, what the server keeps)."""
        secret = secrets.token_urlsafe(32)
        info = SessionInfo(token_sha256, secrets.token_urlsafe(32))

        def add(session: Session) -> None:
            # Sessions idle past their time are removed here, not by a timer of their own.
            session.execute(delete(ConsoleSession).where(
                ConsoleSession.last_seen_at < now - self._idle))
            session.add(ConsoleSession(id=sha256_hex(secret.encode()),
                                       token_sha256=token_sha256, csrf_token=info.csrf_token,
                                       created_at=now, last_seen_at=now))
        await self._db.write(add)
        return secret, info

    async def find(self, secret: str, now: datetime) -> SessionInfo | None:
        """The live session of a cookie secret (its idle clock restarted), or None."""
        key = sha256_hex(secret.encode())
        row = await self._db.read(lambda s: s.execute(
            select(ConsoleSession.token_sha256, ConsoleSession.csrf_token,
                   ConsoleSession.last_seen_at).where(ConsoleSession.id == key)).first())
        if row is None or row.last_seen_at < now - self._idle:
            return None
        if row.last_seen_at < now - timedelta(seconds=TOUCH_EVERY_S):
            await self._db.write(lambda s: s.execute(
                update(ConsoleSession).where(ConsoleSession.id == key)
                .values(last_seen_at=now)))
        return SessionInfo(row.token_sha256, row.csrf_token)

    async def close(self, secret: str) -> None:
        key = sha256_hex(secret.encode())
        await self._db.write(lambda s: s.execute(
            delete(ConsoleSession).where(ConsoleSession.id == key)))
