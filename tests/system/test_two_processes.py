"""Two real processes raising the same alert ids at the same moment on PostgreSQL.

The database must end with exactly one alert and one ticket per id: the unique constraint on
(source, uid), INSERT ... ON CONFLICT DO NOTHING and the row lock decide the race, not luck.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.store.models import Alert, Ticket
from tests.conftest import PG_SCHEMA, PG_URL, pg_database, require_postgres, reset_postgres

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres


def test_two_processes_one_alert_one_ticket_per_id() -> None:
    require_postgres()
    asyncio.run(reset_postgres())

    async def migrate() -> None:
        db = pg_database()
        await db.upgrade()
        await db.dispose()

    asyncio.run(migrate())
    uids = [str(uuid.uuid4()) for _ in range(300)]
    start = time.time() + 3.0
    processes = [
        subprocess.Popen([sys.executable, "-m", "tests.race_worker", PG_URL, PG_SCHEMA, channel,
                          str(start), *uids],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for channel in ("smtp", "webhook")
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=90)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1])["outcomes"])

    # Each process saw every id once; across both, exactly one "opened" per id.
    assert all(set(r) == set(uids) for r in results)
    per_uid = {uid: Counter(r[uid] for r in results) for uid in uids}
    assert all(c == Counter({"opened": 1, "twin": 1}) for c in per_uid.values()), [
        (uid, c) for uid, c in per_uid.items() if c != Counter({"opened": 1, "twin": 1})][:5]
    # Both processes won some races: the test really raced.
    opened_by = Counter(i for i, r in enumerate(results) for o in r.values() if o == "opened")
    print(f"opened by process: {dict(opened_by)}")

    async def count() -> tuple[int, int, set[int], set[tuple[str, ...]]]:
        db = pg_database()
        def read(session: Session) -> tuple[int, int, set[int], set[tuple[str, ...]]]:
            alerts = session.scalar(select(func.count()).select_from(Alert))
            tickets = session.scalar(select(func.count()).select_from(Ticket))
            occurrences = set(session.scalars(select(Alert.occurrences)))
            channels = {tuple(sorted(c)) for c in session.scalars(select(Alert.channels))}
            return alerts or 0, tickets or 0, occurrences, channels
        try:
            return await db.read(read)
        finally:
            await db.dispose()

    alerts, tickets, occurrences, channels = asyncio.run(count())
    assert (alerts, tickets) == (len(uids), len(uids))
    assert occurrences == {2}
    assert channels == {("smtp", "webhook")}
