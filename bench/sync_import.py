"""Benchmark: import 50,000 Syncro assets (1,000 pages of 50) from the fake Syncro API.

The fake runs in its own process (its 50,000 records must not count in our memory); the sync
runs here, on SQLite in a temporary directory, with the rate limit scaled down in time
(180 requests per `--window-s` instead of per 60 s, on both sides) so the run takes about a
minute instead of six. Printed:

- the fraction of the allowed request rate the asset listing used: the mean number of
  requests per full rate window of the listing / 180 (aim: at least 90 %), and the fake's
  429 count (aim: zero);
- the wall time of the asset import (customers are imported first, untimed);
- peak RSS growth of this process during the import (aim: under 100 MB), from
  getrusage's ru_maxrss against the RSS before it.

Run: .venv/bin/python bench/sync_import.py [--assets 50000] [--window-s 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import alertd_context  # noqa: E402
from daemon.rmm.clients import RmmClients  # noqa: E402
from daemon.rmm.syncro import SyncroClient, SyncroLimits  # noqa: E402
from daemon.sync.runner import SyncRunner  # noqa: E402

SYNCRO_LIMIT = 180  # requests per window, per source address (rmm-facts.md)

FAKE_SERVER = """
import asyncio, json, sys
from aiohttp import web
sys.path.insert(0, {root!r})
from tests.fakes.syncro import SyncroFake

async def main() -> None:
    fake = SyncroFake(api_key="bench", window_s={window_s}, rate_limit={limit})
    customers = [fake.add_customer(f"Customer {{n:04}}")["id"] for n in range({customers})]
    for n in range({assets}):
        fake.add_asset(customers[n % len(customers)], serial=f"SN-{{n:06}}",
                       properties={{"Warranty Expires": "2027-05-31", "os": "Windows 11"}})
    runner = web.AppRunner(fake.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()

    async def stats(request: web.Request) -> web.Response:
        statuses = [c.status for c in fake.calls]
        return web.json_response({{
            "requests": len(statuses), "429": statuses.count(429),
            "max_in_window": fake.max_rate_in_window(),
            "asset_calls": [c.at_s for c in fake.calls if c.path.endswith("/customer_assets")
                            and c.status == 200]}})
    stats_app = web.Application()
    stats_app.router.add_get("/stats", stats)
    stats_runner = web.AppRunner(stats_app)
    await stats_runner.setup()
    stats_site = web.TCPSite(stats_runner, "127.0.0.1", 0)
    await stats_site.start()
    ports = [s.getsockname()[1] for s in (site._server.sockets + stats_site._server.sockets)]
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--window-s", type=float, default=6.0,
                        help="the rate window, scaled down from Syncro's 60 s")
    args = parser.parse_args()

    fake = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FAKE_SERVER.format(
            root=str(ROOT), window_s=args.window_s, limit=SYNCRO_LIMIT,
            customers=args.customers, assets=args.assets),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert fake.stdout is not None
        api_port, stats_port = json.loads(await fake.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            ctx = await alertd_context(Path(tmp), """
                [sync.syncro]
                field_mappings = [{ field = "warranty", custom = "Warranty Expires" }]
                """.replace("\n                ", "\n"))
            async with aiohttp.ClientSession() as http:
                client = SyncroClient(http, f"http://127.0.0.1:{api_port}/api/v1", "bench",
                                      limits=SyncroLimits(window_s=args.window_s))
                runner = SyncRunner(ctx.db, RmmClients(syncro=client), ctx.config.sync)
                customers = await runner.run("syncro", customers=True, assets=False)
                print(f"customers: {customers.summary()}")
                rss_before = rss_mib()
                started = time.perf_counter()
                report = await runner.run("syncro", customers=False, assets=True)
                wall_s = time.perf_counter() - started
                peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                async with http.get(f"http://127.0.0.1:{stats_port}/stats") as response:
                    stats = await response.json()
            await ctx.db.dispose()
    finally:
        fake.terminate()
        await fake.wait()

    calls = stats["asset_calls"]
    listing_s = calls[-1] - calls[0]
    # The allowance is per rolling window: cut the listing into consecutive full windows
    # from its first request and compare each window's requests with the 180 allowed.
    full_windows = int(listing_s // args.window_s)
    per_window = [sum(1 for at in calls if calls[0] + k * args.window_s <= at
                      < calls[0] + (k + 1) * args.window_s) for k in range(full_windows)]
    used = sum(per_window) / (full_windows * SYNCRO_LIMIT) if full_windows else 0.0
    print(f"assets:    {report.summary()}")
    print(f"asset pages fetched: {len(calls)} in {listing_s:.1f} s; allowed 180 per "
          f"{args.window_s:g} s; requests per full window: {per_window}")
    print(f"fraction of the allowed request rate used (mean over {full_windows} full "
          f"windows): {used:.1%}; fake's 429 answers: {stats['429']}; most requests in one "
          f"rolling window: {stats['max_in_window']}/{SYNCRO_LIMIT}")
    print(f"wall time of the asset import: {wall_s:.1f} s "
          f"({args.assets / wall_s:,.0f} assets/s)")
    print(f"RSS before: {rss_before:.0f} MiB; peak: {peak_mib:.0f} MiB; "
          f"growth: {peak_mib - rss_before:.0f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
