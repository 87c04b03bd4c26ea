"""Set-up shared by the benchmarks: an alertd context on a private state directory, a database
full of tickets, and the app serving it on loopback."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import statistics
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Connection, insert, text
from sqlalchemy.orm import Session

from daemon.config import Config, load_config
from daemon.core.clock import utcnow
from daemon.service.wiring import Services, build_services
from daemon.store.database import Database
from daemon.store.models import (
    Alert,
    Asset,
    Customer,
    Delivery,
    EndUser,
    ExternalRef,
    OutboxAction,
    Site,
    Ticket,
    TicketNote,
)

TOKEN = "bench-token-0123456789"


async def alertd_context(state_dir: Path, extra_toml: str = "", pool_size: int = 5
                         ) -> Services:
    """Config (defaults + `extra_toml`), migrated database and the wired services."""
    config = bench_config(state_dir, extra_toml=extra_toml)
    db = Database(config.database.url, pool_size=pool_size)
    await db.upgrade()
    return build_services(config, db)


# --- a database full of tickets, and the app serving it (tickets_browse, ticket_scale) -------

PROBLEMS = ["Disk C: 97% full", "Device offline", "Antivirus definitions out of date",
            "Windows Update failed", "Service Spooler stopped", "CPU above 95% for 15 minutes",
            "Memory usage above 90%", "Backup job failed", "Event log error 7031",
            "SMART warning on disk 0", "Firewall rule changed", "Certificate expires soon",
            "Low disk space on D:", "Patch install failed", "Printer queue stuck",
            "Agent not checking in", "RAID array degraded", "Temperature sensor high",
            "UPS on battery", "Scheduled task failed"]
WORDS = ("the agent reported again after reboot check volume shadow copy cleanup tmp logs "
         "vendor ticket escalated monitor threshold policy site technician remote").split()
CUSTOMERS, SITES, USERS, ASSETS = 200, 600, 3000, 5000
FILL_BATCH = 5000


def device_ref(asset: int) -> str:
    """The Datto device uid of asset number `asset` (0-based) in the filled database."""
    return f"dev-{asset:04}"


def fill(session: Session, tickets: int, history: bool = False) -> None:
    """The reference data (customers, sites, end users, assets and their Datto ids), then
    `tickets` alerts and tickets in batches (Core inserts): every third ticket closed, every
    tenth with a note.

    With `history`, each alert also has what intake and agents leave behind: the delivery
    that raised it (a ~0.5 KB JSON payload); and the closed tickets are closed as alertd
    closes them, alternately by an agent (alert resolved by ticket, a done resolve in the
    outbox) and upstream (a resolve delivery, alertd's note)."""
    rng = random.Random(7)
    now = utcnow()
    session.execute(insert(Customer), [{"name": f"Customer {n:03}", "active": True,
                                        "updated_at": now} for n in range(CUSTOMERS)])
    session.execute(insert(Site), [{"customer_id": 1 + n % CUSTOMERS, "name": f"Site {n:03}",
                                    "active": True, "updated_at": now} for n in range(SITES)])
    session.execute(insert(EndUser), [{"customer_id": 1 + n % CUSTOMERS, "name": f"User {n}",
                                       "email": f"user{n}@example.test", "active": True,
                                       "is_default": False, "updated_at": now}
                                      for n in range(USERS)])
    session.execute(insert(Asset), [{"customer_id": 1 + n % CUSTOMERS,
                                     "site_id": 1 + n % SITES, "end_user_id": 1 + n % USERS,
                                     "name": f"WS-{n:04}", "serial": f"SN-{n:06}",
                                     "active": True, "fields": {}, "updated_at": now}
                                    for n in range(ASSETS)])
    session.execute(insert(ExternalRef), [{"entity": "asset", "entity_id": 1 + n,
                                           "source": "datto", "external_id": device_ref(n)}
                                          for n in range(ASSETS)])
    for start in range(0, tickets, FILL_BATCH):
        ids = range(start + 1, min(tickets, start + FILL_BATCH) + 1)
        alerts, rows, notes = [], [], []
        deliveries: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        for n in ids:
            asset = rng.randrange(ASSETS)
            problem = rng.choice(PROBLEMS)
            seen = now - timedelta(seconds=tickets - n)
            details = f"{problem}. " + " ".join(rng.choices(WORDS, k=30))
            alert = {"id": n, "source": "datto", "uid": f"uid-{n:08}", "state": "open",
                     "first_seen_at": seen, "last_seen_at": seen, "channels": ["api"],
                     "occurrences": 1, "device": f"WS-{asset:04}", "message": problem}
            ticket = {"id": n, "type": "alert", "status": "open" if n % 3 else "closed",
                      "summary": f"WS-{asset:04} - {problem}", "details": details,
                      "customer_id": 1 + asset % CUSTOMERS, "site_id": 1 + asset % SITES,
                      "asset_id": 1 + asset, "end_user_id": 1 + asset % USERS,
                      "alert_id": n, "opened_at": seen}
            if n % 10 == 0:
                notes.append({"ticket_id": n, "created_at": now, "author": "agent:bench",
                              "body": "Checked."})
            if history:
                _add_history(n, seen, alert, ticket, details, deliveries, notes, outbox)
            alerts.append(alert)
            rows.append(ticket)
        session.execute(insert(Alert), alerts)
        session.execute(insert(Ticket), rows)
        session.execute(insert(TicketNote), notes)
        if deliveries:
            session.execute(insert(Delivery), deliveries)
        if outbox:
            session.execute(insert(OutboxAction), outbox)
    if session.get_bind().dialect.name == "postgresql":
        # The ids above were given, so the sequences never moved: what alertd adds next
        # must not collide with them.
        for table in ("alerts", "tickets"):
            session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"))


def _add_history(n: int, seen: datetime, alert: dict[str, Any], ticket: dict[str, Any],
                 details: str, deliveries: list[dict[str, Any]], notes: list[dict[str, Any]],
                 outbox: list[dict[str, Any]]) -> None:
    """What intake and an agent leave of alert/ticket `n` (see `fill`), into the lists."""
    def delivery(action: str, outcome: str) -> dict[str, Any]:
        body = {"source": "datto", "uid": alert["uid"], "action": action,
                "device": alert["device"], "message": details}
        payload = json.dumps(body).encode()
        return {"channel": "api", "source": "datto",
                "dedupe_key": f"sha256:{hashlib.sha256(payload).hexdigest()}",
                "received_at": seen, "status": "processed", "attempts": 1,
                "processed_at": seen, "outcome": outcome, "trace": {"interpreter": "api"},
                "content_type": "application/json", "meta": {"remote": "127.0.0.1"},
                "payload": payload, "alert_id": n}

    deliveries.append(delivery("raise", "opened"))
    if ticket["status"] != "closed":
        return
    ticket["closed_at"] = seen
    alert["state"], alert["resolved_at"] = "resolved", seen
    if n % 2 == 0:  # an agent closed it: alertd resolved the alert and told Datto
        ticket["closed_by"], alert["resolved_by"] = "agent:api", "ticket"
        outbox.append({"action": "resolve_alert", "source": "datto", "target": alert["uid"],
                       "alert_id": n, "status": "done", "attempts": 1,
                       "next_attempt_at": None, "created_at": seen, "done_at": seen})
    else:  # Datto resolved it
        ticket["closed_by"], alert["resolved_by"] = "upstream:datto", "upstream"
        deliveries.append(delivery("resolve", "resolved"))
        notes.append({"ticket_id": n, "created_at": seen, "author": "alertd",
                      "body": "Alert resolved in datto (reported by api); ticket closed by "
                              "alertd."})


def bench_config(state_dir: Path, db_url: str = "", schema: str = "", extra_toml: str = ""
                 ) -> Config:
    """The configuration of a benchmark's alertd: the defaults, the bench token, on `db_url`
    (a PostgreSQL `schema`) when given, else the state directory's SQLite; `extra_toml`
    appended."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "alertd.toml"
    database = (f'[database]\nurl = "{db_url}"\n' + (f'schema = "{schema}"\n' if schema else "")
                if db_url else "")
    path.write_text(f'[daemon]\nstate_dir = "{state_dir}"\n[api]\ntokens = ["{TOKEN}"]\n'
                    + database + extra_toml)
    return load_config(path, environ={})


@contextlib.asynccontextmanager
async def bench_database(url: str, schema: str = "", pool_size: int = 10
                         ) -> AsyncIterator[Database]:
    """A migrated database for a benchmark, disposed of afterwards. On PostgreSQL, in the
    schema `schema`: created empty first (a leftover of a killed run is dropped), dropped at
    the end."""
    db = Database(url, pool_size=pool_size, pg_schema=schema)
    try:
        if schema:
            def create(connection: Connection) -> None:
                connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
            await db.run_on_connection(create)
        await db.upgrade()
        yield db
    finally:
        try:
            if schema:
                await db.run_on_connection(lambda c: c.exec_driver_sql(
                    f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        finally:
            await db.dispose()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """`app` on an ephemeral loopback port: (its runner, its base URL)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def console_cookie(url: str) -> str:
    """Sign in to the console as a browser would; the session cookie for the requests."""
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP address host
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(url + "/ui/signin") as page:
            nonce = re.search(r'name="nonce" value="([^"]+)"', await page.text())
        assert nonce is not None
        async with session.post(url + "/ui/signin", allow_redirects=False,
                                data={"token": TOKEN, "nonce": nonce.group(1)}) as response:
            assert response.status == 303, response.status
        cookie = next(c for c in jar if c.key == "alertd_session")
    return f"alertd_session={cookie.value}"


@contextlib.asynccontextmanager
async def serving_alertd(config: Config, db: Database
                         ) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """alertd's app on `db`, served on loopback: (its base URL, request headers with the
    bench token and a signed-in console session). Stopped afterwards."""
    from daemon.http.app import create_app
    from daemon.service.wiring import ROUTES

    ctx = build_services(config, db)
    runner, url = await serve(create_app(ctx.http, ROUTES))
    try:
        yield url, {"Authorization": f"Bearer {TOKEN}", "Cookie": await console_cookie(url)}
    finally:
        await runner.cleanup()
        await ctx.rmm.close()


def cuts_ms(latencies: list[float]) -> tuple[float, float]:
    """p50 and p95 of `latencies` (seconds), in milliseconds."""
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[94] * 1000
