"""/metrics as Prometheus scrapes it (issue 18, item 3): the gauges read from the database, the
latency histograms, build info and the process metrics, parsed with prometheus_client's own
parser."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from daemon import __version__
from daemon.core.clock import utcnow
from daemon.store.models import Delivery, OutboxAction, SyncRun
from tests.api_client import Api

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(api: Api) -> Samples:
    response = await api.client.get("/metrics")
    assert response.status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def raise_alert(api: Api, uid: str) -> dict[str, Any]:
    status, body = await api.call("POST", "/api/alerts", body={
        "source": "datto", "uid": uid, "action": "raise", "device": "FS-ACME-01",
        "message": "Disk C: 97% full"})
    assert status == 201, body
    return body


async def test_an_empty_store_scrapes_zero_backlogs_and_no_input(app: Api) -> None:
    samples = await scrape(app)
    assert value(samples, "alertd_store_figures_ok") == 1
    for state in ("received", "failed"):
        assert value(samples, "alertd_deliveries", state=state) == 0
    for state in ("pending", "dead"):
        assert value(samples, "alertd_outbox_rows", state=state) == 0
    for queue in ("deliveries", "outbox"):
        assert value(samples, "alertd_oldest_pending_seconds", queue=queue) == 0
    # Each channel's failures are counted from 0, so a rule sees the first one.
    for channel in ("smtp", "imap", "webhook", "poll", "api"):
        assert value(samples, "alertd_deliveries_finished_total", channel=channel,
                     status="failed") == 0
    assert not [key for key in samples if key[0] == "alertd_last_input_timestamp_seconds"]
    assert value(samples, "alertd_build_info", version=__version__) == 1
    assert value(samples, "process_resident_memory_bytes") > 0  # type: ignore[operator]
    assert value(samples, "process_open_fds") > 0  # type: ignore[operator]


async def test_an_input_shows_as_last_input_processing_and_request_time(app: Api) -> None:
    before = utcnow().timestamp()
    await raise_alert(app, "metrics-1")
    samples = await scrape(app)
    last_api = value(samples, "alertd_last_input_timestamp_seconds", channel="api")
    assert last_api is not None and before - 1 <= last_api <= utcnow().timestamp()
    assert value(samples, "alertd_processing_seconds_count", channel="api") == 1
    assert value(samples, "alertd_processing_seconds_bucket", channel="api", le="+Inf") == 1
    assert value(samples, "alertd_http_request_duration_seconds_count",
                 route="/api/alerts") == 1
    # The channels without input have no timestamp to give.
    assert value(samples, "alertd_last_input_timestamp_seconds", channel="smtp") is None
    # A replay is a person's choice, not intake time: not in the histogram.
    status, rejected = await app.call("POST", "/api/alerts", body={"source": "datto"})
    kept = re.search(r"rejected delivery (\d+)", rejected["detail"])
    assert status == 422 and kept is not None
    status, _ = await app.call("POST", f"/api/deliveries/{kept.group(1)}/replay")
    assert status == 200
    samples = await scrape(app)
    assert value(samples, "alertd_deliveries_finished_total", channel="api",
                 status="failed") == 1
    assert value(samples, "alertd_processing_seconds_count", channel="api") == 1


async def test_backlogs_count_and_age_what_waits(app: Api, monkeypatch: Any) -> None:
    first = await raise_alert(app, "metrics-2")
    await raise_alert(app, "metrics-3")
    ticket_id = first["events"][0]["ticket_id"]
    status, _ = await app.call("POST", f"/api/tickets/{ticket_id}/close",
                               body={"note": "fixed"})
    assert status == 200
    ten_minutes_ago = utcnow() - timedelta(minutes=10)

    def age_rows(session: Any) -> None:
        session.execute(update(OutboxAction).values(created_at=ten_minutes_ago))
        session.execute(update(Delivery).where(Delivery.id == first["delivery_id"])
                        .values(status="failed"))
        session.add_all([
            SyncRun(source="datto", entities="customers", trigger="schedule",
                    started_at=ten_minutes_ago, finished_at=ten_minutes_ago, status="ok"),
            SyncRun(source="datto", entities="customers", trigger="cli",
                    started_at=ten_minutes_ago, finished_at=ten_minutes_ago + timedelta(
                        minutes=1), status="failed"),
            SyncRun(source="syncro", entities="assets", trigger="schedule",
                    started_at=ten_minutes_ago, finished_at=ten_minutes_ago, status="failed"),
            SyncRun(source="datto", entities="assets", trigger="schedule",
                    started_at=ten_minutes_ago, finished_at=None, status="running")])
    await app.ctx.db.write(age_rows)
    # Datto's API keys and entities set, Syncro's not (its failed run is from before).
    monkeypatch.setattr(app.ctx.http.sync, "enabled_sources", lambda: ["datto"])
    samples = await scrape(app)
    assert value(samples, "alertd_deliveries", state="failed") == 1
    assert value(samples, "alertd_outbox_rows", state="pending") == 1
    oldest = value(samples, "alertd_oldest_pending_seconds", queue="outbox")
    assert oldest is not None and 600 <= oldest < 660
    assert value(samples, "alertd_last_sync_timestamp_seconds", source="datto",
                 result="ok") == pytest.approx(ten_minutes_ago.timestamp())
    # A run still going has no end to tell: the failed run's end stays the newest.
    assert value(samples, "alertd_last_sync_timestamp_seconds", source="datto",
                 result="failed") == pytest.approx(ten_minutes_ago.timestamp() + 60)
    # A source the scheduled sync does not cover has no series to alert on.
    assert not [key for key in samples if key[0] == "alertd_last_sync_timestamp_seconds"
                and ("source", "syncro") in key[1]]
    config = app.ctx.http.config
    monkeypatch.setattr(app.ctx.http, "config", msgspec.structs.replace(
        config, sync=msgspec.structs.replace(config.sync, schedule="off")))
    samples = await scrape(app)
    assert not [key for key in samples if key[0] == "alertd_last_sync_timestamp_seconds"]


async def test_an_unreadable_database_leaves_the_other_metrics(app: Api,
                                                              monkeypatch: Any) -> None:
    await raise_alert(app, "metrics-4")
    await scrape(app)

    async def unreachable(now: Any) -> Any:
        raise ConnectionError("database down")
    monkeypatch.setattr(app.ctx.http.activity, "figures", unreachable)
    samples = await scrape(app)
    assert value(samples, "alertd_store_figures_ok") == 0
    # None of the figures of the scrape before: stale values would mislead an alert rule.
    assert not [key for key in samples if key[0] in (
        "alertd_deliveries", "alertd_outbox_rows", "alertd_last_input_timestamp_seconds")]
    assert value(samples, "alertd_deliveries_accepted_total", channel="api") == 1
