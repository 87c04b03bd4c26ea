"""Prometheus counters per stage, in a registry owned by one service instance (no globals);
the last error of each intake channel (`ChannelHealth`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from daemon.core.clock import Clock, utcnow

# The `source` label's values: a closed set, so a client cannot create series without limit
# (POST /api/alerts takes any source name). Every other source is counted as "other".
SOURCE_LABELS = frozenset({"datto", "syncro"})


def source_label(source: str | None) -> str:
    return source if source in SOURCE_LABELS else "other"


class _Counter(Counter):
    """A Counter that finds a child by its label values in one dict lookup: prometheus_client's
    `labels()` converts and checks the values and takes a lock on every call (~3 us), and the
    intake path asks for four or five children per input. Children are never removed here."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._children: dict[tuple[Any, ...], _Counter] = {}

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> _Counter:
        if labelkwargs:
            return super().labels(**labelkwargs)
        child = self._children.get(labelvalues)
        if child is None:
            child = self._children[labelvalues] = super().labels(*labelvalues)
        return child


class Metrics:
    """The counters alertd exports at /metrics; pass one instance to every stage."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries_accepted = _Counter(
            "alertd_deliveries_accepted_total", "Inputs committed as deliveries",
            ["channel"], registry=self.registry)
        self.deliveries_duplicate = _Counter(
            "alertd_deliveries_duplicate_total", "Inputs already stored (sender retries)",
            ["channel"], registry=self.registry)
        self.deliveries_finished = _Counter(
            "alertd_deliveries_finished_total",
            "Deliveries leaving 'received' (processed, ignored, failed)",
            ["channel", "status"], registry=self.registry)
        self.delivery_errors = _Counter(
            "alertd_delivery_errors_total", "Processing attempts that raised and will retry",
            ["channel"], registry=self.registry)
        self.lifecycle = _Counter(
            "alertd_lifecycle_events_total", "Raise/resolve events by lifecycle outcome",
            ["source", "outcome"], registry=self.registry)
        self.tickets_opened = _Counter(
            "alertd_tickets_opened_total", "Tickets opened for alerts",
            ["source"], registry=self.registry)
        self.tickets_closed = _Counter(
            "alertd_tickets_closed_total",
            "Tickets closed, by whom (upstream, agent, expiry, cleared)",
            ["by"], registry=self.registry)
        self.outbox_enqueued = _Counter(
            "alertd_outbox_enqueued_total", "Upstream actions queued",
            ["source", "action"], registry=self.registry)
        self.http_requests = _Counter(
            "alertd_http_requests_total", "HTTP requests answered",
            ["method", "route", "status"], registry=self.registry)
        self.smtp_refused = _Counter(
            "alertd_smtp_refused_total", "SMTP commands refused (recipient, storage)",
            ["reason"], registry=self.registry)
        self.imap_errors = _Counter(
            "alertd_imap_errors_total", "IMAP connection or protocol errors (then backoff)",
            ["account", "kind"], registry=self.registry)
        self.imap_fetched = _Counter(
            "alertd_imap_fetched_total", "Messages fetched from IMAP and stored",
            ["account"], registry=self.registry)
        self.outbox_sent = _Counter(
            "alertd_outbox_sent_total", "Outbox sends by outcome (done, retry, dead)",
            ["source", "outcome"], registry=self.registry)
        # Channels and targets are named in the configuration: bounded sets of series.
        self.channel_silent = Gauge(
            "alertd_channel_silent",
            "1 while a [watch] channel has had no input for longer than it may",
            ["channel"], registry=self.registry)
        self.notifications = _Counter(
            "alertd_notifications_total",
            "Notification rows by target and outcome (done, digested, deferred, retry, dead)",
            ["target", "outcome"], registry=self.registry)
        self.auth_failures = _Counter(
            "alertd_auth_failures_total", "Requests refused for missing or wrong credentials",
            ["realm"], registry=self.registry)
        self.webhook_secrets = _Counter(
            "alertd_webhook_secret_used_total",
            "Webhook requests by the secret they authenticated with (current or previous)",
            ["route", "secret"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class ChannelError:
    at: datetime
    message: str  # never a secret: what the adapter would also log


class ChannelHealth:
    """The last error of each intake channel since this process started (`started_at`), for
    `GET /api/status`. In memory on purpose: a listener that cannot bind or an IMAP login that
    is refused leaves no delivery row to show.

    Channel names: `smtp`, `imap:<account>`, `webhook:<source>`, `poll:<source>`, `api`.
    `record_error` may be called from any thread (IMAP readers): it replaces one dict entry,
    which is atomic in CPython, and readers only ever see a whole `ChannelError`.
    """

    def __init__(self, clock: Clock = utcnow):
        self._clock = clock
        self.started_at = clock()
        self._errors: dict[str, ChannelError] = {}

    def record_error(self, channel: str, message: str) -> None:
        self._errors[channel] = ChannelError(self._clock(), message)

    def last_error(self, channel: str) -> ChannelError | None:
        return self._errors.get(channel)

    def uptime_s(self) -> float:
        return (self._clock() - self.started_at).total_seconds()
