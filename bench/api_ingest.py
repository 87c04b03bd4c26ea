"""Benchmark: POST /api/alerts (raise, a new uid each time: delivery + alert + ticket) through the
real app on loopback, against a bare aiohttp handler that commits one SQLite row per request,
in the same run.

    .venv/bin/python bench/api_ingest.py [--requests 3000] [--concurrency 50] [--postgres URL]

Prints requests/s and p50/p99 latency for each target. Compare ratios within one run only
(../shared/perf-notes.md: run-to-run spread is 15-25 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from aiohttp import web
from common import TOKEN, alertd_context

from daemon.http.api import setup_api_routes
from daemon.http.app import create_app
from daemon.store.database import Database


async def load(url: str, requests: int, concurrency: int, headers: dict[str, str]
               ) -> tuple[float, list[float], int]:
    """POST `requests` raises with `concurrency` connections; (seconds, latencies, errors)."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        for _ in counter:
            body = {"source": "datto", "uid": str(uuid.uuid4()), "action": "raise",
                    "device": "BENCH-PC", "message": "x" * 700}  # ~1 KB body
            started = time.perf_counter()
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                if response.status not in (200, 201):
                    errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def bare_app(path: Path) -> web.Application:
    """The perf-notes reference: parse JSON, commit one row (FULL) in a one-thread executor."""
    executor = ThreadPoolExecutor(max_workers=1)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")

    def commit(body: bytes) -> None:
        connection.execute("BEGIN")
        connection.execute("INSERT INTO rows (body) VALUES (?)", (body,))
        connection.execute("COMMIT")

    async def handler(request: web.Request) -> web.Response:
        raw = await request.read()
        json.loads(raw)
        await asyncio.get_running_loop().run_in_executor(executor, commit, raw)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/alerts", handler)
    return app


async def alertd_app(tmp: Path, db_url: str) -> tuple[web.Application, Database]:
    ctx = await alertd_context(tmp, f'[database]\nurl = "{db_url}"\n', pool_size=20)
    return create_app(ctx.http, [setup_api_routes]), ctx.db


def report(name: str, requests: int, elapsed: float, latencies: list[float], errors: int
           ) -> float:
    rate = requests / elapsed
    cuts = statistics.quantiles(latencies, n=100)
    print(f"{name:<28} {rate:8.0f} req/s   p50 {cuts[49] * 1000:6.1f} ms   "
          f"p99 {cuts[98] * 1000:6.1f} ms   errors {errors}")
    return rate


async def run_target(name: str, make: Callable[[], Awaitable[web.Application]],
                     requests: int, concurrency: int, headers: dict[str, str]) -> float:
    app = await make()
    runner, port = await serve(app)
    try:
        url = f"http://127.0.0.1:{port}/api/alerts"
        await load(url, min(200, requests), concurrency, headers)  # warm-up
        elapsed, latencies, errors = await load(url, requests, concurrency, headers)
        return report(name, requests, elapsed, latencies, errors)
    finally:
        await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--postgres", help="also run against this PostgreSQL URL (its schema is "
                        "migrated and rows are added)")
    args = parser.parse_args()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(f"{args.requests} requests, {args.concurrency} connections, loopback")
        bare = await run_target("bare aiohttp + sqlite3", lambda: _async(bare_app(tmp / "b.db")),
                                args.requests, args.concurrency, {})
        databases: list[Database] = []

        async def make(url: str) -> web.Application:
            app, db = await alertd_app(tmp, url)
            databases.append(db)
            return app

        ours = await run_target("alertd /api/alerts (SQLite)",
                                lambda: make(f"sqlite:///{tmp / 'a.db'}"),
                                args.requests, args.concurrency, auth)
        print(f"ratio alertd/bare (SQLite): {ours / bare:.0%}")
        if args.postgres:
            await run_target("alertd /api/alerts (PostgreSQL)", lambda: make(args.postgres),
                             args.requests, args.concurrency, auth)
        for db in databases:
            await db.dispose()


async def _async(app: web.Application) -> web.Application:
    return app


if __name__ == "__main__":
    asyncio.run(main())
