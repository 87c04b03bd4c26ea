"""Prometheus metrics, in a registry owned by one service instance (no globals): counters per
stage, latency histograms, the gauges read from the database at each scrape (`StoreGauges`),
build info and the standard process metrics; the last error of each intake channel
(`ChannelHealth`). Every name is documented in docs/operations.md."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from daemon.core.clock import Clock, utcnow

# The `source` label's values: a closed set, so a client cannot create series without limit
# (POST /api/alerts takes any source name). Every other source is counted as "other".
SOURCE_LABELS = frozenset({"datto", "syncro"})
CHANNEL_LABELS = ("smtp", "imap", "webhook", "poll", "api")  # a delivery's channel


def source_label(source: str | None) -> str:
    return source if source in SOURCE_LABELS else "other"


class _OneLookupLabels:
    """Finds a metric's child by its label values in one dict lookup: prometheus_client's
    `labels()` converts and checks the values and takes a lock on every call (~3 us), and the
    intake path asks for four or five children per input. Children are never removed here."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._children: dict[tuple[Any, ...], Any] = {}

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Any:
        if labelkwargs:
            return super().labels(**labelkwargs)  # type: ignore[misc]
        child = self._children.get(labelvalues)
        if child is None:
            child = self._children[labelvalues] = super().labels(  # type: ignore[misc]
                *labelvalues)
        return child


class _Counter(_OneLookupLabels, Counter):
    pass


class _Histogram(_OneLookupLabels, Histogram):
    pass


# Seconds. Intake answers in milliseconds; a backlog (IMAP, a restart, a retry) in minutes.
PROCESSING_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        60.0, 300.0, 1800.0)
HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class StoreGauges(Collector):
    """The gauges read from the database: the /metrics view reads the figures just before it
    renders (`update`), and a scrape whose read failed shows none of them rather than stale
    ones (`alertd_store_figures_ok` is then 0).

    `waiting`: {"deliveries": {"received": {"count", "oldest_age_s"}, "failed": ...},
    "outbox": {"pending": ..., "dead": ...}}; `last_input`: channel -> epoch seconds;
    `last_sync`: (source, result) -> epoch seconds.
    """

    def __init__(self) -> None:
        self._waiting: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None
        self._last_input: Mapping[str, float] = {}
        self._last_sync: Mapping[tuple[str, str], float] = {}

    def update(self, waiting: Mapping[str, Mapping[str, Mapping[str, Any]]] | None,
               last_input: Mapping[str, float] | None = None,
               last_sync: Mapping[tuple[str, str], float] | None = None) -> None:
        """The figures of this scrape; `waiting` None: the database could not be read."""
        self._waiting = waiting
        self._last_input = last_input or {}
        self._last_sync = last_sync or {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ok = GaugeMetricFamily("alertd_store_figures_ok",
                               "1 when this scrape read the database's figures, else 0")
        ok.add_metric([], 0 if self._waiting is None else 1)
        yield ok
        if self._waiting is None:
            return
        deliveries = GaugeMetricFamily(
            "alertd_deliveries", "Deliveries waiting, by state (received: to process; "
            "failed: to replay)", labels=["state"])
        outbox = GaugeMetricFamily(
            "alertd_outbox_rows", "Outbox rows waiting, by state (pending: to send; dead: "
            "given up, to retry or drop)", labels=["state"])
        oldest = GaugeMetricFamily(
            "alertd_oldest_pending_seconds", "Age of the oldest item waiting in a queue "
            "(deliveries received, outbox pending); 0 when none waits", labels=["queue"])
        for state, figure in self._waiting["deliveries"].items():
            deliveries.add_metric([state], figure["count"])
        for state, figure in self._waiting["outbox"].items():
            outbox.add_metric([state], figure["count"])
        for queue, state in (("deliveries", "received"), ("outbox", "pending")):
            oldest.add_metric([queue], self._waiting[queue][state]["oldest_age_s"] or 0.0)
        last_input = GaugeMetricFamily(
            "alertd_last_input_timestamp_seconds",
            "When the newest input of a channel was stored (Unix time)", labels=["channel"])
        for channel, moment in sorted(self._last_input.items()):
            last_input.add_metric([channel], moment)
        last_sync = GaugeMetricFamily(
            "alertd_last_sync_timestamp_seconds",
            "When the newest sync run of a source ended, by result (Unix time)",
            labels=["source", "result"])
        for (source, result), moment in sorted(self._last_sync.items()):
            last_sync.add_metric([source, result], moment)
        yield from (deliveries, outbox, oldest, last_input, last_sync)


class Metrics:
    """The counters alertd exports at /metrics; pass one instance to every stage."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, version: str = "") -> None:
        self.registry = CollectorRegistry()
        # process_* (CPU, memory, file descriptors, start time) and python_info.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.build_info = Gauge("alertd_build_info", "alertd's version (always 1)",
                                ["version"], registry=self.registry)
        self.build_info.labels(version).set(1)
        self.store = StoreGauges()
        self.registry.register(self.store)
        self.processing_seconds = _Histogram(
            "alertd_processing_seconds",
            "From an input stored to its effect committed, by delivery channel",
            ["channel"], buckets=PROCESSING_BUCKETS_S, registry=self.registry)
        self.http_request_duration = _Histogram(
            "alertd_http_request_duration_seconds", "HTTP requests, from handler to answer",
            ["route"], buckets=HTTP_BUCKETS_S, registry=self.registry)
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
        # Each channel's failures exist from the start at 0: `increase()` in an alert rule
        # sees a counter's first step only from a sample before it, so a series born at 1
        # would hide the first failure after every restart.
        for channel in CHANNEL_LABELS:
            self.deliveries_finished.labels(channel, "failed")
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
