"""Composition root of `alertd run`: builds every resource, owns signals, starts and stops.

Start: database (migrate or refuse), API tokens, pipeline, HTTP listener, delivery worker and
scheduler, then READY=1. Stop (SIGTERM/SIGINT): STOPPING=1, close listeners (no new intake),
let in-flight requests and queued deliveries finish until `drain_timeout_s`, cancel the rest
(they stay `received` in the database and are processed on the next start), close the
database, exit 0. SIGHUP reloads what can change without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from daemon.config import Config, ConfigError, load_config
from daemon.http.api import setup_api_routes
from daemon.http.app import AppContext, create_app
from daemon.http.auth import TokenStore, ensure_generated_token, read_token_file
from daemon.interpreters import build_pipeline
from daemon.mail.imap import AccountReader, make_sink
from daemon.mail.interpret import RulesHolder
from daemon.mail.smtp import SmtpHandler, start_smtp_server
from daemon.metrics import Metrics
from daemon.outbox import OutboxPolicy, OutboxWorker
from daemon.pipeline import Pipeline
from daemon.rmm.clients import build_clients
from daemon.rmm.poll import Poller, datto_poller, syncro_poller
from daemon.rules.load import RulesError, load_rules
from daemon.store.database import Database, open_database
from daemon.store.queries import Queries
from daemon.sync.runner import SyncRunner
from daemon.systemd import Notifier
from daemon.tickets import TicketService
from daemon.webhooks.routes import setup_webhook_routes

log = logging.getLogger(__name__)

# Every HTTP feature's routes, in the order they are added to the one aiohttp app.
ROUTES = (setup_api_routes, setup_webhook_routes)


def api_tokens(config: Config) -> list[str]:
    """The configured tokens, or the generated token file's (created on first start)."""
    configured = [t.get_secret_value() for t in config.api.tokens]
    if configured:
        return configured
    return read_token_file(ensure_generated_token(config.daemon.state_dir))


async def build_context(config: Config, db: Database) -> AppContext:
    """Every service object the adapters share, wired once. Raises `RulesError`."""
    metrics = Metrics()
    tokens = api_tokens(config)
    rules = RulesHolder(load_rules(config.rules.path))
    rmm = build_clients(config)
    outbox = OutboxWorker(db, rmm.resolvers, metrics, outbox_policy(config))
    return AppContext(
        config=config,
        db=db,
        metrics=metrics,
        pipeline=build_pipeline(config, db, metrics, rules),
        tickets=TicketService(db, metrics, on_enqueued=outbox.kick),
        queries=Queries(db),
        tokens=TokenStore(tokens),
        rules=rules,
        outbox=outbox,
        rmm=rmm,
        sync=SyncRunner(db, rmm, config),
    )


def outbox_policy(config: Config) -> OutboxPolicy:
    section = config.outbox
    return OutboxPolicy(max_attempts=section.max_attempts, retry_base_s=section.retry_base_s,
                        retry_max_s=section.retry_max_s, lease_s=section.lease_s,
                        concurrency=section.concurrency)


def pollers(ctx: AppContext) -> list[tuple[Poller, float]]:
    """(poller, interval) for each source with polling on and API credentials set."""
    found: list[tuple[Poller, float]] = []
    if ctx.rmm.datto is not None and ctx.config.datto.poll_interval_s > 0:
        found.append((datto_poller(ctx.rmm.datto, ctx.pipeline, ctx.db),
                      ctx.config.datto.poll_interval_s))
    if ctx.rmm.syncro is not None and ctx.config.syncro.poll_interval_s > 0:
        found.append((syncro_poller(ctx.rmm.syncro, ctx.pipeline, ctx.db),
                      ctx.config.syncro.poll_interval_s))
    return found


class DeliveryWorker:
    """Processes stored deliveries: kicked by intake, swept periodically for due retries.

    One consumer by default, so deliveries are applied in the order they were stored. The end
    state does not depend on it (a raise after its resolve records the ticket closed), but the
    ticket history reads as it happened.
    """

    def __init__(self, pipeline: Pipeline, concurrency: int = 1):
        self._pipeline = pipeline
        # By id: the order in which deliveries were stored, even when kicks arrive out of it.
        self._queue: asyncio.PriorityQueue[int] = asyncio.PriorityQueue()
        self._queued: set[int] = set()
        self._concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []

    def kick(self, delivery_id: int) -> None:
        if delivery_id not in self._queued:
            self._queued.add(delivery_id)
            self._queue.put_nowait(delivery_id)

    async def sweep(self) -> int:
        """Queue every due `received` delivery (startup recovery and retries)."""
        ids = await self._pipeline.due_ids()
        for delivery_id in ids:
            self.kick(delivery_id)
        return len(ids)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"delivery-worker-{n}")
                       for n in range(self._concurrency)]

    async def _work(self) -> None:
        while True:
            delivery_id = await self._queue.get()
            try:
                await self._pipeline.process(delivery_id)
            except Exception:  # process() records errors itself; the consumer must not die
                log.exception("delivery %s: unexpected error in the worker", delivery_id)
            finally:
                self._queued.discard(delivery_id)
                self._queue.task_done()

    async def run_until_idle(self) -> None:
        """Sweep and process until nothing is queued (tests; no sleeping)."""
        await self.sweep()
        await self._queue.join()

    async def drain(self, deadline_s: float) -> None:
        try:
            if self._queued:
                await asyncio.wait_for(self._queue.join(), timeout=deadline_s)
        except TimeoutError:
            log.warning("drain deadline reached with %d deliveries queued; they stay received "
                        "and are processed on the next start", self._queue.qsize())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Service:
    """One running alertd: `await Service(...).run()` returns the exit code."""

    def __init__(self, config: Config, config_path: Path | None,
                 environ: Mapping[str, str]):
        self.config = config
        self._config_path = config_path
        self._environ = dict(environ)  # read once here; nothing reads os.environ later
        self._notifier = Notifier(environ)
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self.http_port: int | None = None
        self.smtp_port: int | None = None
        self.context: AppContext | None = None

    def request_stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: re-read the config file; apply the API tokens; keep all if it is invalid."""
        if self.context is None:
            log.warning("reload ignored: alertd is still starting")
            return
        try:
            fresh = load_config(self._config_path, self._environ)
            tokens = api_tokens(fresh)
            rules = load_rules(fresh.rules.path)
            self.context.tokens.replace(tokens)  # the last step that can fail: rules follow
        except (ConfigError, RulesError, ValueError, OSError) as err:
            log.error("reload refused, keeping the running configuration and rules:\n%s", err)
            return
        self.context.rules.rules = rules
        for key in ("database", "http", "smtp", "imap", "pipeline", "daemon", "logging"):
            if getattr(fresh, key) != getattr(self.config, key):
                log.warning("reload: [%s] changed; it takes effect after a restart", key)
        log.info("reload done: %d API token(s), %d rule(s) from %s", len(tokens),
                 len(rules.rules), fresh.rules.path)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Handlers first: a TERM while starting stops cleanly, a HUP never kills the process.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            return await self._run(loop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _run(self, loop: asyncio.AbstractEventLoop) -> int:
        db = open_database(self.config)
        try:
            await db.ensure_schema(self.config.database.auto_migrate)
            ctx = await build_context(self.config, db)
        except BaseException:
            await db.dispose()
            raise
        worker = DeliveryWorker(ctx.pipeline)
        app = create_app(ctx, ROUTES)
        runner = web.AppRunner(app, access_log=None,
                               shutdown_timeout=self.config.daemon.drain_timeout_s)
        await runner.setup()
        listen = self.config.http.listen
        site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True)
        scheduler = AsyncIOScheduler()
        watchdog: asyncio.Task[None] | None = None
        smtp: asyncio.Server | None = None
        readers: list[AccountReader] = []
        drain_until = 0.0
        try:
            await site.start()
            self.http_port = runner.addresses[0][1] if runner.addresses else listen.port
            ctx.readiness.listeners["http"] = True
            for account in self.config.imap.accounts:
                def count_error(kind: str, name: str = account.name) -> None:
                    ctx.metrics.imap_errors.labels(name, kind).inc()
                reader = AccountReader(account, make_sink(ctx.pipeline, db, ctx.metrics),
                                       loop, count_error)
                reader.start()
                readers.append(reader)
            if self.config.smtp.enabled:
                handler = SmtpHandler(ctx.pipeline, self.config.smtp, ctx.metrics, worker.kick)
                smtp = await start_smtp_server(handler, self.config.smtp)
                self.smtp_port = smtp.sockets[0].getsockname()[1]
                ctx.readiness.listeners["smtp"] = True
            self.context = ctx

            worker.start()
            recovered = await worker.sweep()
            scheduler.add_job(worker.sweep, "interval",
                              seconds=self.config.pipeline.sweep_interval_s,
                              id="delivery-sweep", max_instances=1, coalesce=True)
            ctx.outbox.start()  # also sends what a previous run left pending
            scheduler.add_job(ctx.outbox.kick, "interval",
                              seconds=self.config.outbox.interval_s, id="outbox",
                              max_instances=1, coalesce=True)
            if self.config.sync.schedule != "off" and ctx.sync.enabled_sources():
                scheduler.add_job(ctx.sync.run_scheduled,
                                  CronTrigger.from_crontab(self.config.sync.schedule),
                                  id="sync", max_instances=1, coalesce=True,
                                  misfire_grace_time=3600)
            for poller, interval_s in pollers(ctx):
                scheduler.add_job(poller.poll, "interval", seconds=interval_s,
                                  id=f"poll-{poller.source}", max_instances=1, coalesce=True,
                                  next_run_time=datetime.now(UTC))
            scheduler.start()
            if self._notifier.watchdog_interval_s and self.config.daemon.watchdog:
                watchdog = asyncio.create_task(self._watchdog(self._notifier.watchdog_interval_s))

            if not self._stop.is_set():
                self._notifier.notify("READY=1\nSTATUS=accepting alerts")
                log.info("alertd ready: http=%s:%s smtp=%s database=%s rules=%d "
                         "recovered_deliveries=%d", listen.host, self.http_port,
                         f"{self.config.smtp.listen.host}:{self.smtp_port}"
                         if self.smtp_port else "off", db.display_url,
                         len(ctx.rules.rules.rules), recovered)
                self.started.set()
                await self._stop.wait()

            log.info("stopping: intake closed, draining for up to %.0f s",
                     self.config.daemon.drain_timeout_s)
            self._notifier.notify("STOPPING=1")
            drain_until = loop.time() + self.config.daemon.drain_timeout_s
            ctx.readiness.listeners["http"] = False
            for reader in readers:  # stop intake first: no new IMAP fetches...
                reader.request_stop()
            if smtp is not None:  # ...and no new SMTP sessions
                ctx.readiness.listeners["smtp"] = False
                smtp.close()
            await site.stop()  # no new connections; in-flight requests finish in cleanup
        finally:
            for reader in readers:
                reader.request_stop()
            # In a thread: a reader may be waiting for this loop to store its message.
            remaining_s = max(0.5, drain_until - loop.time()) if drain_until else 0.5
            await asyncio.gather(*(asyncio.to_thread(r.join, remaining_s) for r in readers))
            if smtp is not None:
                smtp.close()
                # Sessions in DATA finish their commit; the rest are cut when the deadline ends.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(smtp.wait_closed(),
                                           max(0.1, drain_until - loop.time()))
            if watchdog is not None:
                watchdog.cancel()
            if scheduler.running:
                scheduler.shutdown(wait=False)
            await runner.cleanup()
            # One deadline for the whole drain: what the HTTP shutdown used is not given again.
            await worker.drain(max(0.0, drain_until - loop.time()) if drain_until else 0.0)
            # An interrupted send keeps its row pending; its lease expires and it is sent again.
            await ctx.outbox.stop()
            await ctx.rmm.close()
            await db.dispose()
        log.info("alertd stopped")
        return 0

    async def _watchdog(self, interval_s: float) -> None:
        while True:
            self._notifier.notify("WATCHDOG=1")
            await asyncio.sleep(interval_s)


async def serve(config: Config, config_path: Path | None, environ: Mapping[str, str]) -> int:
    return await Service(config, config_path, environ).run()
