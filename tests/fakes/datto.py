"""Fake Datto RMM REST API v2: the OAuth token endpoint and the account, site, device, alert,
audit and system endpoints alertd uses, with the account's rate limits, the 403 block after
persisting past a 429, paging whose nextPageUrl drops filters, and injected failures.

Shapes follow the vendor's OpenAPI document as the wire really carries it (../shared/
rmm-facts.md): timestamps are epoch milliseconds, many fields are null, alertContext is a free
object tagged by `@class`. Error bodies are Spring's: the token endpoint answers OAuth errors
(RFC 6749 section 5.2: a wrong API key or secret is `400 invalid_grant`, a wrong client
`401 invalid_client`), a missing or unknown bearer token `401` with `error`/`error_description`,
everything else `{"timestamp", "status", "error", "message", "path"}`."""

from __future__ import annotations

import asyncio
import base64
import math
import re
import secrets
import time
import uuid
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.fakes import Clock, FakeServer, RollingWindow, int_query

TOKEN_PATH = "/auth/oauth/token"
PUBLIC_CLIENT = ("public-client", "public")
READ, RESOLVE = "read", "alert-resolve"
RESOLVE_PATH = re.compile(r"/api/v2/alert/[^/]+/resolve")
PERMISSION_DENIED = "Access is denied: permission denied for this resource"
BLOCKED = "Request blocked: rate limit exceeded repeatedly, IP address temporarily blocked"
DISK_USAGE_CONTEXT: dict[str, Any] = {
    "@class": "perf_disk_usage_ctx", "diskName": "C:", "totalVolume": 475.8, "freeSpace": 14.2,
    "unitOfMeasure": "PERCENT", "diskNameDesignation": "SINGLE_VOLUME"}


def epoch_ms() -> int:
    return int(time.time() * 1000)


def _like(value: str | None, pattern: str | None) -> bool:
    """Datto's LIKE filters: partial, case-insensitive; an absent filter matches all."""
    return pattern is None or pattern.lower() in (value or "").lower()


class DattoFake(FakeServer):
    """One Datto RMM account behind the v2 REST API.

    State is plain data tests may read and edit: `account`, `sites` (starts with the built-in
    "Deleted Devices" site), `devices`, `audits` (device uid -> DeviceAudit), `alerts`
    (uid -> Alert), `tokens` (token -> expiry on the fake's clock).

    Rate limits (per account, rolling `window_s`): GETs share the `read` bucket
    (`read_limit`), alert resolves the `alert-resolve` bucket (`resolve_limit`). A request over
    the limit answers 429 (with `Retry-After` only if `send_retry_after`); a second over-limit
    request in the same bucket within `window_s` of a 429 blocks everything, the token endpoint
    included, with 403 for `block_s`. Reads past `slow_ratio` of the limit wait `slow_delay_s`
    (default one second per real minute of window) before they are answered."""

    def __init__(self, *, api_key: str = "datto-api-key",
                 api_secret: str = "datto-api-secret",  # noqa: S107 - a fake's own credential
                 window_s: float = 60.0, block_s: float = 300.0, read_limit: int = 600,
                 resolve_limit: int = 100, slow_ratio: float = 0.9,
                 slow_delay_s: float | None = None, send_retry_after: bool = False,
                 page_max: int = 250, token_lifetime_s: int = 359_999, udf_count: int = 300,
                 platform: str = "zinfandel", clock: Clock = time.monotonic):
        super().__init__(window_s=window_s, clock=clock)
        self.api_key, self.api_secret = api_key, api_secret
        self.block_s = block_s
        self.slow_ratio = slow_ratio
        self.slow_delay_s = window_s / 60.0 if slow_delay_s is None else slow_delay_s
        self.send_retry_after = send_retry_after
        self.page_max = page_max
        self.token_lifetime_s = token_lifetime_s
        self.udf_count = udf_count
        self.portal = f"https://{platform}.centrastage.net"
        self.buckets = {READ: RollingWindow(read_limit, window_s),
                        RESOLVE: RollingWindow(resolve_limit, window_s)}
        self.blocked_until_s: float | None = None
        self.wrong_platform = False
        self.tokens: dict[str, float] = {}
        self.denied: list[re.Pattern[str]] = []
        self.account: dict[str, Any] = {
            "id": 1042, "uid": "b7e3f1a9", "name": "Example MSP", "currency": "USD",
            "descriptor": {"bilingEmail": "billing@example-msp.test", "deviceLimit": 5000,
                           "timeZone": "Europe/London"}}
        self.sites: list[dict[str, Any]] = []
        self.devices: list[dict[str, Any]] = []
        self.audits: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self._next_id = 1000
        self.add_site("Deleted Devices", description="Devices deleted from their site")
        self._add_routes()

    # --- state helpers ---

    def add_site(self, name: str | None = None, *, uid: str | None = None,
                 description: str | None = None,
                 autotask_company_name: str | None = None) -> dict[str, Any]:
        site_id = self._new_id()
        site: dict[str, Any] = {
            "id": site_id, "uid": uid or str(uuid.uuid4()), "accountUid": self.account["uid"],
            "name": name or f"Site {site_id}", "description": description, "notes": None,
            "onDemand": False, "splashtopAutoInstall": True, "proxySettings": None,
            "autotaskCompanyName": autotask_company_name, "autotaskCompanyId": None,
            "portalUrl": f"{self.portal}/site/{site_id}"}
        self.sites.append(site)
        return site

    def add_device(self, site_uid: str | None = None, *, hostname: str | None = None,
                   uid: str | None = None, online: bool = True, deleted: bool = False,
                   device_class: str = "device", category: str = "Desktop",
                   operating_system: str = "Microsoft Windows 11 Pro 10.0.22631",
                   serial_number: str | None = None,
                   udf: dict[str, str | None] | None = None) -> dict[str, Any]:
        """A device in `site_uid`, or in the first site of our own (created when none)."""
        site = self._site(site_uid) if site_uid else self._first_user_site()
        if site is None:
            raise KeyError(site_uid)
        device_id = self._new_id()
        now_ms = epoch_ms()
        device: dict[str, Any] = {
            "id": device_id, "uid": uid or str(uuid.uuid4()), "siteId": site["id"],
            "siteUid": site["uid"], "siteName": site["name"],
            "deviceType": {"category": category, "type": category},
            "hostname": hostname or f"PC-{device_id}", "intIpAddress": "10.0.0.23",
            "operatingSystem": operating_system, "lastLoggedInUser": "EXAMPLE\\dana",
            "domain": "example.local", "cagVersion": "4.4.2210.2210", "displayVersion": None,
            "extIpAddress": "203.0.113.7", "description": None, "a64Bit": True,
            "rebootRequired": False, "online": online, "suspended": False, "deleted": deleted,
            "lastSeen": now_ms, "lastReboot": now_ms - 86_400_000, "lastAuditDate": now_ms,
            "creationDate": now_ms - 90 * 86_400_000,
            "udf": {f"udf{n}": None for n in range(1, self.udf_count + 1)} | (udf or {}),
            "snmpEnabled": False, "deviceClass": device_class,
            "portalUrl": f"{self.portal}/device/{device_id}", "warrantyDate": None,
            "antivirus": {"antivirusProduct": "Datto AV", "antivirusStatus": "RunningAndUpToDate"},
            "patchManagement": {"patchStatus": "FullyPatched", "patchesApprovedPending": 0,
                                "patchesNotApproved": 0, "patchesInstalled": 112},
            "softwareStatus": None, "webRemoteUrl": None, "networkProbe": False,
            "onboardedViaNetworkMonitor": False}
        self.devices.append(device)
        self.audits[device["uid"]] = self._audit_record(device, serial_number, now_ms)
        return device

    def add_alert(self, *, uid: str | None = None, resolved: bool = False,
                  device_uid: str | None = None, site_uid: str | None = None,
                  priority: str = "Moderate", diagnostics: str | None = None,
                  context: dict[str, Any] | None = None, muted: bool = False) -> dict[str, Any]:
        """An alert on `device_uid`, or on a new device (in `site_uid` if given)."""
        device = self._device(device_uid) if device_uid else self.add_device(site_uid)
        if device is None:
            raise KeyError(device_uid)
        now_ms = epoch_ms()
        alert: dict[str, Any] = {
            "alertUid": uid or str(uuid.uuid4()), "priority": priority,
            "diagnostics": diagnostics or "Disk usage on C: reached 97%",
            "resolved": resolved, "resolvedBy": "Example MSP admin" if resolved else None,
            "resolvedOn": now_ms if resolved else None, "muted": muted, "ticketNumber": None,
            "timestamp": now_ms,
            "alertMonitorInfo": {"sendsEmails": True, "createsTicket": False},
            "alertContext": dict(context or DISK_USAGE_CONTEXT),
            "alertSourceInfo": {"deviceUid": device["uid"], "deviceName": device["hostname"],
                                "siteUid": device["siteUid"], "siteName": device["siteName"]},
            "responseActions": [{"actionTime": now_ms, "actionType": "EMAIL_SENT",
                                 "description": "Email sent to alerts@example-msp.test",
                                 "actionReference": None, "actionReferenceInt": None}],
            "autoresolveMins": None}
        self.alerts[alert["alertUid"]] = alert
        return alert

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.token_lifetime_s
        return token

    def expire_tokens(self) -> None:
        """Every token issued so far stops working: the next API call answers 401."""
        self.tokens.clear()

    def deny(self, path_regex: str) -> None:
        """Paths matching `path_regex` (re.search) answer 403 "permission denied"."""
        self.denied.append(re.compile(path_regex))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _site(self, uid: str | None) -> dict[str, Any] | None:
        return next((s for s in self.sites if s["uid"] == uid), None)

    def _first_user_site(self) -> dict[str, Any]:
        return self.sites[1] if len(self.sites) > 1 else self.add_site()  # [0]: Deleted Devices

    def _device(self, uid: str | None) -> dict[str, Any] | None:
        return next((d for d in self.devices if d["uid"] == uid), None)

    def _audit_record(self, device: dict[str, Any], serial_number: str | None,
                      now_ms: int) -> dict[str, Any]:
        return {
            "portalUrl": device["portalUrl"], "webRemoteUrl": None,
            "systemInfo": {"manufacturer": "Dell Inc.", "model": "OptiPlex 7010",
                           "totalPhysicalMemory": 17_179_869_184, "username": "EXAMPLE\\dana",
                           "dotNetVersion": "4.8.09032", "totalCpuCores": 8},
            "nics": [], "bios": {"instance": "Dell Inc. 1.18.0", "releaseDate": now_ms,
                                 "serialNumber": serial_number, "smBiosVersion": "3.4"},
            "baseBoard": {"manufacturer": "Dell Inc.", "product": "0W0CHX"},
            "displays": [], "logicalDisks": [], "mobileInfo": [], "processors": [],
            "videoBoards": [], "attachedDevices": [], "snmpInfo": None, "physicalMemory": []}

    def _devices_status(self, devices: list[dict[str, Any]]) -> dict[str, int]:
        online = sum(1 for d in devices if d["online"])
        return {"numberOfDevices": len(devices), "numberOfOnlineDevices": online,
                "numberOfOfflineDevices": len(devices) - online}

    def _site_view(self, site: dict[str, Any]) -> dict[str, Any]:
        devices = [d for d in self.devices if d["siteUid"] == site["uid"]]
        return site | {"devicesStatus": self._devices_status(devices)}

    # --- errors and admission ---

    def error_response(self, request: web.Request, status: int, message: str,
                       headers: dict[str, str] | None = None) -> web.Response:
        body = {"timestamp": epoch_ms(), "status": status, "error": HTTPStatus(status).phrase,
                "message": message, "path": request.path}
        return web.json_response(body, status=status, headers=headers)

    def exempt_from_fail_next(self, request: web.Request) -> bool:
        return request.path == TOKEN_PATH

    async def admit(self, request: web.Request) -> web.Response | None:
        if self.wrong_platform:  # a Datto host, but the account lives on another platform
            return self.error_response(request, 404, "Not Found")
        now_s = self.clock()
        if self.blocked_until_s is not None and now_s < self.blocked_until_s:
            return self.error_response(request, 403, BLOCKED)
        if request.path == TOKEN_PATH:
            return None
        refusal = self._check_bearer(request, now_s)
        if refusal is not None:
            return refusal
        if any(p.search(request.path) for p in self.denied):
            return self.error_response(request, 403, PERMISSION_DENIED)
        if request.method == "POST" and RESOLVE_PATH.fullmatch(request.path):
            return await self._take(request, self.buckets[RESOLVE], now_s)
        if request.method == "GET":
            return await self._take(request, self.buckets[READ], now_s)
        return None

    def _check_bearer(self, request: web.Request, now_s: float) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _oauth_error(401, "unauthorized",
                                "Full authentication is required to access this resource")
        if self.tokens.get(token, 0.0) <= now_s:
            return _oauth_error(401, "invalid_token", "Invalid access token")
        return None

    async def _take(self, request: web.Request, bucket: RollingWindow,
                    now_s: float) -> web.Response | None:
        if bucket.is_full(now_s):
            if bucket.last_refused_s is not None and now_s - bucket.last_refused_s < self.window_s:
                bucket.last_refused_s = None
                self.blocked_until_s = now_s + self.block_s
                return self.error_response(request, 403, BLOCKED)
            bucket.last_refused_s = now_s
            headers = ({"Retry-After": str(math.ceil(bucket.seconds_until_free(now_s)))}
                       if self.send_retry_after else None)
            return self.error_response(request, 429, "Rate limit exceeded", headers)
        # Past 90 % of the read limit Datto answers each read a second late (rmm-facts.md).
        near_limit = bucket.count(now_s) >= self.slow_ratio * bucket.limit
        bucket.add(now_s)
        if near_limit and bucket is self.buckets[READ]:
            await asyncio.sleep(self.slow_delay_s)
        return None

    # --- routes ---

    def _add_routes(self) -> None:
        self.app.router.add_post(TOKEN_PATH, self._token)
        for path, handler in [
            ("/api/v2/account", self._account),
            ("/api/v2/account/sites", self._sites),
            ("/api/v2/account/devices", self._account_devices),
            ("/api/v2/site/{siteUid}/devices", self._site_devices),
            ("/api/v2/account/alerts/open", self._open_alerts),
            ("/api/v2/account/alerts/resolved", self._resolved_alerts),
            ("/api/v2/alert/{alertUid}", self._alert),
            ("/api/v2/system/pagination", self._pagination),
            ("/api/v2/system/request_rate", self._request_rate),
            ("/api/v2/audit/device/{deviceUid}", self._device_audit),
        ]:
            self.app.router.add_get(path, handler, allow_head=False)
        self.app.router.add_post("/api/v2/alert/{alertUid}/resolve", self._resolve)

    async def _token(self, request: web.Request) -> web.Response:
        if _basic_credentials(request) != PUBLIC_CLIENT:
            return _oauth_error(401, "invalid_client", "Bad client credentials")
        form = await request.post()
        if form.get("grant_type") != "password":
            return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
        if (form.get("username"), form.get("password")) != (self.api_key, self.api_secret):
            return _oauth_error(400, "invalid_grant", "Bad credentials")
        return web.json_response({
            "access_token": self.issue_token(), "token_type": "bearer",
            "expires_in": self.token_lifetime_s, "scope": "default", "jti": str(uuid.uuid4())})

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response(self.account | {"devicesStatus": {
            **self._devices_status(self.devices), "numberOfOnDemandDevices": 0,
            "numberOfManagedDevices": len(self.devices)}})

    async def _sites(self, request: web.Request) -> web.Response:
        name = request.query.get("siteName")
        sites = [self._site_view(s) for s in self.sites if _like(s["name"], name)]
        return self._page(request, "sites", sites)

    async def _account_devices(self, request: web.Request) -> web.Response:
        q = request.query
        devices = [d for d in self.devices if _like(d["hostname"], q.get("hostname"))
                   and _like(d["operatingSystem"], q.get("operatingSystem"))
                   and _like(d["siteName"], q.get("siteName"))]
        return self._page(request, "devices", devices)

    async def _site_devices(self, request: web.Request) -> web.Response:
        site_uid = request.match_info["siteUid"]
        if self._site(site_uid) is None:
            return self.error_response(request, 404, f"Site {site_uid} not found")
        return self._page(request, "devices",
                          [d for d in self.devices if d["siteUid"] == site_uid])

    async def _open_alerts(self, request: web.Request) -> web.Response:
        return self._alerts_page(request, resolved=False)

    async def _resolved_alerts(self, request: web.Request) -> web.Response:
        return self._alerts_page(request, resolved=True)

    def _alerts_page(self, request: web.Request, *, resolved: bool) -> web.Response:
        muted = request.query.get("muted")
        alerts = [a for a in self.alerts.values() if a["resolved"] == resolved
                  and (muted is None or str(a["muted"]).lower() == muted.lower())]
        return self._page(request, "alerts", alerts)

    async def _alert(self, request: web.Request) -> web.Response:
        alert = self.alerts.get(request.match_info["alertUid"])
        if alert is None:
            return self.error_response(request, 404, "Alert not found")
        return web.json_response(alert)

    async def _resolve(self, request: web.Request) -> web.Response:
        # Resolving an already-resolved alert is unconfirmed on the real API; the fake says 200.
        alert = self.alerts.get(request.match_info["alertUid"])
        if alert is None:
            return self.error_response(request, 404, "Alert not found")
        if not alert["resolved"]:
            alert.update(resolved=True, resolvedBy="API user", resolvedOn=epoch_ms())
        return web.Response(status=200)

    async def _pagination(self, request: web.Request) -> web.Response:
        return web.json_response({"max": self.page_max})

    async def _request_rate(self, request: web.Request) -> web.Response:
        now_s = self.clock()
        read, resolve = self.buckets[READ], self.buckets[RESOLVE]
        return web.json_response({
            "slidingTimeWindowSizeSeconds": math.ceil(self.window_s),
            "accountUid": self.account["uid"], "accountCount": read.count(now_s),
            "accountRateLimit": read.limit, "accountCutOffRatio": self.slow_ratio,
            "accountWriteRateLimit": resolve.limit, "accountWriteCount": resolve.count(now_s),
            "operationWriteStatus": {RESOLVE: {"limit": resolve.limit,
                                               "count": resolve.count(now_s)}}})

    async def _device_audit(self, request: web.Request) -> web.Response:
        device = self._device(request.match_info["deviceUid"])
        if device is None:
            return self.error_response(request, 404, "Device not found")
        if device["deviceClass"] != "device":  # printers and ESXi hosts have their own audits
            return self.error_response(request, 400, "Device class must be of type device")
        return web.json_response(self.audits[device["uid"]])

    def _page(self, request: web.Request, key: str, items: list[dict[str, Any]]) -> web.Response:
        """One page of `items`; the page links keep only page and max, as Datto's do."""
        page = int_query(request, "page", 0)
        size = min(int_query(request, "max", self.page_max), self.page_max)
        if page < 0 or size < 1:
            raise web.HTTPBadRequest(text="page must be >= 0 and max >= 1")
        chunk = items[page * size:(page + 1) * size]
        base = f"{request.scheme}://{request.host}{request.path}"
        more = (page + 1) * size < len(items)
        return web.json_response({
            "pageDetails": {
                "count": len(chunk), "totalCount": len(items),
                "prevPageUrl": f"{base}?page={page - 1}&max={size}" if page > 0 else None,
                "nextPageUrl": f"{base}?page={page + 1}&max={size}" if more else None},
            key: chunk})


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None
    return user, password
