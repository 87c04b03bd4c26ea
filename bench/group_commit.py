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


class GroupCommitWriter:
    """`await writer.commit(body)` returns once `body` is committed. Create it on the event
    loop that will await it."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
        self._loop = asyncio.get_running_loop()
        self._waiting: queue.SimpleQueue[tuple[bytes, asyncio.Future[None]]] = (
            queue.SimpleQueue())
        threading.Thread(target=self._write, daemon=True).start()

    async def commit(self, body: bytes) -> None:
        committed = self._loop.create_future()
        self._waiting.put((body, committed))
        await committed

    def _write(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO rows (body) VALUES (?)",
                                 [(body,) for body, _ in batch])
            self._db.execute("COMMIT")
            self._loop.call_soon_threadsafe(_resolve, [done for _, done in batch])


def _resolve(batch: list[asyncio.Future[None]]) -> None:
    for done in batch:
        done.set_result(None)
