"""PostgreSQL's side of the database handle: write units in group commits on a few lanes.

A unit alone in its transaction costs PostgreSQL a WAL flush and alertd a connection checkout,
a BEGIN and a COMMIT round trip. Here each lane (an asyncio task with its own transaction at a
time) takes every unit queued while its previous transaction ran, runs them in one
transaction, commits once, and only then answers each caller: the SQLite writer's group
commit, with `lanes` transactions under way at once so one slow batch does not hold up the
others (and so several alertd processes still interleave).

Units keep the contract of `daemon.store.database`: functions of the database state, with no
`await`. If any unit of a batch raises (a bug, a constraint, a deadlock between two batches
that lock the same alerts in different orders), the batch is rolled back and each of its units
runs again in a transaction of its own, so only the failing one fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session

from daemon.store.sqlite_writer import run_together, settle

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[Session], T]
# Units per transaction at most: bounds one batch's latency and its lock footprint.
MAX_BATCH = 64
_Item = tuple[Unit[Any], asyncio.Future[Any]]


class PgBatchWriter:
    """`await writer.submit(unit)` returns the unit's result once its transaction committed."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], lanes: int):
        self._sessions = sessions
        self._lanes = lanes
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, unit: Unit[T]) -> T:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:
            self._start(loop)
        assert self._queue is not None
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put_nowait((unit, future))
        return await future

    async def stop(self) -> None:
        """Let the lanes finish what is queued, then end them."""
        if self._queue is None or self._loop is not asyncio.get_running_loop():
            return
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks, self._queue, self._loop = [], None, None

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # A new event loop (tests run several): the old lanes died with theirs.
        self._loop = loop
        self._queue = asyncio.Queue()
        self._tasks = [loop.create_task(self._lane(), name=f"alertd-pg-writer-{n}")
                       for n in range(self._lanes)]

    async def _lane(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            item = await queue.get()
            if item is None:
                return
            batch = [item]
            stopping = False
            while len(batch) < MAX_BATCH and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                await self._commit(batch)
            except Exception:  # a lane must outlive any one batch
                log.exception("postgresql writer: a batch of %d write(s) could not be "
                              "answered", len(batch))
            if stopping:
                return

    async def _commit(self, batch: list[_Item]) -> None:
        if len(batch) == 1:
            await self._run_alone(batch[0])
            return
        units = [unit for unit, _ in batch]
        try:
            async with self._sessions.begin() as session:
                results = await session.run_sync(run_together, units)
        except Exception:
            # Rare path: rolled back as a whole; each unit again in its own transaction.
            for item in batch:
                await self._run_alone(item)
            return
        for (_, future), result in zip(batch, results, strict=True):
            settle(future, True, result)

    async def _run_alone(self, item: _Item) -> None:
        unit, future = item
        try:
            async with self._sessions.begin() as session:
                result = await session.run_sync(unit)
        except Exception as err:
            settle(future, False, err)
        else:
            settle(future, True, result)
