"""Prometheus counters per stage, in a registry owned by one service instance (no globals);
the last error of each intake channel (`ChannelHealth`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from daemon.core.clock import Clock, utcnow

# The `source` label's values: a closed set, so a client cannot create series without limit
# (POST /api/alerts takes any source name). Every other source is counted as "other".
SOURCE_LABELS = frozenset({"datto", "syncro"})


def source_label(source: str | None) -> str:
    return source if source in SOURCE_LABELS else "other"


class Metrics:
    """The counters alertd exports at /metrics; pass one instance to every stage."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries_accepted = Counter(
            "alertd_deliveries_accepted_total", "Inputs committed as deliveries",
            ["channel"], registry=self.registry)
        self.deliveries_duplicate = Counter(
            "alertd_deliveries_duplicate_total", "Inputs already stored (sender retries)",
            ["channel"], registry=self.registry)
        self.deliveries_finished = Counter(
            "alertd_deliveries_finished_total",
            "Deliveries leaving 'received' (processed, ignored, failed)",
            ["channel", "status"], registry=self.registry)
        self.delivery_errors = Counter(
            "alertd_delivery_errors_total", "Processing attempts that raised and will retry",
            ["channel"], registry=self.registry)
        self.lifecycle = Counter(
            "alertd_lifecycle_events_total", "Raise/resolve events by lifecycle outcome",
            ["source", "outcome"], registry=self.registry)
        self.tickets_opened = Counter(
            "alertd_tickets_opened_total", "Tickets opened for alerts",
            ["source"], registry=self.registry)
        self.tickets_closed = Counter(
            "alertd_tickets_closed_total", "Tickets closed, by whom (upstream or agent)",
            ["by"], registry=self.registry)
        self.outbox_enqueued = Counter(
            "alertd_outbox_enqueued_total", "Upstream actions queued",
            ["source", "action"], registry=self.registry)
        self.http_requests = Counter(
            "alertd_http_requests_total", "HTTP requests answered",
            ["method", "route", "status"], registry=self.registry)
        self.smtp_refused = Counter(
            "alertd_smtp_refused_total", "SMTP commands refused (recipient, storage)",
            ["reason"], registry=self.registry)
        self.imap_errors = Counter(
            "alertd_imap_errors_total", "IMAP connection or protocol errors (then backoff)",
            ["account", "kind"], registry=self.registry)
        self.imap_fetched = Counter(
            "alertd_imap_fetched_total", "Messages fetched from IMAP and stored",
            ["account"], registry=self.registry)
        self.outbox_sent = Counter(
            "alertd_outbox_sent_total", "Outbox sends by outcome (done, retry, dead)",
            ["source", "outcome"], registry=self.registry)
        self.auth_failures = Counter(
            "alertd_auth_failures_total", "Requests refused for missing or wrong credentials",
            ["realm"], registry=self.registry)

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
