"""Benchmark: browsing 100,000 tickets through the real app on loopback: a tickets page, a page
filtered by customer, one ticket (GET /api/tickets/{id}), and full-text searches (a common
pair of words, a rare device name), then the console's tickets page, ticket page and search
(signed in), against the bare reference, in the same run.

The reference (../shared/perf-notes.md, the bare aiohttp handler of the HTTP figures): these
routes read and commit nothing, so the handler to divide by is the bare aiohttp one without
the database: it answers the same JSON (the same bytes, serialised on each request) for the
same URL. The ratio is therefore everything alertd adds to the HTTP round trip: the query,
the ORM, the views. Targets (the brief): a page < 150 ms p95, a search < 300 ms p95.

The database gets 200 customers, 600 sites, 3,000 end users and 5,000 assets, 100,000
alerts and their tickets (placed on those records, so every name is joined), 10,000 notes
(bench/common.py `fill`, shared with bench/ticket_scale.py).
PostgreSQL runs in a schema of its own (dropped afterwards) and is ANALYZEd after the fill,
as autovacuum would; SQLite is not (alertd never runs ANALYZE there).

    .venv/bin/python bench/tickets_browse.py [--tickets 100000] [--requests 400]
        [--concurrency 4] [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]

Measured in one run on the development VM (CPython 3.11, SQLite 3.40 WAL, the local
PostgreSQL on loopback; client and server share one process and event loop; 100,000 tickets,
400 requests per route, 4 connections; p50 / p95 in ms; the ratio is alertd / bare at p50
and p95; compare ratios within one run only):

    SQLite                bare          alertd         ratio p50 / p95
    tickets page          5.3 /  6.4    33.4 / 63.8     6.3x / 10.0x
    page of a customer    5.0 /  6.9    36.1 / 72.6     7.2x / 10.5x
    one ticket            1.2 /  1.7    11.3 / 21.5     9.0x / 12.6x
    search 'disk full'    3.7 /  5.6    34.2 / 74.6     9.2x / 13.2x
    search device         1.7 /  2.3    17.3 / 36.0    10.0x / 15.8x
    PostgreSQL
    tickets page          4.8 /  7.9    43.9 / 62.6     9.1x /  8.0x
    page of a customer    5.6 /  7.3    36.2 / 56.2     6.4x /  7.7x
    one ticket            0.8 /  0.9    11.9 / 18.2    15.7x / 19.9x
    search 'disk full'    2.6 /  3.6    50.8 / 77.8    19.5x / 21.3x
    search device         1.8 /  2.1    67.2 / 98.5    36.9x / 47.2x

The console's pages (server-rendered HTML of the same reads, 50 tickets a page; the bare
reference answers the same HTML bytes), measured in a later run on the same VM:

    SQLite                    bare          alertd         ratio p50 / p95
    console: tickets page     1.0 /  1.2    36.3 / 69.0    37.1x / 56.1x
    console: one ticket       0.6 /  0.8    21.2 / 31.9    36.0x / 40.7x
    console: search           0.6 /  1.0    39.2 / 82.1    62.5x / 85.3x
    PostgreSQL
    console: tickets page     1.0 /  1.2    47.3 / 67.6    45.4x / 55.9x
    console: one ticket       0.6 /  0.7    23.2 / 33.1    37.3x / 45.4x
    console: search           1.0 /  1.3    58.9 / 84.4    59.4x / 67.4x

Every route stays well inside the targets on both backends. Before the search's ids were
taken from the GIN index in a MATERIALIZED CTE, PostgreSQL walked the newest tickets and
computed to_tsvector for each: a rare word took 1.1 s p50 (20,000 tickets). Selecting
plain columns instead of ORM entities for a ticket page took it from 7.2 to 4.9 ms of
server time (SQLite, in process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    ASSETS,
    bench_config,
    bench_database,
    cuts_ms,
    fill,
    serve,
    serving_alertd,
)
from daemon.config import Config  # noqa: E402
from daemon.store.database import Database  # noqa: E402


async def load(url: str, paths: list[str], concurrency: int, headers: dict[str, str]
               ) -> list[float]:
    """GET each of `paths` with `concurrency` connections; the latencies in seconds."""
    latencies: list[float] = []
    todo = iter(paths)

    async def client(session: aiohttp.ClientSession) -> None:
        for path in todo:
            started = time.perf_counter()
            async with session.get(url + path, headers=headers) as response:
                await response.read()
                assert response.status == 200, (path, response.status)
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(client(s) for _ in range(concurrency)))
    return latencies


def bare_app(answers: dict[str, Any]) -> web.Application:
    """The reference: the same JSON for the same URL, serialised on each request (a console
    page: the same HTML bytes)."""
    async def handler(request: web.Request) -> web.Response:
        answer = answers[request.path_qs]
        if isinstance(answer, str):
            return web.Response(text=answer, content_type="text/html")
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


def scenarios(tickets: int, requests: int) -> dict[str, list[str]]:
    rng = random.Random(11)
    return {
        "tickets page": ["/api/tickets?limit=100"] * requests,
        "page of a customer": [f"/api/tickets?limit=100&customer_id={rng.randrange(1, 200)}"
                               for _ in range(requests)],
        "one ticket": [f"/api/tickets/{rng.randrange(1, tickets + 1)}" for _ in range(requests)],
        "search 'disk full'": ["/api/tickets?limit=100&q=disk%20full"] * requests,
        "search device": [f"/api/tickets?limit=100&q=WS-{rng.randrange(ASSETS):04}"
                          for _ in range(requests)],
        # The console renders the same reads as HTML (50 tickets a page).
        "console: tickets page": ["/ui/tickets"] * requests,
        "console: one ticket": [f"/ui/tickets/{rng.randrange(1, tickets + 1)}"
                                for _ in range(requests)],
        "console: search": ["/ui/tickets?q=disk+full"] * requests,
    }


async def measure(name: str, db_url: str, tmp: Path, args: argparse.Namespace,
                  schema: str = "") -> dict[str, tuple[float, float, float, float]]:
    """{scenario: (bare p50, bare p95, alertd p50, alertd p95)} on one backend."""
    config = bench_config(tmp / name, db_url, schema)
    async with bench_database(config.database.url, schema) as db:
        started = time.perf_counter()
        await db.write(lambda s: fill(s, args.tickets))
        if schema:
            await db.run_on_connection(lambda c: c.exec_driver_sql("ANALYZE"))
        print(f"{name}: {args.tickets:,} tickets filled in "
              f"{time.perf_counter() - started:.1f} s")
        return await measure_app(config, db, args)


async def measure_app(config: Config, db: Database, args: argparse.Namespace
                      ) -> dict[str, tuple[float, float, float, float]]:
    """The scenarios against alertd on `db` (filled) and against the bare reference."""
    results = {}
    async with serving_alertd(config, db) as (url, headers):
        async with aiohttp.ClientSession(headers=headers) as session:
            answers: dict[str, Any] = {}
            for paths in scenarios(args.tickets, args.requests).values():
                for path in set(paths):
                    async with session.get(url + path) as response:
                        answers[path] = (await response.json() if path.startswith("/api/")
                                         else await response.text())
        bare_runner, bare_url = await serve(bare_app(answers))
        try:
            for scenario, paths in scenarios(args.tickets, args.requests).items():
                await load(url, paths[:50], args.concurrency, headers)  # warm-up
                ours = cuts_ms(await load(url, paths, args.concurrency, headers))
                bare = cuts_ms(await load(bare_url, paths, args.concurrency, {}))
                results[scenario] = (*bare, *ours)
                print(f"  {scenario:<20} bare {bare[0]:6.1f} / {bare[1]:6.1f} ms   alertd "
                      f"{ours[0]:6.1f} / {ours[1]:6.1f} ms   ratio p50 {ours[0] / bare[0]:5.1f}x"
                      f"  p95 {ours[1] / bare[1]:5.1f}x")
        finally:
            await bare_runner.cleanup()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--postgres", help="also run on this PostgreSQL URL (in a schema of "
                                           "its own, dropped afterwards)")
    args = parser.parse_args()
    print(f"{args.requests} requests per route, {args.concurrency} connections, loopback; "
          "p50 / p95")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        await measure("sqlite", f"sqlite:///{tmp / 'browse.db'}", tmp, args)
        if args.postgres:
            await measure("postgresql", args.postgres, tmp, args,
                          schema=f"alertd_bench_{os.getpid()}")


if __name__ == "__main__":
    asyncio.run(main())
