"""Benchmark: does a /metrics scrape stay cheap with a million rows stored (issue 18, item 3)?
GET /metrics through the real app on loopback against databases of 1,000 and 1,000,000
deliveries (and as many outbox rows), in the same run; p50 / p95 at each size and the ratio
largest / smallest.

The reference is alertd itself on the smallest database, as in bench/ticket_scale.py: the
question is what growth costs. Each scrape reads the backlogs (counts over the waiting
statuses), the oldest waiting item, the newest input of each channel and the newest sync run
of each source; a scrape that walked the table would grow with it.

Each database holds N deliveries over the channels smtp, api, webhook (datto, syncro) and
poll, all processed but 20 received and 20 failed; N/2 outbox rows, all done but 15 pending
and 5 dead; 30 sync runs.

    .venv/bin/python bench/metrics_scrape.py [--sizes 1000 1000000] [--scrapes 200]
        [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]

Measured on the development VM (2 vCPU, CPython 3.11.7, SQLite 3.40.1 in WAL, PostgreSQL
15 on loopback; client and server in one process), 200 scrapes per size; p50 / p95 in ms:

    SQLite          1,000 deliveries   3.8 / 4.3     1,000,000   3.5 / 4.9    0.94x / 1.14x
    PostgreSQL      1,000 deliveries   6.7 / 7.2     1,000,000   6.1 / 7.4    0.91x / 1.04x

PostgreSQL before migration 0014 (extended statistics on deliveries (channel, source)):
6.0 / 6.6 against 118.5 / 134.3 ms, 19.9x: the planner walked the primary key backwards
through every row for a (channel, source) pair that has no delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_config, bench_database, cuts_ms, serving_alertd
from daemon.core.clock import utcnow
from daemon.store.models import Delivery, OutboxAction, SyncRun

CHANNELS = [("smtp", None), ("api", "datto"), ("webhook", "datto"), ("webhook", "syncro"),
            ("poll", "datto")]
CHUNK = 50_000


def fill(session: Session, deliveries: int) -> None:
    start = utcnow() - timedelta(days=30)
    step_s = 30 * 86400 / deliveries
    for first in range(0, deliveries, CHUNK):
        rows = []
        for n in range(first, min(first + CHUNK, deliveries)):
            channel, source = CHANNELS[n % len(CHANNELS)]
            status = ("received" if n >= deliveries - 20 else
                      "failed" if n % (deliveries // 20) == 0 else "processed")
            moment = start + timedelta(seconds=n * step_s)
            rows.append({"channel": channel, "source": source, "dedupe_key": f"k{n}",
                         "received_at": moment, "content_type": "application/json",
                         "payload": b"{}", "meta": {}, "status": status, "attempts": 1,
                         "next_attempt_at": moment if status == "received" else None})
        session.execute(insert(Delivery), rows)
    outbox = deliveries // 2
    for first in range(0, outbox, CHUNK):
        session.execute(insert(OutboxAction), [
            {"action": "resolve_alert", "source": "datto", "target": f"uid-{n}",
             "status": "pending" if n >= outbox - 15 else "dead" if n < 5 else "done",
             "attempts": 1, "next_attempt_at": start, "created_at": start + timedelta(
                 seconds=n * step_s)}
            for n in range(first, min(first + CHUNK, outbox))])
    session.execute(insert(SyncRun), [
        {"source": ("datto", "syncro")[n % 2], "entities": "customers", "trigger": "schedule",
         "started_at": start + timedelta(days=n), "finished_at": start + timedelta(days=n),
         "status": "failed" if n % 7 == 0 else "ok"} for n in range(30)])


async def measure(url: str, scrapes: int) -> list[float]:
    latencies = []
    async with aiohttp.ClientSession() as client:
        for _ in range(scrapes):
            began = time.perf_counter()
            async with client.get(url + "/metrics") as response:
                body = await response.read()
                assert response.status == 200 and b"alertd_store_figures_ok 1.0" in body
            latencies.append(time.perf_counter() - began)
    return latencies


async def run_size(size: int, scrapes: int, state: Path, postgres: str) -> tuple[float, float]:
    schema = f"bench_metrics_{size}" if postgres else ""
    url = postgres or f"sqlite+aiosqlite:///{state / f'm{size}.db'}"
    async with bench_database(url, schema) as db:
        began = time.perf_counter()
        await db.write(lambda session: fill(session, size))
        if postgres:
            await db.run_on_connection(lambda c: c.exec_driver_sql("ANALYZE"))
        print(f"  {size:,} deliveries filled in {time.perf_counter() - began:.0f} s",
              flush=True)
        config = bench_config(state / f"s{size}", postgres, schema)
        async with serving_alertd(config, db) as (base, _):
            await measure(base, 10)  # warm the caches and the pool
            return cuts_ms(await measure(base, scrapes))


async def main(args: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {size: await run_size(size, args.scrapes, Path(tmp), args.postgres)
                   for size in args.sizes}
    smallest, largest = min(args.sizes), max(args.sizes)
    print(f"GET /metrics, {'PostgreSQL' if args.postgres else 'SQLite'}; p50 / p95 ms")
    for size, (p50, p95) in results.items():
        print(f"  {size:>9,} deliveries  {p50:6.1f} / {p95:6.1f}")
    (p50_small, p95_small), (p50_large, p95_large) = results[smallest], results[largest]
    print(f"  ratio {largest:,} / {smallest:,}: {p50_large / p50_small:.2f}x / "
          f"{p95_large / p95_small:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 1_000_000])
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--postgres", default="")
    asyncio.run(main(parser.parse_args()))
