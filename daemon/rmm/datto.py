"""Datto RMM REST API v2 client (the calls alertd needs), on one shared aiohttp session.

Facts it is built on: ../shared/rmm-facts.md. In short: a token by the password grant with the
public client, no refresh token (ask again, early, one caller at a time; on 401 once more);
reads 600 and alert resolves 100 per rolling 60 s per account (kept under by the limiters);
429 -> wait (Retry-After, else at least a window); a 403 after throttling is a temporary block
(stop every call for 5 minutes); 409, 5xx and network errors are retried with jittered
backoff; lists are paged by `nextPageUrl`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp

from daemon.config.rmm_sections import DATTO_PLATFORMS
from daemon.rmm.errors import (
    AuthFailed,
    Blocked,
    NotFound,
    PermissionDenied,
    RateLimited,
    Rejected,
    ServerError,
    Unreachable,
    WrongEndpoint,
)
from daemon.rmm.ratelimit import MonotonicClock, RollingWindowLimiter, Sleep, retry_after_s
from daemon.rmm.retry import Retryable, exchange, with_retries

log = logging.getLogger(__name__)

SOURCE = "datto"
# Datto's fixed public OAuth client, sent as HTTP Basic on the token request.
_PUBLIC_CLIENT = aiohttp.encode_basic_auth("public-client", "public")


def api_base_url(api_url: str) -> str:
    """`merlot` -> https://merlot-api.centrastage.net; a full URL is kept (without /api)."""
    if api_url in DATTO_PLATFORMS:
        return f"https://{api_url}-api.centrastage.net"
    return api_url.rstrip("/").removesuffix("/api")


# Where each device class keeps its serial number (rmm-facts.md): audit path, keys.
_AUDITS = {
    "device": ("/api/v2/audit/device/{uid}", ("bios", "serialNumber")),
    "esxihost": ("/api/v2/audit/esxihost/{uid}", ("systemInfo", "serviceTag")),
    "printer": ("/api/v2/audit/printer/{uid}", ("snmpInfo", "snmpSerial")),
}


@dataclass(frozen=True)
class DattoLimits:
    """Request budgets per rolling window. The defaults keep reads under 90 % of 600 (above
    that Datto slows every reply) and resolves under 100."""

    window_s: float = 60.0
    reads: int = 540
    resolves: int = 95
    block_s: float = 300.0  # Datto's IP block after persisting past a 429
    min_429_wait_s: float = 60.0
    retries: int = 3  # per call, for 409/5xx/network errors and 429 waits
    backoff_base_s: float = 1.0
    token_early_refresh_s: float = 3600.0  # at most half the token's lifetime


@dataclass(frozen=True)
class DattoAlert:
    """An alert as alertd reads it; lenient: every field but the uid may be missing."""

    uid: str
    resolved: bool
    priority: str | None
    device_name: str | None
    device_uid: str | None
    site_name: str | None
    site_uid: str | None
    context_class: str | None
    raised_at: datetime | None
    diagnostics: str | None


def parse_time(value: Any) -> datetime | None:
    """Datto sends epoch milliseconds although the document says date-time strings."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_datto_alert(record: Mapping[str, Any]) -> DattoAlert | None:
    """One alert record, or None when it has no usable uid."""
    uid = _text(record.get("alertUid"))
    if uid is None:
        return None
    source_info = record.get("alertSourceInfo") or {}
    context = record.get("alertContext") or {}
    return DattoAlert(
        uid=uid.lower(), resolved=record.get("resolved") is True,
        priority=_text(record.get("priority")),
        device_name=_text(source_info.get("deviceName")),
        device_uid=_text(source_info.get("deviceUid")),
        site_name=_text(source_info.get("siteName")),
        site_uid=_text(source_info.get("siteUid")),
        context_class=_text(context.get("@class")) if isinstance(context, dict) else None,
        raised_at=parse_time(record.get("timestamp")),
        diagnostics=_text(record.get("diagnostics")),
    )


class DattoClient:
    """One account's API. Share one instance: its limiters and token are per account."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, api_key: str,
                 api_secret: str, *, limits: DattoLimits = DattoLimits(),
                 clock: MonotonicClock = time.monotonic, sleep: Sleep = asyncio.sleep,
                 timeout_s: float = 30.0):
        self._session = session
        self.base_url = api_base_url(api_url)
        self._host = urlsplit(self.base_url).netloc
        self._key = api_key
        self._secret = api_secret
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._reads = RollingWindowLimiter(limits.reads, limits.window_s, clock=clock,
                                           sleep=sleep)
        self._resolves = RollingWindowLimiter(limits.resolves, limits.window_s, clock=clock,
                                              sleep=sleep)
        self._token: str | None = None
        self._token_refresh_at_s = 0.0  # when the cached token is renewed
        self._token_lock = asyncio.Lock()
        self._last_429_s: float | None = None
        self._blocked_until_s = 0.0
        self._on_total: Callable[[int], None] | None = None

    def observe(self, on_total: Callable[[int], None] | None,
                on_wait: Callable[[float], None] | None) -> None:
        """For a sync's progress: `on_total(n)` with the item count of each paged list (its
        first page's `totalCount`), `on_wait(s)` before each wait for the rate limit."""
        self._on_total = on_total
        self._reads.on_wait = on_wait

    # --- calls alertd makes ---------------------------------------------------------------

    async def account(self) -> dict[str, Any]:
        """`GET /api/v2/account`: the cheap credential and platform test."""
        body = await self._call("GET", "/api/v2/account", self._reads)
        return body if isinstance(body, dict) else {}

    async def resolve_alert(self, uid: str) -> bool:
        """Resolve one alert. True when this call resolved it, False when Datto no longer
        knows it (404: treated as done)."""
        try:
            await self._call("POST", f"/api/v2/alert/{uid}/resolve", self._resolves)
        except NotFound:
            return False
        return True

    async def alert(self, uid: str) -> DattoAlert | None:
        """One alert, or None if Datto does not know it."""
        try:
            body = await self._call("GET", f"/api/v2/alert/{uid}", self._reads)
        except NotFound:
            return None
        return parse_datto_alert(body) if isinstance(body, dict) else None

    async def device_serial(self, uid: str, device_class: str | None) -> str | None:
        """The serial number from the device's audit (one read per device; None when the
        audit has none or Datto does not know the device)."""
        path, keys = _AUDITS.get(device_class or "device", _AUDITS["device"])
        try:
            body = await self._call("GET", path.format(uid=uid), self._reads)
        except NotFound:
            return None
        for key in keys:
            body = body.get(key) if isinstance(body, dict) else None
        return str(body).strip() or None if body is not None else None

    async def open_alerts(self) -> AsyncIterator[DattoAlert]:
        async for record in self.paged("/api/v2/account/alerts/open", "alerts"):
            alert = parse_datto_alert(record)
            if alert is not None:
                yield alert

    async def paged(self, path: str, items_key: str, params: Mapping[str, str] | None = None,
                    page_size: int = 250) -> AsyncIterator[dict[str, Any]]:
        """Every item of a paged list, following `nextPageUrl` (0-based pages). The filters
        are re-added to each next URL (Datto drops them); a next URL on another host or one
        seen before ends the walk with an error rather than a loop or a leak of the token."""
        filters = dict(params or {})
        query = {**filters, "page": "0", "max": str(page_size)}
        seen = {f"{path}?{urlencode(sorted(query.items()))}"}
        while True:
            body = await self._call("GET", path, self._reads, query)
            if not isinstance(body, dict):
                raise ServerError(SOURCE, f"{path}: the answer is not a JSON object")
            items = body.get(items_key) or []
            details = body.get("pageDetails") or {}
            if len(seen) == 1 and self._on_total is not None and isinstance(
                    details.get("totalCount"), int):
                self._on_total(details["totalCount"])
            for item in items:
                if isinstance(item, dict):
                    yield item
            next_url = details.get("nextPageUrl")
            if not next_url or not items:
                return
            parts = urlsplit(next_url)
            if parts.netloc and parts.netloc != self._host:
                raise ServerError(SOURCE, f"{path}: nextPageUrl points to another host "
                                          f"({parts.netloc}); not followed")
            path = parts.path or path
            query = {**dict(parse_qsl(parts.query)), **filters}
            key = f"{path}?{urlencode(sorted(query.items()))}"
            if key in seen:
                raise ServerError(SOURCE, f"{path}: nextPageUrl repeats a page; stopped")
            seen.add(key)

    # --- transport --------------------------------------------------------------------------

    async def _ensure_token(self, stale: str | None = None) -> str:
        """A valid token; one caller fetches, the others wait for it. `stale`: the token a
        401 was answered with (fetch a new one unless someone already did)."""
        async with self._token_lock:
            if self._token is not None and self._token != stale and \
                    self._clock() < self._token_refresh_at_s:
                return self._token
            url = f"{self.base_url}/auth/oauth/token"
            form = {"grant_type": "password", "username": self._key, "password": self._secret}
            try:
                async with self._session.post(url, data=form, timeout=self._timeout,
                                              headers={"Authorization": _PUBLIC_CLIENT}
                                              ) as response:
                    text = await response.text()
                    status = response.status
                    body = _json_or_none(text) if status < 300 else None
            except (aiohttp.ClientError, TimeoutError) as err:
                raise Unreachable(SOURCE, f"{self.base_url}: {type(err).__name__}: "
                                          f"{err}") from None
            if status in (400, 401):
                raise AuthFailed(SOURCE, "the API key or secret was refused (token request "
                                         f"answered {status})")
            if status == 403:  # the token endpoint has no permissions: this is the block
                raise self._start_block("POST", "/auth/oauth/token")
            if status == 404 or (status < 300 and not isinstance(body, dict)):
                raise WrongEndpoint(SOURCE, f"{self.base_url} does not answer like a Datto "
                                            "RMM API (wrong platform?)")
            if status >= 300 or not isinstance(body, dict) or "access_token" not in body:
                raise ServerError(SOURCE, f"token request answered {status}")
            self._token = str(body["access_token"])
            expires_in_s = body.get("expires_in")
            lifetime_s = float(expires_in_s) if isinstance(expires_in_s, int | float) else 3600.0
            # Renewed early, but never so early that a short-lived token is not reused.
            early_s = min(self._limits.token_early_refresh_s, lifetime_s / 2)
            self._token_refresh_at_s = self._clock() + lifetime_s - early_s
            log.info("datto: new API token, valid for %.0f s", lifetime_s)
            return self._token

    async def _call(self, method: str, path: str, limiter: RollingWindowLimiter,
                    params: Mapping[str, str] | None = None) -> Any:
        """One API call with the limiter, token renewal, waits and retries described above."""
        renewed = False  # at most one token renewal per call, across its attempts

        async def attempt_once() -> Any:
            nonlocal renewed
            while True:
                now = self._clock()
                if now < self._blocked_until_s:
                    raise Blocked(SOURCE, f"calls stopped for {self._blocked_until_s - now:.0f}"
                                          " s more after Datto's 403 block",
                                  self._blocked_until_s)
                token = await self._ensure_token()
                answer = await exchange(self._session, limiter, SOURCE, method,
                                        f"{self.base_url}{path}", path, params,
                                        {"Authorization": f"Bearer {token}"}, self._timeout)
                status, text = answer.status, answer.text
                if status < 300:
                    return _json_or_none(text)
                if status == 401 and not renewed:
                    # An expired or revoked token: fetch a new one, once. The renewal is
                    # part of this attempt, so it neither counts as one nor backs off.
                    renewed = True
                    await self._ensure_token(stale=token)
                    continue
                if status == 401:
                    raise AuthFailed(SOURCE, f"{method} {path}: 401 with a fresh token")
                if status == 404:
                    raise NotFound(SOURCE, f"{method} {path}: not found")
                if status == 429:
                    self._last_429_s = self._clock()
                    wait_s = max(retry_after_s(answer.retry_after) or 0.0,
                                 self._limits.min_429_wait_s)
                    limiter.pause_until(self._clock() + wait_s)
                    log.warning("datto: 429 on %s %s; pausing %s calls for %.0f s", method,
                                path, "resolve" if limiter is self._resolves else "read",
                                wait_s)
                    # The limiter's pause is the wait: no backoff on top of it.
                    raise Retryable(RateLimited(SOURCE, f"{method} {path}: 429 Too Many "
                                                        "Requests"), waited=True)
                if status == 403:
                    raise self._forbidden(method, path)
                if status == 409 or status >= 500:
                    raise Retryable(ServerError(SOURCE, f"{method} {path}: HTTP {status}"))
                raise Rejected(SOURCE, f"{method} {path}: HTTP {status}: {text[:200]}")

        return await with_retries(attempt_once, retries=self._limits.retries,
                                  backoff_base_s=self._limits.backoff_base_s, sleep=self._sleep)

    def _start_block(self, method: str, path: str) -> Blocked:
        """Datto blocks this address: every call stops for `block_s`."""
        self._blocked_until_s = self._clock() + self._limits.block_s
        self._reads.pause_until(self._blocked_until_s)
        self._resolves.pause_until(self._blocked_until_s)
        log.error("datto: 403 on %s %s: Datto blocks this address after throttling; every "
                  "call stops for %.0f s", method, path, self._limits.block_s)
        return Blocked(SOURCE, f"{method} {path}: 403: blocked after throttling, calls stop "
                               f"for {self._limits.block_s:.0f} s", self._blocked_until_s)

    def _forbidden(self, method: str, path: str) -> Exception:
        """A 403 right after throttling is Datto's block; otherwise a missing permission."""
        now = self._clock()
        if self._last_429_s is not None and now - self._last_429_s < self._limits.window_s * 2:
            return self._start_block(method, path)
        return PermissionDenied(SOURCE, f"{method} {path}: 403: the API user lacks the "
                                        f"permission for {path}", resource=path)


def _json_or_none(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
