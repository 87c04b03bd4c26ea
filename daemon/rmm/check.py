"""`alertd rmm test datto|syncro` and `/api/rmm/{name}/test`: is the API usable, and if not,
why: unreachable host, wrong platform/URL, bad credentials, or a missing permission (named)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from daemon.rmm.clients import RmmClients
from daemon.rmm.datto import DattoClient
from daemon.rmm.errors import (
    AuthFailed,
    NotFound,
    PermissionDenied,
    RmmError,
    Unreachable,
    WrongEndpoint,
)
from daemon.rmm.syncro import SyncroClient


@dataclass(frozen=True)
class Probe:
    what: str  # the permission or feature, as the RMM's admin screen names it
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class CheckResult:
    source: str
    status: str  # ok | unreachable | wrong_endpoint | bad_credentials | missing_permission
    #              | not_configured | error
    message: str
    probes: list[Probe] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _failure(source: str, err: RmmError) -> CheckResult:
    if isinstance(err, Unreachable):
        return CheckResult(source, "unreachable", f"cannot reach the API host: {err}")
    if isinstance(err, WrongEndpoint):
        return CheckResult(source, "wrong_endpoint", str(err))
    if isinstance(err, AuthFailed):
        return CheckResult(source, "bad_credentials", str(err))
    return CheckResult(source, "error", str(err))


async def _probe(what: str, call: Callable[[], Awaitable[Any]]) -> Probe:
    try:
        await call()
    except PermissionDenied as err:
        return Probe(what, False, str(err))
    return Probe(what, True)


# Ids no alert has: resolving one asks only whether the key may resolve (404: it may; a
# refusal: it may not), and resolves nothing.
NO_DATTO_ALERT = "00000000-0000-0000-0000-000000000000"
NO_SYNCRO_ALERT = "0"


async def _resolve_probe(what: str, resolve: Callable[[], Awaitable[Any]]) -> Probe:
    """Whether the key may resolve: an alert id that cannot exist is "not found" when it may,
    refused when it may not. Another answer proves neither: shown, not held against it."""
    try:
        await resolve()
    except PermissionDenied as err:
        return Probe(what, False, str(err))
    except (AuthFailed, Unreachable, WrongEndpoint):
        raise
    except RmmError as err:
        return Probe(what, True, f"not confirmed: {err}")
    return Probe(what, True)


async def _first(iterator: Any) -> None:
    async for _ in iterator:
        break


async def check_datto(client: DattoClient | None) -> CheckResult:
    if client is None:
        return CheckResult("datto", "not_configured",
                           "set [datto] api_url, api_key and api_secret")
    try:
        try:
            account = await client.account()
        except NotFound:
            account = {}
        if not account.get("uid"):  # rmm-facts: a wrong platform gives 404 or empty results
            raise WrongEndpoint("datto", f"{client.base_url} knows no account for this API "
                                         "key: check the platform in api_url")
        probes = [
            await _probe("alerts (read)", lambda: _first(
                client.paged("/api/v2/account/alerts/open", "alerts", page_size=1))),
            await _probe("sites (read)", lambda: _first(
                client.paged("/api/v2/account/sites", "sites", page_size=1))),
            await _probe("devices (read)", lambda: _first(
                client.paged("/api/v2/account/devices", "devices", page_size=1))),
            await _resolve_probe("alerts (resolve)",
                                 lambda: client.resolve_alert(NO_DATTO_ALERT)),
        ]
    except RmmError as err:
        return _failure("datto", err)
    return _summary("datto", f"account {account.get('name') or account.get('uid') or '?'} on "
                             f"{client.base_url}", probes)


async def check_syncro(client: SyncroClient | None) -> CheckResult:
    if client is None:
        return CheckResult("syncro", "not_configured", "set [syncro] api_url and api_key")
    try:
        try:
            me = await client.me()
        except NotFound:
            raise WrongEndpoint("syncro", f"{client.base_url}/me not found: check the "
                                              "subdomain and /api/v1 in api_url") from None
        probes = [
            await _probe("RMM Alerts - List/Search", lambda: _first(
                client.paged("/rmm_alerts", "rmm_alerts", {"status": "active"}))),
            await _probe("Customers - List/Search", lambda: _first(
                client.paged("/customers", "customers"))),
            await _probe("Assets - List/Search", lambda: _first(
                client.paged("/customer_assets", "assets"))),
            await _resolve_probe("RMM Alerts - resolve (DELETE)",
                                 lambda: client.resolve_alert(NO_SYNCRO_ALERT)),
        ]
    except RmmError as err:
        return _failure("syncro", err)
    user = me.get("user_name") or me.get("email") or "?"
    return _summary("syncro", f"token of {user} on {client.base_url}", probes)


def _summary(source: str, who: str, probes: list[Probe]) -> CheckResult:
    missing = [p.what for p in probes if not p.ok]
    if missing:
        return CheckResult(source, "missing_permission",
                           f"{who}: the API user lacks: {', '.join(missing)}", probes)
    return CheckResult(source, "ok", f"{who}: connected", probes)


async def check_source(name: str, clients: RmmClients) -> CheckResult:
    """The check of `name` (datto or syncro); raises LookupError for another name."""
    if name == "datto":
        return await check_datto(clients.datto)
    if name == "syncro":
        return await check_syncro(clients.syncro)
    raise LookupError(f"no RMM named {name!r}: datto or syncro")
