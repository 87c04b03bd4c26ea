"""What the intake reports once a change is committed: its counters and one log line per step
(never for what a rollback undid)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from daemon.core.clock import Clock, utcnow
from daemon.core.events import DeliveryStatus
from daemon.intake.inbound import ProcessResult
from daemon.metrics import Metrics, source_label

log = logging.getLogger("daemon.intake.pipeline")  # the lines read as the pipeline's


class IntakeAccounting:
    def __init__(self, metrics: Metrics, on_events: Callable[[], None] | None = None,
                 clock: Clock = utcnow):
        self._metrics = metrics
        self._clock = clock
        # Wakes the outbox worker when notifications are configured: an event may have
        # queued one (the worker runs at most once a second however often it is woken).
        self._on_events = on_events

    def stored(self, channel: str, delivery_id: int, dedupe_key: str, source: str | None,
               duplicate: bool, rejected: bool, quiet: bool = False) -> None:
        """An input committed as a delivery (or found stored already)."""
        if duplicate:
            self._metrics.deliveries_duplicate.labels(channel).inc()
            log.info("delivery %s duplicate channel=%s key=%s", delivery_id, channel,
                     dedupe_key, extra={"delivery_id": delivery_id, "channel": channel,
                                        "source": source})
            return
        self._metrics.deliveries_accepted.labels(channel).inc()
        log.log(logging.DEBUG if quiet else logging.INFO,
                "delivery %s %s channel=%s source=%s key=%s", delivery_id,
                "rejected" if rejected else "accepted", channel, source, dedupe_key,
                extra={"delivery_id": delivery_id, "channel": channel, "source": source})

    def finished(self, channel: str, result: ProcessResult,
                 received_at: datetime | None) -> None:
        """A delivery processed (its lifecycle changes committed with it); `received_at`,
        when the delivery was stored, if known, for `alertd_processing_seconds`."""
        delivery_id = result.delivery_id
        self._metrics.deliveries_finished.labels(channel, result.status.value).inc()
        if received_at is not None:
            self._metrics.processing_seconds.labels(channel).observe(
                max(0.0, (self._clock() - received_at).total_seconds()))
        for event in result.events:
            self._metrics.lifecycle.labels(source_label(event.source), event.outcome).inc()
            if event.ticket_opened:
                self._metrics.tickets_opened.labels(source_label(event.source)).inc()
            if event.ticket_closed:
                self._metrics.tickets_closed.labels("upstream").inc()
            log.info("delivery %s channel=%s alert %s %s/%s %s ticket=%s", delivery_id,
                     channel, event.alert_id, event.source, event.uid, event.outcome,
                     event.ticket_id, extra={
                         "delivery_id": delivery_id, "alert_id": event.alert_id,
                         "ticket_id": event.ticket_id, "source": event.source,
                         "channel": channel, "rule": event.rule})
        if result.events and self._on_events is not None:
            self._on_events()
        if result.status is not DeliveryStatus.PROCESSED:
            log.warning("delivery %s %s: %s", delivery_id, result.status, result.error,
                        extra={"delivery_id": delivery_id, "channel": channel})

    def errored(self, channel: str, result: ProcessResult) -> None:
        """An attempt that raised: retried later, or `failed` after the last attempt."""
        self._metrics.delivery_errors.labels(channel).inc()
        if result.status is DeliveryStatus.FAILED:
            self._metrics.deliveries_finished.labels(channel, result.status.value).inc()
