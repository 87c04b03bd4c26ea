"""The bare references' storage (../shared/perf-notes.md): one SQLite row per input,
committed by adaptive group commit - one writer thread; each commit takes every row that
queued while the previous commit ran; synchronous=FULL; each caller resumes after the commit
that holds its row."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from pathlib import Path

_STOP = None  # queued by close(): the writer thread ends


class GroupCommitWriter:
    """`await writer.commit(body)` returns once `body` is committed. Create it on the event
    loop that will await it; `close()` ends the writer thread (rows queued before are
    committed first)."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
        self._loop = asyncio.get_running_loop()
        self._waiting: queue.SimpleQueue[tuple[bytes, asyncio.Future[None]] | None] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    async def commit(self, body: bytes) -> None:
        committed = self._loop.create_future()
        self._waiting.put((body, committed))
        await committed

    def count(self) -> int:
        """Rows committed so far (call after `close`, or accept a racing answer)."""
        return int(self._db.execute("SELECT count(*) FROM rows").fetchone()[0])

    def close(self) -> None:
        self._waiting.put(_STOP)
        self._thread.join()

    def _write(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            rows = [item for item in batch if item is not _STOP]
            if rows:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO rows (body) VALUES (?)",
                                     [(body,) for body, _ in rows])
                self._db.execute("COMMIT")
                self._loop.call_soon_threadsafe(_resolve, [done for _, done in rows])
            if len(rows) < len(batch):
                return


def _resolve(batch: list[asyncio.Future[None]]) -> None:
    for done in batch:
        done.set_result(None)
