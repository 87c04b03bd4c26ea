"""Where each IMAP account's folder has been read up to: (UIDVALIDITY, last UID)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from daemon.store.database import Database
from daemon.store.models import ImapCheckpoint


class ImapCheckpoints:
    def __init__(self, db: Database):
        self._db = db

    async def get(self, account: str, folder: str) -> tuple[int, int] | None:
        """(uidvalidity, last uid) saved for the folder, or None before its first batch."""
        row = await self._db.read(lambda s: s.get(ImapCheckpoint, (account, folder)))
        return (row.uidvalidity, row.last_uid) if row else None

    async def save(self, account: str, folder: str, uidvalidity: int, last_uid: int,
                   now: datetime) -> None:
        def save(session: Session) -> None:
            row = session.get(ImapCheckpoint, (account, folder), with_for_update=True)
            if row is None:
                session.add(ImapCheckpoint(account=account, folder=folder,
                                           uidvalidity=uidvalidity, last_uid=last_uid,
                                           updated_at=now))
            else:
                row.uidvalidity, row.last_uid, row.updated_at = uidvalidity, last_uid, now
        await self._db.write(save)
