"""Syncro REST API v1 client (the calls alertd needs), on one shared aiohttp session.

Facts it is built on: ../shared/rmm-facts.md. In short: `Authorization: Bearer <token>`;
180 requests per minute per source address (kept under by the limiter); 429 or a plain-text
"Retry later" -> back off (Retry-After if given, else a window); lists are paged by
`meta.total_pages` (1-based), stopping on an empty page or a missing meta; resolving an alert
is `DELETE /rmm_alerts/{id}`, and 404 there means it is already gone. A 401 on one resource
while others work is a missing permission of the API token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from daemon.rmm.errors import (
    AuthFailed,
    NotFound,
    PermissionDenied,
    RateLimited,
    Rejected,
    ServerError,
    WrongEndpoint,
)
from daemon.rmm.ratelimit import MonotonicClock, RollingWindowLimiter, Sleep, retry_after_s
from daemon.rmm.retry import Retryable, exchange, with_retries

log = logging.getLogger(__name__)

SOURCE = "syncro"


@dataclass(frozen=True)
class SyncroLimits:
    window_s: float = 60.0
    requests: int = 170  # under the 180 per minute, with room for clock differences
    min_backoff_s: float = 30.0  # after 429 / "Retry later" without Retry-After
    retries: int = 3
    backoff_base_s: float = 1.0


@dataclass(frozen=True)
class SyncroAlert:
    id: str
    resolved: bool
    customer_id: str | None
    asset_id: str | None
    computer_name: str | None
    description: str | None
    formatted_output: str | None
    trigger: str | None = None  # which check raised it: with the asset, its condition


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def parse_syncro_alert(record: Mapping[str, Any]) -> SyncroAlert | None:
    alert_id = _text(record.get("id"))
    if alert_id is None:
        return None
    properties = record.get("properties") if isinstance(record.get("properties"), dict) else {}
    assert isinstance(properties, dict)
    return SyncroAlert(
        id=alert_id, resolved=_flag(record.get("resolved")),
        customer_id=_text(record.get("customer_id")), asset_id=_text(record.get("asset_id")),
        computer_name=_text(record.get("computer_name")),
        description=_text(record.get("description")) or _text(properties.get("description")),
        formatted_output=_text(record.get("formatted_output"))
        or _text(properties.get("formatted_output")),
        trigger=_text(properties.get("trigger")),
    )


class SyncroClient:
    """One account's API. Share one instance: its limiter is per source address."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, api_key: str, *,
                 limits: SyncroLimits = SyncroLimits(), clock: MonotonicClock = time.monotonic,
                 sleep: Sleep = asyncio.sleep, timeout_s: float = 30.0):
        self._session = session
        self.base_url = api_url.rstrip("/")
        self._key = api_key
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._limiter = RollingWindowLimiter(limits.requests, limits.window_s, clock=clock,
                                             sleep=sleep)
        self._on_total: Callable[[int], None] | None = None

    def observe(self, on_total: Callable[[int], None] | None,
                on_wait: Callable[[float], None] | None) -> None:
        """For a sync's progress: `on_total(n)` with the item count of each paged list (its
        first page's `meta.total_entries`), `on_wait(s)` before each wait for the rate
        limit."""
        self._on_total = on_total
        self._limiter.on_wait = on_wait

    async def me(self) -> dict[str, Any]:
        """`GET /me`: the connection test."""
        body = await self._call("GET", "/me")
        return body if isinstance(body, dict) else {}

    async def settings(self) -> dict[str, Any]:
        """`GET /settings`: asset types, custom asset fields and their dropdown options."""
        body = await self._call("GET", "/settings")
        return body if isinstance(body, dict) else {}

    async def resolve_alert(self, alert_id: str) -> bool:
        """Clear one alert. True when this call cleared it, False when Syncro no longer has
        it (404: treated as done)."""
        try:
            await self._call("DELETE", f"/rmm_alerts/{alert_id}")
        except NotFound:
            return False
        return True

    async def alert(self, alert_id: str) -> SyncroAlert | None:
        try:
            body = await self._call("GET", f"/rmm_alerts/{alert_id}")
        except NotFound:
            return None
        record = body.get("rmm_alert") if isinstance(body, dict) else None
        return parse_syncro_alert(record) if isinstance(record, dict) else None

    async def active_alerts(self) -> AsyncIterator[SyncroAlert]:
        async for record in self.paged("/rmm_alerts", "rmm_alerts", {"status": "active"}):
            alert = parse_syncro_alert(record)
            if alert is not None:
                yield alert

    async def paged(self, path: str, items_key: str, params: Mapping[str, str] | None = None
                    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a paged list: pages 1.. until `meta.total_pages`, an empty page, or
        a page without meta (treated as the only page). Page sizes differ per endpoint: the
        server's own size is used, never a hard-coded one."""
        page = 1
        while True:
            body = await self._call("GET", path, {**(params or {}), "page": str(page)})
            if not isinstance(body, dict):
                raise ServerError(SOURCE, f"{path}: the answer is not a JSON object")
            items = body.get(items_key) or []
            for item in items:
                if isinstance(item, dict):
                    yield item
            meta = body.get("meta")
            total_pages = meta.get("total_pages") if isinstance(meta, dict) else None
            if page == 1 and self._on_total is not None and isinstance(meta, dict) and \
                    isinstance(meta.get("total_entries"), int):
                self._on_total(meta["total_entries"])
            if not items or not isinstance(total_pages, int) or page >= total_pages:
                return
            page += 1

    async def _call(self, method: str, path: str, params: Mapping[str, str] | None = None
                    ) -> Any:
        async def attempt_once() -> Any:
            answer = await exchange(self._session, self._limiter, SOURCE, method,
                                    f"{self.base_url}{path}", path, params,
                                    {"Authorization": f"Bearer {self._key}",
                                     "Accept": "application/json"}, self._timeout)
            status, text = answer.status, answer.text
            # Syncro also throttles with a plain-text "Retry later", whatever the status.
            throttled = status == 429 or text.strip().lower().startswith("retry later")
            if status < 300 and not throttled:
                try:
                    return json.loads(text) if text.strip() else None
                except ValueError:
                    raise WrongEndpoint(SOURCE, f"{method} {path}: the answer is not "
                                                "JSON (wrong API URL?)") from None
            if throttled:
                wait_s = retry_after_s(answer.retry_after) or self._limits.min_backoff_s
                self._limiter.pause_until(self._clock() + wait_s)
                log.warning("syncro: throttled on %s %s; pausing calls for %.0f s",
                            method, path, wait_s)
                # The limiter's pause is the wait: no backoff on top of it.
                raise Retryable(RateLimited(SOURCE, f"{method} {path}: throttled"), waited=True)
            if status == 401:
                raise (AuthFailed(SOURCE, f"{method} {path}: 401: the API token was "
                                          "refused") if path == "/me" else
                       PermissionDenied(SOURCE, f"{method} {path}: 401: the API token "
                                                f"lacks the permission for {path}",
                                        resource=path))
            if status == 403:
                raise PermissionDenied(SOURCE, f"{method} {path}: 403", resource=path)
            if status == 404:
                raise NotFound(SOURCE, f"{method} {path}: not found")
            if status >= 500 or status == 409:
                raise Retryable(ServerError(SOURCE, f"{method} {path}: HTTP {status}"))
            raise Rejected(SOURCE, f"{method} {path}: HTTP {status}: {text[:200]}")

        return await with_retries(attempt_once, retries=self._limits.retries,
                                  backoff_base_s=self._limits.backoff_base_s, sleep=self._sleep)
