"""`alertd run`: the composition root of the daemon, and the owner of its signals.

Start: database (migrated), services (rules, API tokens, pipeline), then, each entered on one
`AsyncExitStack` (see `daemon.service.resources`): RMM clients, outbox worker, delivery
worker, HTTP listener, IMAP readers, SMTP listener, scheduler, watchdog; then READY=1.
Stop (SIGTERM/SIGINT): STOPPING=1, close every intake listener at once, then unwind the stack:
in-flight requests and queued deliveries finish until `drain_timeout_s`, the rest is cancelled
(it stays `received` in the database and is processed on the next start), the database is
closed last, exit 0. SIGHUP reloads what can change without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from daemon.config import Config, ConfigError, load_config
from daemon.rules.load import RulesError, load_rules
from daemon.service import resources
from daemon.service.systemd import Notifier
from daemon.service.wiring import Services, api_tokens, build_services

log = logging.getLogger(__name__)

MAX_STATUS_CHARS = 200  # of a refused reload's reason in STATUS= (systemctl status shows it)

# Sections a reload cannot apply (the rest of the file is read again; these warn).
_RESTART_SECTIONS = ("database", "http", "console", "smtp", "imap", "pipeline", "lifecycle",
                     "daemon", "logging", "notify", "watch")


class Service:
    """One running alertd: `await Service(...).run()` returns the exit code."""

    def __init__(self, config: Config, config_path: Path | None,
                 environ: Mapping[str, str]):
        self.config = config
        self._config_path = config_path
        self._environ = dict(environ)  # read once here; nothing reads os.environ later
        self._notifier = Notifier(environ)
        self._stop = asyncio.Event()
        self.services: Services | None = None

    def request_stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: re-read the config file; apply the API tokens and the rules; keep all if
        either is invalid. systemd hears RELOADING=1 first and READY=1 when it is over (so
        `systemctl reload` under `Type=notify-reload` waits for it), with the outcome in
        STATUS=."""
        if self.services is None:
            log.warning("reload ignored: alertd is still starting")
            return
        # CLOCK_MONOTONIC in microseconds: systemd matches it to the reload it asked for.
        self._notifier.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            fresh = load_config(self._config_path, self._environ)
            tokens = api_tokens(fresh)
            rules = load_rules(fresh.rules.path)
            self.services.tokens.replace(tokens)  # the last step that can fail: rules follow
        except (ConfigError, RulesError, ValueError, OSError) as err:
            log.error("reload refused, keeping the running configuration and rules:\n%s", err)
            # The first problem, on one line (STATUS= is one line): the log has them all.
            first = " ".join(str(err).split("\n", 1)[0].split())[:MAX_STATUS_CHARS]
            self._notifier.notify(f"READY=1\nSTATUS=accepting alerts; reload refused: {first}")
            return
        self.services.rules.rules = rules
        for key in _RESTART_SECTIONS:
            if getattr(fresh, key) != getattr(self.config, key):
                log.warning("reload: [%s] changed; it takes effect after a restart", key)
        log.info("reload done: %d API token(s), %d rule(s) from %s", len(tokens),
                 len(rules.rules), fresh.rules.path)
        self._notifier.notify(f"READY=1\nSTATUS=accepting alerts; reloaded: {len(tokens)} API "
                              f"token(s), {len(rules.rules)} rule(s)")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Handlers first: a TERM while starting stops cleanly, a HUP never kills the process.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self._run(loop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("alertd stopped")
        return 0

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        config = self.config
        shutdown = resources.Shutdown(loop, config.daemon.drain_timeout_s)
        async with contextlib.AsyncExitStack() as stack:
            db = await stack.enter_async_context(resources.database(config.database))
            services = build_services(config, db)
            await stack.enter_async_context(resources.rmm_clients(services))
            await stack.enter_async_context(resources.outbox_worker(services))
            recovered = await stack.enter_async_context(
                resources.delivery_worker(services, shutdown))
            http_port = await stack.enter_async_context(resources.http_site(services, shutdown))
            await stack.enter_async_context(resources.imap_readers(services, shutdown))
            smtp_port = await stack.enter_async_context(resources.smtp_server(services, shutdown))
            self.services = services
            await stack.enter_async_context(resources.scheduler(services))
            await stack.enter_async_context(resources.watchdog(self._notifier,
                                                               config.daemon.watchdog))
            # What start-up built lives as long as the process: out of the collector's sight,
            # full collections (which pause every thread) only walk what came after.
            gc.freeze()
            if not self._stop.is_set():
                self._notifier.notify("READY=1\nSTATUS=accepting alerts")
                log.info("alertd ready: http=%s:%s smtp=%s database=%s rules=%d "
                         "recovered_deliveries=%d", config.http.listen.host, http_port,
                         f"{config.smtp.listen.host}:{smtp_port}" if smtp_port else "off",
                         db.display_url, len(services.rules.rules.rules), recovered)
                await self._stop.wait()
            log.info("stopping: intake closed, draining for up to %.0f s",
                     config.daemon.drain_timeout_s)
            self._notifier.notify("STOPPING=1")
            await shutdown.begin()


async def serve(config: Config, config_path: Path | None, environ: Mapping[str, str]) -> int:
    return await Service(config, config_path, environ).run()
