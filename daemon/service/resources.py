"""Each resource of `alertd run` as an async context manager: entering starts it, leaving stops
it and releases what it holds. The service enters them on one `AsyncExitStack`, so shutdown
releases exactly what started, in reverse order, even when starting fails half-way.

Stopping has two steps. `Shutdown.begin` closes every intake listener at once (no new mail,
no new requests) and starts the one drain deadline; then the stack unwinds, and each resource
finishes its in-flight work within what is left of that deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from daemon.config.runtime_sections import DatabaseConfig
from daemon.http.app import create_app
from daemon.http.listener import ConnectionLimits, HttpListener
from daemon.mail.smtp import SmtpHandler, start_smtp_server
from daemon.service.systemd import Notifier
from daemon.service.wiring import ROUTES, Services
from daemon.store.database import Database, open_database

if TYPE_CHECKING:
    from daemon.mail.imap import AccountReader

log = logging.getLogger(__name__)
# How long a reader thread gets to finish when the stop comes before any deadline was set.
_MIN_JOIN_S = 0.5


class Shutdown:
    """The drain deadline shared by every resource, and the intake listeners to close first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, drain_timeout_s: float):
        self._loop = loop
        self._drain_timeout_s = drain_timeout_s
        self._deadline: float | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def on_begin(self, close_intake: Callable[[], Awaitable[None]]) -> None:
        """Run `close_intake` when stopping begins (it must return quickly)."""
        self._closers.append(close_intake)

    async def begin(self) -> None:
        self._deadline = self._loop.time() + self._drain_timeout_s
        for close in self._closers:
            await close()

    def remaining_s(self, floor_s: float = 0.0) -> float:
        """Seconds left to drain (`floor_s` before stopping began: a start that failed)."""
        if self._deadline is None:
            return floor_s
        return max(floor_s, self._deadline - self._loop.time())


@contextlib.asynccontextmanager
async def database(section: DatabaseConfig) -> AsyncIterator[Database]:
    """The database, migrated (or refused with the command to run)."""
    db = open_database(section)
    try:
        await db.ensure_schema(section.auto_migrate)
        yield db
    finally:
        await db.dispose()


@contextlib.asynccontextmanager
async def rmm_clients(services: Services) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await services.rmm.close()


@contextlib.asynccontextmanager
async def outbox_worker(services: Services) -> AsyncIterator[None]:
    """Sends what alertd owes the RMMs, including what a previous run left pending."""
    services.outbox.start()
    try:
        yield
    finally:
        # An interrupted send keeps its row pending; its lease expires and it is sent again.
        await services.outbox.stop()
        await services.notifiers.close()


@contextlib.asynccontextmanager
async def delivery_worker(services: Services, shutdown: Shutdown) -> AsyncIterator[int]:
    """Processes submitted deliveries; yields how many the startup sweep recovered."""
    worker = services.worker
    worker.start()
    try:
        yield await worker.recover()
    finally:
        await worker.drain(shutdown.remaining_s())


@contextlib.asynccontextmanager
async def http_site(services: Services, shutdown: Shutdown) -> AsyncIterator[int]:
    """The HTTP listener (API, webhooks, health, metrics) with the `[http]` limits against
    slow clients; yields its port."""
    config = services.config
    section = config.http
    limits = ConnectionLimits(header_timeout_s=section.header_timeout_s,
                              body_timeout_s=section.body_timeout_s,
                              keepalive_timeout_s=section.keepalive_timeout_s,
                              max_connections=section.max_connections)
    listener = HttpListener(create_app(services.http, ROUTES), limits,
                            shutdown_timeout_s=config.daemon.drain_timeout_s)
    try:
        port = await listener.start(section.listen.host, section.listen.port)
        services.readiness.listeners["http"] = True

        async def close() -> None:
            services.readiness.listeners["http"] = False
            await listener.stop_accepting()  # in-flight requests finish in cleanup

        shutdown.on_begin(close)
        yield port
    finally:
        services.readiness.listeners["http"] = False
        await listener.close()


@contextlib.asynccontextmanager
async def imap_readers(services: Services, shutdown: Shutdown) -> AsyncIterator[None]:
    """One reader thread per `[[imap.accounts]]` entry."""
    loop = asyncio.get_running_loop()
    readers: list[AccountReader] = []
    if services.config.imap.accounts:
        # Imported only for accounts: what the daemon imports stays resident for its whole
        # life, and imapclient with imaplib is ~0.8 MiB that SMTP and webhooks never use.
        from daemon.mail.imap import AccountReader, make_sink

    async def close() -> None:
        for reader in readers:
            reader.request_stop()

    shutdown.on_begin(close)
    try:
        for account in services.config.imap.accounts:
            def count_error(kind: str, name: str = account.name) -> None:
                services.metrics.imap_errors.labels(name, kind).inc()
            reader = AccountReader(account, make_sink(services.pipeline, services.checkpoints,
                                                      services.metrics), loop, count_error,
                                   services.health)
            reader.start()
            readers.append(reader)
        yield
    finally:
        await close()
        # In a thread: a reader may be waiting for this loop to store its message.
        remaining_s = shutdown.remaining_s(floor_s=_MIN_JOIN_S)
        await asyncio.gather(*(asyncio.to_thread(r.join, remaining_s) for r in readers))


@contextlib.asynccontextmanager
async def smtp_server(services: Services, shutdown: Shutdown) -> AsyncIterator[int | None]:
    """The SMTP listener when `[smtp] enabled`; yields its port (None when off)."""
    section = services.config.smtp
    if not section.enabled:
        yield None
        return
    server = await start_smtp_server(SmtpHandler(services.pipeline, section, services.metrics,
                                                 services.health), section)
    services.readiness.listeners["smtp"] = True

    async def close() -> None:
        services.readiness.listeners["smtp"] = False
        server.close()  # no new sessions

    shutdown.on_begin(close)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        await close()
        # Sessions in DATA finish their commit; the rest are cut when the deadline ends.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), shutdown.remaining_s(floor_s=0.1))


EXPIRY_INTERVAL_S = 60  # how late past its `expire_after` an alert may expire
CLEARED_INTERVAL_S = 30  # how late past its `close_after_clear` a ticket may close
RELEASE_INTERVAL_S = 30  # how late after its window a suppressed alert gets its ticket
SILENCE_INTERVAL_S = 60  # how late past its [watch] silence a channel is reported
MAIL_DEVICES_INTERVAL_S = 60  # how late a Datto mail alert's ticket gets its device's asset


def _then_notify(services: Services, job: Callable[[], Awaitable[Any]]
                 ) -> Callable[[], Awaitable[None]]:
    """`job`, then a wake-up of the outbox worker: the job may have queued notifications."""
    async def run() -> None:
        await job()
        if services.notifiers.by_name:
            services.outbox.kick()
    return run


@contextlib.asynccontextmanager
async def scheduler(services: Services) -> AsyncIterator[None]:
    """The periodic jobs: delivery sweep, outbox, alert expiry, sync, polling."""
    config = services.config
    jobs = AsyncIOScheduler()
    jobs.add_job(services.worker.sweep, "interval", seconds=config.pipeline.sweep_interval_s,
                 id="delivery-sweep", max_instances=1, coalesce=True)
    jobs.add_job(services.outbox.kick, "interval", seconds=config.outbox.interval_s,
                 id="outbox", max_instances=1, coalesce=True)
    # Always on: an email rule may set `expire_after` at any reload. With none set and no
    # `[lifecycle] expire_after`, a run finds no non-null entry in one index.
    jobs.add_job(_then_notify(services, services.expiry.run_once), "interval",
                 seconds=EXPIRY_INTERVAL_S,
                 id="alert-expiry", max_instances=1, coalesce=True)
    # Always on too: tickets may wait for `close_after_clear` from before a reload set it to 0.
    jobs.add_job(_then_notify(services, services.cleared.run_once), "interval",
                 seconds=CLEARED_INTERVAL_S,
                 id="ticket-cleared", max_instances=1, coalesce=True)
    # Suppressed alerts get their ticket within a minute of their window's end.
    jobs.add_job(_then_notify(services, services.release.run_once), "interval",
                 seconds=RELEASE_INTERVAL_S, id="maintenance-release", max_instances=1,
                 coalesce=True)
    if services.silence is not None:
        jobs.add_job(_then_notify(services, services.silence.run_once), "interval",
                     seconds=SILENCE_INTERVAL_S,
                     id="silent-channels", max_instances=1, coalesce=True)
    if services.mail_devices is not None:
        jobs.add_job(services.mail_devices.run_once, "interval", seconds=MAIL_DEVICES_INTERVAL_S,
                     id="datto-mail-devices", max_instances=1, coalesce=True)
    if config.sync.schedule != "off" and services.sync.enabled_sources():
        jobs.add_job(services.sync.run_scheduled, CronTrigger.from_crontab(config.sync.schedule),
                     id="sync", max_instances=1, coalesce=True, misfire_grace_time=3600)
    for poller, interval_s in services.pollers():
        jobs.add_job(poller.poll, "interval", seconds=interval_s, id=f"poll-{poller.source}",
                     max_instances=1, coalesce=True, next_run_time=datetime.now(UTC))
    jobs.start()
    try:
        yield
    finally:
        jobs.shutdown(wait=False)


@contextlib.asynccontextmanager
async def watchdog(notifier: Notifier, enabled: bool) -> AsyncIterator[None]:
    """WATCHDOG=1 at half systemd's WatchdogSec, while the event loop is alive."""
    interval_s = notifier.watchdog_interval_s
    if not (enabled and interval_s):
        yield
        return

    async def ping() -> None:
        while True:
            notifier.notify("WATCHDOG=1")
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(ping(), name="watchdog")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
