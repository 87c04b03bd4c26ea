"""The ticket pages' reads at scale, on SQLite's plans: each statement enters an index or walks
the newest tickets until a page is full, so its cost does not grow with the tables. No
timings here: bench/ticket_scale.py measures them with 1,000 and 100,000 tickets.

SQLite only: it has no statistics (alertd never runs ANALYZE there), so its plans follow
from the indexes and the statements alone; PostgreSQL's depend on the size of the tables.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from daemon.config import Config
from daemon.http.app import create_app
from daemon.service.wiring import ROUTES, build_services
from daemon.store import ticket_filters
from daemon.store.database import Database
from daemon.store.timeline import alert_timeline
from tests.api_client import TOKEN, Api

# Tables that grow with the tickets: reading one whole is what must never happen.
GROWING = ("tickets", "alerts", "deliveries", "outbox", "ticket_notes")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'alertd.db'}"


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
              db: Database, db_url: str) -> Api:
    config = make_config(f'[api]\ntokens = ["{TOKEN}"]\n', db_url=db_url)
    ctx = build_services(config, db)
    api = Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)
    for source, uid in (("datto", "u1"), ("syncro", "u2"), ("datto", "u3")):
        await api.call("POST", "/api/alerts",
                       body={"source": source, "uid": uid, "action": "raise"})
    await api.call("POST", "/api/tickets/1/close")  # a resolve in the outbox
    return api


@contextlib.contextmanager
def plans(db: Database, db_url: str) -> Iterator[list[list[str]]]:
    """SQLite's query plan (EXPLAIN QUERY PLAN lines) of each SELECT `db` sends while the block
    runs."""
    engine = db._sync_engine
    assert engine is not None
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append((statement, parameters))
    found: list[list[str]] = []
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", record)
    with contextlib.closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as conn:
        found.extend([row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}",
                                                     parameters)]
                     for statement, parameters in sent)


def unbounded_reads(plan: list[str], walks: bool = False, sorts: bool = False) -> list[str]:
    """The lines of `plan` whose work grows with the tables: a SCAN of a growing table, but
    for a walk of the tickets newest first that is not sorted afterwards (it stops once a
    page is full), allowed with `walks`; and a sort of the whole result, allowed with
    `sorts` where the rows are bounded (an alert uid's tickets, a source with few alerts)."""
    sorted_after = any(line.startswith("USE TEMP B-TREE FOR ORDER BY") for line in plan)
    found = []
    for line in plan:
        scanned = re.fullmatch(r"SCAN (\w+)", line)
        if scanned and scanned.group(1) in GROWING:
            if not (walks and scanned.group(1) == "tickets" and not sorted_after):
                found.append(line)
        elif line.startswith("USE TEMP B-TREE FOR ORDER BY") and not sorts:
            found.append(line)
    return found


# (filters, may walk the newest tickets, may sort a bounded result)
PAGES = [
    ({}, True, False), ({"status": "open"}, True, False), ({"customer_id": "1"}, True, False),
    # datto's two alerts are "many" (FEW_ALERTS is 2 here): walk its newest tickets.
    ({"source": "datto"}, True, False),
    # syncro's one alert is "few": its tickets through the index, sorted.
    ({"source": "syncro"}, False, True),
    # One alert per source at most: the (source, uid) index, never a walk.
    ({"alert_uid": "u2"}, False, True), ({"alert_uid": "u2", "source": "syncro"}, False, True),
]


@pytest.mark.parametrize(("params", "walks", "sorts"), PAGES)
async def test_a_tickets_page_does_work_bounded_by_the_page(
        api: Api, db_url: str, params: dict[str, str], walks: bool, sorts: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ticket_filters, "FEW_ALERTS", 2)
    with plans(api.ctx.db, db_url) as found:
        status, _ = await api.call("GET", "/api/tickets", params=params)
    assert status == 200 and found
    for plan in found:
        assert unbounded_reads(plan, walks, sorts) == [], plan


async def test_one_ticket_and_its_timeline_are_index_lookups(api: Api, db_url: str) -> None:
    with plans(api.ctx.db, db_url) as found:
        status, _ = await api.call("GET", "/api/tickets/1")
        await alert_timeline(api.ctx.db, [1])  # the console's ticket page adds it
    # ticket, its alerts, notes, trail, deliveries, outbox
    assert status == 200 and len(found) == 6
    for plan in found:
        assert unbounded_reads(plan) == [], plan
