"""A separate process for tests/test_two_processes.py: raise many alert ids on one channel.

Usage: python -m tests.race_worker DB_URL PG_SCHEMA CHANNEL START_EPOCH_S UID...
Waits until START_EPOCH_S (so both processes begin together), raises every uid with 16
concurrent tasks, prints one JSON line: {"outcomes": {uid: outcome}}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from daemon.core.api_event import interpret_api_delivery
from daemon.core.events import Channel
from daemon.intake.pipeline import Pipeline
from daemon.metrics import Metrics
from daemon.store.database import Database
from tests.helpers import deliver


async def main(url: str, schema: str, channel: str, start_epoch_s: float, uids: list[str]
               ) -> None:
    db = Database(url, pool_size=16, pg_schema=schema)
    pipeline = Pipeline(db, Metrics(), {c.value: interpret_api_delivery for c in Channel})
    await db.ping()  # connect before the start line, so both processes race on the work
    outcomes: dict[str, str] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for uid in uids:
        queue.put_nowait(uid)

    async def work() -> None:
        while not queue.empty():
            uid = queue.get_nowait()
            result = await deliver(pipeline, uid, "raise", Channel(channel))
            outcomes[uid] = result.events[0].outcome

    await asyncio.sleep(max(0.0, start_epoch_s - time.time()))
    await asyncio.gather(*(work() for _ in range(16)))
    await db.dispose()
    print(json.dumps({"outcomes": outcomes}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:]))
