"""Fake SyncroMSP REST API v1: /me, customers, contacts, customer assets, settings and RMM
alerts (list, read, clear by DELETE), with the per-IP rate limit, per-resource permissions,
1-based paging with full, partial or missing `meta`, and injected failures.

Shapes follow the examples in the vendor's OpenAPI document and ../shared/rmm-facts.md.
Error bodies: 401 `{"error": ...}` (the document's example), 404 `{"message": "Not found"}`
(the document's most common 404 example), other errors `{"error": ...}`. Over the rate limit
the fake answers 429 with `{"error": ...}` by default; with `retry_later_text` it answers what
Rack::Attack sends by default, the plain-text body "Retry later\\n", with `retry_later_status`
(429 unless a test wants the 200 the facts warn about)."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from aiohttp import web

from tests.fakes import Clock, FakeServer, RollingWindow, int_query

API = "/api/v1"
PERMISSION_DENIED = "Not authorized. Please ask account admin to update your group permissions."
ACCOUNT_TZ = timezone(timedelta(hours=-6))  # Syncro writes times in the account's own offset
MetaMode = Literal["full", "partial", "none"]
ALERT_STATUSES = {"active": (False,), "resolved": (True,), "all": (False, True)}


def iso_now() -> str:
    return datetime.now(ACCOUNT_TZ).isoformat(timespec="milliseconds")


class SyncroFake(FakeServer):
    """One Syncro account behind the v1 REST API.

    State is plain data tests may read and edit: `customers`, `contacts`, `assets`, `alerts`
    (each id -> record), `asset_types`, `asset_type_fields`, `asset_type_field_answers` (served
    by /settings), `denied` (path prefixes that answer 401), `meta_mode` ("full", "partial":
    only total_pages and page, "none": no meta at all).

    One rate-limit bucket, `all`: `rate_limit` requests per rolling `window_s`, counted before
    authentication as a per-IP limit is."""

    def __init__(self, *, api_key: str = "syncro-api-key", subdomain: str = "example-msp",
                 window_s: float = 60.0, rate_limit: int = 180,
                 retry_later_text: bool = False, retry_later_status: int = 429,
                 customers_per_page: int = 100, contacts_per_page: int = 50,
                 assets_per_page: int = 50, alerts_per_page: int = 25,
                 meta_mode: MetaMode = "full", clock: Clock = time.monotonic):
        super().__init__(window_s=window_s, clock=clock)
        self.api_key = api_key
        self.subdomain = subdomain
        self.retry_later_text = retry_later_text
        self.retry_later_status = retry_later_status
        self.per_page = {"customers": customers_per_page, "contacts": contacts_per_page,
                         "assets": assets_per_page, "rmm_alerts": alerts_per_page}
        self.meta_mode: MetaMode = meta_mode
        self.buckets = {"all": RollingWindow(rate_limit, window_s)}
        self.denied: list[str] = []
        self.customers: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.assets: dict[int, dict[str, Any]] = {}
        self.alerts: dict[int, dict[str, Any]] = {}
        self.asset_types: list[dict[str, Any]] = [
            {"id": 1, "name": "Syncro Device"}, {"id": 2, "name": "Managed Printer"}]
        self.asset_type_fields: list[dict[str, Any]] = [
            {"id": 11, "name": "Warranty Expires", "field_type": "date", "asset_type_id": 1},
            {"id": 12, "name": "Backup Agent", "field_type": "dropdown", "asset_type_id": 1}]
        self.asset_type_field_answers: list[dict[str, Any]] = [
            {"id": 101, "asset_type_field_id": 12, "value": "Veeam"}]
        self._next_id = {"customers": 31_000_000, "contacts": 8_800_000, "assets": 9_100_000,
                         "alerts": 501_000_000}
        self._add_routes()

    # --- state helpers ---

    def add_customer(self, business_name: str | None = "Acme Dental", *,
                     firstname: str = "Dana", lastname: str = "Whitfield",
                     email: str | None = None, disabled: bool = False,
                     properties: dict[str, Any] | None = None,
                     id: int | None = None) -> dict[str, Any]:
        customer_id = id or self._new_id("customers")
        fullname = f"{firstname} {lastname}".strip()
        now = iso_now()
        customer: dict[str, Any] = {
            "id": customer_id, "firstname": firstname, "lastname": lastname,
            "fullname": fullname, "business_name": business_name,
            "email": email or f"office{customer_id}@example.test",
            "created_at": now, "updated_at": now, "get_sms": False, "opt_out": False,
            "disabled": disabled, "no_email": False, "properties": properties or {},
            "online_profile_url": f"https://{self.subdomain}.syncromsp.com/my_profile/v2/index"
                                  f"?portal_key={secrets.token_hex(10)}",
            "business_and_full_name": f"{business_name} - {fullname}" if business_name
                                      else fullname,
            "business_then_name": business_name or fullname,
            **dict.fromkeys(("phone", "mobile", "pdf_url", "address", "address_2", "city",
                             "state", "zip", "latitude", "longitude", "notes",
                             "location_name", "location_id", "tax_rate_id",
                             "notification_email", "invoice_cc_emails", "invoice_term_id",
                             "referred_by", "ref_customer_id"))}
        self.customers[customer_id] = customer
        return customer

    def add_contact(self, customer_id: int, name: str = "Dana Whitfield", *,
                    email: str | None = None, id: int | None = None) -> dict[str, Any]:
        contact_id = id or self._new_id("contacts")
        now = iso_now()
        contact: dict[str, Any] = {
            "id": contact_id, "name": name, "email": email or f"contact{contact_id}@example.test",
            "customer_id": customer_id, "account_id": 1, "created_at": now, "updated_at": now,
            "properties": {}, "opt_out": False,
            **dict.fromkeys(("address1", "address2", "city", "state", "zip", "phone", "mobile",
                             "latitude", "longitude", "notes", "vendor_id", "extension"))}
        self.contacts[contact_id] = contact
        return contact

    def add_asset(self, customer_id: int | None = None, *, name: str | None = None,
                  asset_type: str = "Syncro Device", serial: str | None = None,
                  properties: dict[str, Any] | None = None, contact_id: int | None = None,
                  id: int | None = None) -> dict[str, Any]:
        """An asset of `customer_id`, or of a new customer. Default properties mix custom
        fields, system keys and a remote-access password, as real ones do."""
        if customer_id is None:
            customer_id = self.add_customer()["id"]
        asset_id = id or self._new_id("assets")
        name = name or f"WS-{asset_id}"
        now = iso_now()
        asset: dict[str, Any] = {
            "id": asset_id, "name": name, "customer_id": customer_id, "contact_id": contact_id,
            "created_at": now, "updated_at": now,
            "properties": properties if properties is not None else {
                "device_name": name, "os": "Microsoft Windows 11 Pro", "model": "OptiPlex 7010",
                "manufacturer": "Dell Inc.", "Warranty Expires": "2027-05-31",
                "Backup Agent": "101", "syncro_splashtop_password": "not-a-real-secret-1f2e3d"},
            "asset_type": asset_type, "asset_serial": serial, "external_rmm_link": None,
            "rmm_links": [], "rmm_store": None, "address": None}
        self.assets[asset_id] = asset
        return asset

    def add_alert(self, *, id: int | None = None, resolved: bool = False,
                  customer_id: int | None = None, asset_id: int | None = None,
                  trigger: str = "low_hd_space_trigger",
                  description: str = "Low Hd Space Trigger",
                  formatted_output: str = "Drive C: has 4.1 GB free (3%), below the 5% threshold.",
                  ) -> dict[str, Any]:
        """An RMM alert on `asset_id`, or on a new asset (of `customer_id` if given)."""
        asset = self.assets[asset_id] if asset_id else self.add_asset(customer_id)
        alert_id = id or self._new_id("alerts")
        now = iso_now()
        alert: dict[str, Any] = {
            "id": alert_id, "customer_id": asset["customer_id"], "ticket_number": None,
            "ticket_status": None, "computer_name": asset["name"],
            "properties": {"trigger": trigger, "description": description,
                           "formatted_output": formatted_output, "device_id": asset["id"]},
            "resolved": resolved, "check_id": None, "status": None,
            "formatted_output": formatted_output, "description": description,
            "created_at": now, "updated_at": now, "asset_id": asset["id"]}
        self.alerts[alert_id] = alert
        return alert

    def deny(self, path_prefix: str) -> None:
        """Requests under `path_prefix` (e.g. "/api/v1/customer_assets") answer 401, as a
        token without that resource's permission gets."""
        self.denied.append(path_prefix)

    def _new_id(self, kind: str) -> int:
        self._next_id[kind] += 1
        return self._next_id[kind]

    def _customer_view(self, customer: dict[str, Any]) -> dict[str, Any]:
        contacts = [c for c in self.contacts.values() if c["customer_id"] == customer["id"]]
        return customer | {"contacts": contacts}

    def _asset_view(self, asset: dict[str, Any]) -> dict[str, Any]:
        return asset | {"customer": self.customers.get(asset["customer_id"])}

    # --- errors and admission ---

    def error_response(self, request: web.Request, status: int, message: str,
                       headers: dict[str, str] | None = None) -> web.Response:
        body = {"message": "Not found"} if status == 404 else {"error": message}
        return web.json_response(body, status=status, headers=headers)

    async def admit(self, request: web.Request) -> web.Response | None:
        bucket, now_s = self.buckets["all"], self.clock()
        if bucket.is_full(now_s):
            if self.retry_later_text:
                return web.Response(status=self.retry_later_status, text="Retry later\n")
            return self.error_response(request, 429, "Rate limit exceeded. Retry later.")
        bucket.add(now_s)
        if self._token(request) != self.api_key:
            return self.error_response(request, 401, "Not authorized. Invalid API token.")
        if any(request.path.startswith(prefix) for prefix in self.denied):
            return self.error_response(request, 401, PERMISSION_DENIED)
        return None

    def _token(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization")
        if header is None:
            return request.query.get("api_key")
        scheme, _, token = header.partition(" ")
        return token if scheme.lower() == "bearer" else header

    # --- routes ---

    def _add_routes(self) -> None:
        for path, handler in [
            ("/me", self._me), ("/customers", self._customers), ("/contacts", self._contacts),
            ("/customer_assets", self._assets), ("/customer_assets/{id}", self._asset),
            ("/settings", self._settings), ("/rmm_alerts", self._alerts),
            ("/rmm_alerts/{id}", self._alert),
        ]:
            self.app.router.add_get(API + path, handler, allow_head=False)
        self.app.router.add_delete(API + "/rmm_alerts/{id}", self._clear_alert)

    async def _me(self, request: web.Request) -> web.Response:
        crud = {"read": True, "write": True, "delete": True}
        return web.json_response({  # user_token: the document's example value, not api_key
            "user_token": "3746f72b-9852-4d1a-84e9-eedb5c50abcd",
            "user_email": "api@example-msp.test", "user_name": "alertd API", "user_id": 1,
            "admin": False,
            "can_use_app": True, "two_factor_required": False, "subdomain": self.subdomain,
            "default_location": None, "enable_multi_locations": False, "locations_allowed": [],
            "permissions": {"asset": crud, "customer": crud, "ticket": crud, "invoice": crud,
                            "payment": crud,
                            "worksheet": {"add": True, "manage": True, "delete": True},
                            "script": {"execute": False}}})

    async def _customers(self, request: web.Request) -> web.Response:
        include_disabled = request.query.get("include_disabled") == "true"
        customers = [c for c in self.customers.values() if include_disabled or not c["disabled"]]
        return self._page(request, "customers", customers, view=self._customer_view)

    async def _contacts(self, request: web.Request) -> web.Response:
        customer_id = int_query(request, "customer_id", 0)
        contacts = [c for c in self.contacts.values()
                    if not customer_id or c["customer_id"] == customer_id]
        return self._page(request, "contacts", contacts)

    async def _assets(self, request: web.Request) -> web.Response:
        customer_id = int_query(request, "customer_id", 0)
        type_id = int_query(request, "asset_type_id", 0)
        type_name = next((t["name"] for t in self.asset_types if t["id"] == type_id), None)
        assets = [a for a in self.assets.values()
                  if (not customer_id or a["customer_id"] == customer_id)
                  and (not type_id or a["asset_type"] == type_name)]
        return self._page(request, "assets", assets, view=self._asset_view)

    async def _asset(self, request: web.Request) -> web.Response:
        asset = self.assets.get(_path_id(request))
        if asset is None:
            return self.error_response(request, 404, "Not found")
        return web.json_response({"asset": self._asset_view(asset)})

    async def _settings(self, request: web.Request) -> web.Response:
        return web.json_response({
            "customers": {"required_fields": None, "customer_fields": [],
                          "customer_field_answers": []},
            "assets": {"asset_types": self.asset_types,
                       "asset_type_fields": self.asset_type_fields,
                       "asset_type_field_answers": self.asset_type_field_answers},
            "locale": {"iso_code": "en", "currency_symbol": "$", "date_format": "mm-dd-yy",
                       "time_format": "hh:mm tt", "time_zone": "America/Chicago",
                       "time_offset": "-06:00"},
            "ticket": {"ticket_types": [], "ticket_type_fields": [],
                       "ticket_type_field_answers": [],
                       "problem_types": ["Virus", "Hardware", "Software", "Other"],
                       "priorities": ["", "0 Urgent", "1 High", "2 Normal", "3 Low"]},
            "business_hours_enabled": False, "business_hours": [],
            "default_holiday_calendar": "USA", "msp_addon": None})

    async def _alerts(self, request: web.Request) -> web.Response:
        wanted = ALERT_STATUSES.get(request.query.get("status", "active"))
        if wanted is None:
            return self.error_response(request, 400, "status must be active, resolved or all")
        alerts = [a for a in self.alerts.values() if a["resolved"] in wanted]
        return self._page(request, "rmm_alerts", alerts)

    async def _alert(self, request: web.Request) -> web.Response:
        alert = self.alerts.get(_path_id(request))
        if alert is None:
            return self.error_response(request, 404, "Not found")
        return web.json_response({"rmm_alert": alert})

    async def _clear_alert(self, request: web.Request) -> web.Response:
        # A second DELETE's answer is unconfirmed on the real API; the fake repeats success.
        alert = self.alerts.get(_path_id(request))
        if alert is None:
            return self.error_response(request, 404, "Not found")
        alert.update(resolved=True, updated_at=iso_now())
        return web.json_response({"success": "true"})  # a string, as Syncro sends it

    def _page(self, request: web.Request, key: str, items: list[dict[str, Any]],
              view: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> web.Response:
        """One page of `items`; `view` (applied to that page's items only) shapes a record."""
        per_page = self.per_page[key]
        page = max(1, int_query(request, "page", 1))
        chosen = items[(page - 1) * per_page:page * per_page]
        body: dict[str, Any] = {key: [view(i) for i in chosen] if view else chosen}
        meta = {"total_pages": math.ceil(len(items) / per_page), "total_entries": len(items),
                "per_page": per_page, "page": page}
        if self.meta_mode == "full":
            body["meta"] = meta
        elif self.meta_mode == "partial":
            body["meta"] = {"total_pages": meta["total_pages"], "page": page}
        return web.json_response(body)


def _path_id(request: web.Request) -> int:
    """The record id in the path; 0, which no record has, when it is not a number."""
    raw = request.match_info["id"]
    return int(raw) if raw.isdigit() else 0
