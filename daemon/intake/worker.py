"""The delivery worker: processes submitted deliveries, and sweeps for due retries and for what
a previous run left `received`."""

from __future__ import annotations

import asyncio
import logging

from daemon.intake.pipeline import Pipeline

log = logging.getLogger(__name__)


class DeliveryQueue:
    """Delivery ids waiting for the worker, lowest (oldest) first, each at most once.

    The pipeline puts what `submit` stored (`put` is its `on_submitted`); the sweep puts what
    is due in the database."""

    def __init__(self) -> None:
        # By id: the order in which deliveries were stored, even when puts arrive out of it.
        self._queue: asyncio.PriorityQueue[int] = asyncio.PriorityQueue()
        self._queued: set[int] = set()

    def put(self, delivery_id: int) -> None:
        if delivery_id not in self._queued:
            self._queued.add(delivery_id)
            self._queue.put_nowait(delivery_id)

    async def get(self) -> int:
        return await self._queue.get()

    def done(self, delivery_id: int) -> None:
        self._queued.discard(delivery_id)
        self._queue.task_done()

    async def join(self) -> None:
        await self._queue.join()

    def __len__(self) -> int:
        return len(self._queued)


class DeliveryWorker:
    """Processes queued deliveries with `concurrency` consumers.

    One consumer by default, so deliveries are applied in the order they were stored. The end
    state does not depend on it (a raise after its resolve records the ticket closed), but the
    ticket history reads as it happened.
    """

    def __init__(self, pipeline: Pipeline, queue: DeliveryQueue, concurrency: int = 1):
        self._pipeline = pipeline
        self.queue = queue
        self._concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []

    async def sweep(self) -> int:
        """Queue every due `received` delivery (startup recovery and retries)."""
        ids = await self._pipeline.due_ids()
        for delivery_id in ids:
            self.queue.put(delivery_id)
        return len(ids)

    async def recover(self) -> int:
        """Startup: queue every `received` delivery, including attempts a crash interrupted
        (they would otherwise wait out their retry delay)."""
        await self._pipeline.make_all_due()
        return await self.sweep()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"delivery-worker-{n}")
                       for n in range(self._concurrency)]

    async def _work(self) -> None:
        while True:
            delivery_id = await self.queue.get()
            try:
                await self._pipeline.process(delivery_id)
            except Exception:  # process() records errors itself; the consumer must not die
                log.exception("delivery %s: unexpected error in the worker", delivery_id)
            finally:
                self.queue.done(delivery_id)

    async def run_until_idle(self) -> None:
        """Sweep and process until nothing is queued (tests; no sleeping)."""
        await self.sweep()
        await self.queue.join()

    async def drain(self, deadline_s: float) -> None:
        """Let queued deliveries finish until `deadline_s`, then stop the consumers; what is
        left stays `received` and is processed on the next start."""
        try:
            if len(self.queue):
                await asyncio.wait_for(self.queue.join(), timeout=deadline_s)
        except TimeoutError:
            log.warning("drain deadline reached with %d deliveries queued; they stay received "
                        "and are processed on the next start", len(self.queue))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
