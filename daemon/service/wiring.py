"""Wiring: every long-lived object of one alertd, built once from the configuration (no I/O
besides reading the rules and token files). Used by `alertd run` and by the CLI commands that
need the daemon's services (replay), so both run the same code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from daemon import __version__
from daemon.config import Config
from daemon.console.routes import setup_console_routes
from daemon.core.api_event import interpret_api_delivery
from daemon.core.clock import utcnow
from daemon.core.events import Channel, typed
from daemon.http.api_routes import setup_api_routes
from daemon.http.app import AppContext, Readiness
from daemon.http.auth import TokenStore, ensure_generated_token, read_token_file
from daemon.intake.inbound import Interpreter
from daemon.intake.pipeline import Pipeline
from daemon.intake.worker import DeliveryQueue, DeliveryWorker
from daemon.metrics import ChannelHealth, Metrics
from daemon.notify.notifier import Notifiers
from daemon.rmm.clients import RmmClients, build_clients
from daemon.rmm.mail_devices import MailAlertDevices
from daemon.rmm.outbox import OutboxPolicy, OutboxWorker
from daemon.rmm.poll import Poller, datto_poller, syncro_poller
from daemon.rules.email_interpreter import RulesHolder, email_interpreter
from daemon.rules.load import load_rules
from daemon.store.activity import Activity
from daemon.store.browse import Browse
from daemon.store.checkpoints import ImapCheckpoints
from daemon.store.database import Database
from daemon.store.queries import Queries
from daemon.sync.runner import SyncRunner
from daemon.tickets.agent import AgentActions
from daemon.tickets.clearing import ClearedTickets
from daemon.tickets.expiry import AlertExpiry
from daemon.tickets.maintenance import MaintenanceRelease, MaintenanceSchedule, UpstreamCheck
from daemon.tickets.notices import Notices
from daemon.tickets.placement import TicketPlacer
from daemon.tickets.silence import SilenceWatch
from daemon.tickets.stale import StaleMarks
from daemon.tickets.windows import MaintenanceWindows
from daemon.webhooks.routes import setup_webhook_routes
from daemon.webhooks.setup import WebhookNotConfigured, WebhookSetup, datto_setup, syncro_setup
from daemon.webhooks.webhook_interpreter import webhook_interpreter

# Every HTTP feature's routes, in the order they are added to the one aiohttp app.
ROUTES = (setup_api_routes, setup_webhook_routes, setup_console_routes)


def build_interpreters(config: Config, rules: RulesHolder) -> dict[str, Interpreter]:
    """Which interpreter reads which channel."""
    email = email_interpreter(rules, {"datto": frozenset(config.datto.email_from)})
    # Webhook and polling tickets take their source's `ticket_type` (email rules set theirs).
    types = {"datto": config.datto.ticket_type, "syncro": config.syncro.ticket_type}
    return {Channel.API.value: interpret_api_delivery, Channel.SMTP.value: email,
            Channel.IMAP.value: email, Channel.POLL.value: typed(interpret_api_delivery, types),
            Channel.WEBHOOK.value: typed(webhook_interpreter(config.datto.webhook_fields),
                                         types)}


def build_pipeline(config: Config, db: Database, metrics: Metrics, rules: RulesHolder,
                   queue: DeliveryQueue | None = None,
                   maintenance: MaintenanceSchedule | None = None,
                   notices: Notices | None = None,
                   on_notices: Callable[[], None] | None = None) -> Pipeline:
    """The pipeline with the configured interpreters; submitted deliveries go to `queue`;
    notifications are queued for `[[notify]]` (`on_notices` wakes their sender)."""
    section = config.pipeline
    return Pipeline(db, metrics, build_interpreters(config, rules),
                    max_attempts=section.max_attempts, retry_base_s=section.retry_base_s,
                    placer=TicketPlacer(config.sync.fallback_end_user),
                    auto_close=config.lifecycle.auto_close,
                    conditions=config.lifecycle.conditions,
                    close_after_clear_s=config.lifecycle.close_after_clear,
                    maintenance=maintenance if maintenance is not None
                    else maintenance_schedule(config),
                    on_submitted=queue.put if queue is not None else None,
                    notices=notices if notices is not None else Notices(config.notify),
                    on_notices=on_notices)


def maintenance_schedule(config: Config) -> MaintenanceSchedule:
    return MaintenanceSchedule([w.window() for w in config.lifecycle.maintenance])


def api_tokens(config: Config) -> list[str]:
    """The configured tokens, or the generated token file's (created on first start)."""
    configured = [t.get_secret_value() for t in config.api.tokens]
    if configured:
        return configured
    return read_token_file(ensure_generated_token(config.daemon.state_dir))


def webhook_setups(config: Config) -> dict[str, Callable[[], dict[str, Any]]]:
    """What GET /api/webhooks/config shows per vendor (`alertd webhook-config --json`); a
    vendor whose secret is not set raises LookupError with what to configure."""
    def of(build: Callable[[Config], WebhookSetup]) -> Callable[[], dict[str, Any]]:
        def setup() -> dict[str, Any]:
            try:
                return build(config).as_json()
            except WebhookNotConfigured as err:
                raise LookupError(str(err)) from None
        return setup
    return {"datto": of(datto_setup), "syncro": of(syncro_setup)}


@dataclass
class Services:
    """Everything one alertd runs. `http` is what the HTTP handlers share."""

    config: Config
    db: Database
    metrics: Metrics
    rules: RulesHolder
    pipeline: Pipeline
    worker: DeliveryWorker
    agent: AgentActions
    queries: Queries
    tokens: TokenStore
    outbox: OutboxWorker
    rmm: RmmClients
    sync: SyncRunner
    checkpoints: ImapCheckpoints
    expiry: AlertExpiry
    cleared: ClearedTickets
    maintenance: MaintenanceWindows
    release: MaintenanceRelease
    notifiers: Notifiers
    mail_devices: MailAlertDevices | None  # with the Datto API: mail alerts' devices
    silence: SilenceWatch | None  # with [watch]: channels that fell silent
    readiness: Readiness = field(default_factory=Readiness)
    health: ChannelHealth = field(default_factory=ChannelHealth)

    @cached_property
    def http(self) -> AppContext:
        return AppContext(config=self.config, db=self.db, metrics=self.metrics,
                          pipeline=self.pipeline, agent=self.agent, queries=self.queries,
                          tokens=self.tokens, outbox=self.outbox, rmm=self.rmm,
                          rules=self.rules, sync=self.sync, browse=Browse(self.db),
                          activity=Activity(self.db), health=self.health,
                          maintenance=self.maintenance,
                          webhook_setups=webhook_setups(self.config),
                          readiness=self.readiness)

    def pollers(self) -> list[tuple[Poller, float]]:
        """(poller, interval) for each source with polling on and API credentials set."""
        found: list[tuple[Poller, float]] = []
        if self.rmm.datto is not None and self.config.datto.poll_interval_s > 0:
            found.append((datto_poller(self.rmm.datto, self.pipeline, self.queries,
                                       health=self.health, on_unknown=StaleMarks(self.db)),
                          self.config.datto.poll_interval_s))
        if self.rmm.syncro is not None and self.config.syncro.poll_interval_s > 0:
            found.append((syncro_poller(self.rmm.syncro, self.pipeline, self.queries,
                                        health=self.health, on_unknown=StaleMarks(self.db)),
                          self.config.syncro.poll_interval_s))
        return found


def upstream_checks(config: Config, rmm: RmmClients) -> dict[str, UpstreamCheck]:
    """Per source with polling on: whether the RMM resolved an alert (the maintenance release
    asks before it opens a suppressed alert's ticket)."""
    def resolved_by(fetch: Callable[[str], Awaitable[Any]]) -> UpstreamCheck:
        async def resolved(uid: str) -> bool | None:
            alert = await fetch(uid)  # a DattoAlert or SyncroAlert; None: unknown there
            return None if alert is None else bool(alert.resolved)
        return resolved
    checks: dict[str, UpstreamCheck] = {}
    if rmm.datto is not None and config.datto.poll_interval_s > 0:
        checks["datto"] = resolved_by(rmm.datto.alert)
    if rmm.syncro is not None and config.syncro.poll_interval_s > 0:
        checks["syncro"] = resolved_by(rmm.syncro.alert)
    return checks


def build_services(config: Config, db: Database) -> Services:
    """Wire one alertd on `db`; call from a running event loop (the RMM clients' HTTP session).
    Raises `RulesError` when the rules file is invalid."""
    metrics = Metrics(__version__)
    tokens = TokenStore(api_tokens(config))
    rules = RulesHolder(load_rules(config.rules.path))
    rmm = build_clients(config.datto, config.syncro)
    queries = Queries(db)
    notices = Notices(config.notify)
    notifiers = Notifiers(config.notify, queries, config.public_url)
    outbox = OutboxWorker(db, rmm.resolvers, metrics, OutboxPolicy.of(config.outbox),
                          notifiers=notifiers.by_name)
    queue = DeliveryQueue()
    schedule = maintenance_schedule(config)
    pipeline = build_pipeline(config, db, metrics, rules, queue, schedule, notices,
                              on_notices=outbox.kick)
    placer = TicketPlacer(config.sync.fallback_end_user)
    return Services(
        config=config, db=db, metrics=metrics, rules=rules, pipeline=pipeline,
        worker=DeliveryWorker(pipeline, queue),
        agent=AgentActions(db, metrics, on_enqueued=outbox.kick, notices=notices),
        queries=queries, tokens=tokens, outbox=outbox, rmm=rmm,
        sync=SyncRunner(db, rmm, config.sync), checkpoints=ImapCheckpoints(db),
        expiry=AlertExpiry(db, metrics, config.lifecycle.expire_after,
                           config.lifecycle.auto_close, notices=notices),
        cleared=ClearedTickets(db, metrics, config.lifecycle.auto_close, notices=notices),
        maintenance=MaintenanceWindows(db, schedule, config.lifecycle.maintenance),
        release=MaintenanceRelease(db, metrics, schedule, placer,
                                   pipeline.transitions.release_ticket,
                                   upstream_checks(config, rmm)),
        notifiers=notifiers,
        mail_devices=MailAlertDevices(db, rmm.datto, placer) if rmm.datto is not None
        else None,
        silence=SilenceWatch(db, pipeline.transitions, config.watch, metrics,
                             started_at=utcnow())
        if config.watch else None)
