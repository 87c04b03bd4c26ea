"""The `[[notify]]` targets at work: each turns outbox rows into one message and sends it.

The outbox worker (`daemon.rmm.outbox`) claims the rows, decides between single messages and
a digest (storm control) and records the outcome; a `Notifier` reads what the rows tell of
(the ticket and alert as they are now, the event as it was), renders and sends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from daemon import __version__
from daemon.config.notify_sections import ChatTarget, EmailTarget, WebhookTarget
from daemon.notify.messages import TemplateFailed, Templates, digest, document
from daemon.notify.transports import (
    NotifyError,
    post_json,
    send_mail,
    slack_body,
    teams_body,
    webhook_request,
)
from daemon.store.queries import Queries

log = logging.getLogger(__name__)

Target = WebhookTarget | ChatTarget | EmailTarget


class NoticeRow(Protocol):
    """What the notifier reads of a claimed outbox row."""

    @property
    def id(self) -> int: ...
    @property
    def target(self) -> str: ...  # the event
    @property
    def ticket_id(self) -> int | None: ...
    @property
    def payload(self) -> Mapping[str, Any] | None: ...
    @property
    def created_at(self) -> datetime | None: ...


def _iso(moment: datetime | None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")


class Notifier:
    """One target: `send` delivers one row as a message, or several as one digest."""

    def __init__(self, target: Target, queries: Queries | None, public_url: str,
                 session: Callable[[], aiohttp.ClientSession]):
        self.target = target
        self.templates = Templates.of(target.subject, target.template)
        self._queries = queries
        self._public_url = public_url.rstrip("/")
        self._session = session  # the shared HTTP session, opened at the first send

    @property
    def per_minute(self) -> int:
        return self.target.storm_limit_per_minute

    async def send(self, rows: Sequence[NoticeRow]) -> None:
        """Send `rows` (one: its message; more: a digest). Raises NotifyError."""
        documents = await self._documents(rows)
        if len(documents) == 1:
            await self._deliver(documents[0])
        else:  # alertd's own words: the target's templates are for single notifications
            doc = digest(documents, self.per_minute, self._public_url)
            await self._transport(doc, doc["subject"], doc["text"])

    async def send_test(self) -> None:
        """A test message through the target's templates and transport (`alertd notify
        test`). Raises NotifyError, whose text says what failed."""
        now = _iso(None)
        sample_ticket = {
            "id": 0, "summary": "alertd test notification", "status": "open",
            "type": "alert", "priority": "Low", "customer": "Test customer",
            "site": "Test site", "asset": "TEST-DEVICE", "opened_at": now, "closed_at": None,
            "closed_by": None, "occurrences": 1, "alert": None,
            "alerts": [{"source": "test", "uid": "test", "state": "open"}]}
        await self._deliver(document(0, "test", now, sample_ticket, {
            "source": "test", "uid": "test", "message": "alertd test notification"},
            {"note": f"sent by `alertd notify test {self.target.name}`"}, self._public_url))

    async def _documents(self, rows: Sequence[NoticeRow]) -> list[dict[str, Any]]:
        """Each row's document: its ticket as it is now (agents' notes stay in alertd), the
        alert and details as queued."""
        assert self._queries is not None
        tickets, alerts = await self._queries.notice_records(
            sorted({row.ticket_id for row in rows if row.ticket_id is not None}),
            sorted({int(row.payload["alert_id"]) for row in rows
                    if row.payload and row.payload.get("alert_id") is not None}))
        documents = []
        for row in rows:
            details = {key: value for key, value in (row.payload or {}).items()
                       if key != "alert_id"}
            alert_id = (row.payload or {}).get("alert_id")
            documents.append(document(
                row.id, row.target, _iso(row.created_at),
                tickets.get(row.ticket_id) if row.ticket_id is not None else None,
                alerts.get(alert_id) if alert_id is not None else None, details,
                self._public_url))
        return documents

    async def _deliver(self, doc: dict[str, Any]) -> None:
        try:
            subject, text = self.templates.render(doc)
        except TemplateFailed as err:
            raise NotifyError(str(err), retryable=False) from None
        await self._transport(doc, subject, text)

    async def _transport(self, doc: dict[str, Any], subject: str, text: str) -> None:
        target = self.target
        if isinstance(target, WebhookTarget):
            body, headers = webhook_request(target.secret.get_secret_value(),
                                            {**doc, "subject": subject, "text": text})
            await post_json(self._session(), target.url, body, headers, target.timeout_s,
                            show_path=True)
        elif isinstance(target, ChatTarget):
            body = (slack_body(subject, text) if target.kind == "slack"
                    else teams_body(subject, text, doc["url"]))
            await post_json(self._session(), target.url.get_secret_value(), body, {},
                            target.timeout_s, show_path=False)
        else:
            await asyncio.to_thread(send_mail, target, subject, text, str(doc["id"]))


class Notifiers:
    """The configured targets by name, on one HTTP session (built by the composition root
    from a running event loop; closed at shutdown)."""

    def __init__(self, targets: Sequence[Target], queries: Queries | None, public_url: str):
        """`queries`: where rows are read (None: test messages only)."""
        self._http: aiohttp.ClientSession | None = None
        self.by_name = {target.name: Notifier(target, queries, public_url, self._session)
                        for target in targets}

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(headers={"User-Agent": f"alertd/{__version__}"})
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
