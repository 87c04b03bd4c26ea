"""Browsing over the API, on both backends: the imported reference data (customers, sites,
assets, end users), ticket JSON with the names of what a ticket belongs to, the ticket
filters and the full-text search, each with hostile input; one query per page, not per row.
Every response is validated against the OpenAPI document (tests/api_client.py)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from daemon.config import Config
from daemon.core.clock import utcnow
from daemon.http.app import create_app
from daemon.service.wiring import ROUTES, build_services
from daemon.store import ticket_filters
from daemon.store.database import Database
from daemon.store.models import Asset, AssetType, Customer, EndUser, Site, Ticket
from tests.api_client import TOKEN, Api


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
              db: Database, db_url: str) -> Api:
    config = make_config(f'[api]\ntokens = ["{TOKEN}"]\n', db_url=db_url)
    ctx = build_services(config, db)
    return Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)


async def seed(db: Database) -> dict[str, int]:
    """Two customers (one inactive, with % and _ in its name), their sites, end users, assets
    and tickets; returns the ids by name."""
    now = utcnow()

    def add(session: Session) -> dict[str, int]:
        def put(key: str, row: Any) -> Any:
            session.add(row)
            session.flush()
            ids[key] = row.id
            return row
        ids: dict[str, int] = {}
        acme = put("acme", Customer(name="Acme Dental", top_level="Clients", active=True,
                                    updated_at=now))
        old = put("old", Customer(name="Old 100% Co_op", active=False, updated_at=now))
        main = put("main", Site(customer_id=acme.id, name="Main Office", active=True,
                                updated_at=now))
        put("annex", Site(customer_id=acme.id, name="Annex", active=False, updated_at=now))
        put("old_site", Site(customer_id=old.id, name="Main Office", active=True,
                             updated_at=now))
        dana = put("dana", EndUser(customer_id=acme.id, name="Dana Whitfield",
                                   email="Dana@Acme.test", is_default=True, active=True,
                                   updated_at=now))
        put("eve", EndUser(customer_id=old.id, name="Eve Porter", email=None, active=True,
                           updated_at=now))
        kind = put("kind", AssetType(name="Workstation"))
        ws = put("ws", Asset(customer_id=acme.id, site_id=main.id, asset_type_id=kind.id,
                             end_user_id=dana.id, name="WS-DANA", serial="SN-0001",
                             fields={"os": "Windows 11"}, active=True, updated_at=now))
        put("loose", Asset(name="LOOSE-PC", serial="sn-0002", fields={}, active=False,
                           updated_at=now))
        for key, summary, details, placed in (
                ("t_disk", "FS-ACME-01 - Disk C: 97% full", "Disk usage high on C:", True),
                ("t_printer", "Printer offline", "The front desk printer is off", True),
                ("t_bare", "Backup failed", "Nightly backup of FS-ACME-01 failed", False)):
            put(key, Ticket(type="alert", status="open", summary=summary, details=details,
                            opened_at=now, customer_id=acme.id if placed else None,
                            site_id=main.id if placed else None,
                            asset_id=ws.id if placed else None,
                            end_user_id=dana.id if placed else None))
        return ids
    return await db.write(add)


@contextlib.contextmanager
def queries_sent(db: Database) -> Iterator[list[str]]:
    """The SELECT statements `db` sends while the block runs (not BEGIN or a pool ping)."""
    engine = db._sync_engine or db._async_engine.sync_engine  # type: ignore[union-attr]
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and statement.strip() != "SELECT 1":
            seen.append(statement)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def ids_of(api: Api, path: str, **params: str) -> list[int]:
    status, body = await api.call("GET", path, params=params)
    assert status == 200, body
    return [item["id"] for item in body["items"]]


# --- reference data --------------------------------------------------------------------------

async def test_customers_sites_end_users_assets_with_names_and_filters(api: Api) -> None:
    ids = await seed(api.ctx.db)
    _, customers = await api.call("GET", "/api/customers")
    assert customers["items"][-1] == {"id": ids["acme"], "name": "Acme Dental",
                                      "top_level": "Clients", "active": True,
                                      "updated_at": customers["items"][-1]["updated_at"]}
    assert await ids_of(api, "/api/customers", q="acme") == [ids["acme"]]
    assert await ids_of(api, "/api/customers", active="false") == [ids["old"]]
    # % and _ are characters, not LIKE wildcards.
    assert await ids_of(api, "/api/customers", q="100% co_op") == [ids["old"]]
    assert await ids_of(api, "/api/customers", q="%") == [ids["old"]]
    assert await ids_of(api, "/api/customers", q="   ") == [ids["old"], ids["acme"]]

    _, sites = await api.call("GET", "/api/sites", params={"customer_id": str(ids["acme"])})
    assert [(s["name"], s["customer"], s["active"]) for s in sites["items"]] == [
        ("Annex", "Acme Dental", False), ("Main Office", "Acme Dental", True)]
    assert await ids_of(api, "/api/sites", q="main office", active="true") == [
        ids["old_site"], ids["main"]]

    _, users = await api.call("GET", "/api/end-users", params={"q": "dana@acme"})
    [dana] = users["items"]
    assert (dana["customer"], dana["is_default"], dana["email"]) == (
        "Acme Dental", True, "Dana@Acme.test")
    assert await ids_of(api, "/api/end-users", customer_id=str(ids["old"])) == [ids["eve"]]

    _, assets = await api.call("GET", "/api/assets", params={"site_id": str(ids["main"])})
    [ws] = assets["items"]
    assert {k: ws[k] for k in ("name", "serial", "asset_type", "customer", "site",
                               "end_user", "fields")} == {
        "name": "WS-DANA", "serial": "SN-0001", "asset_type": "Workstation",
        "customer": "Acme Dental", "site": "Main Office", "end_user": "Dana Whitfield",
        "fields": {"os": "Windows 11"}}
    assert await ids_of(api, "/api/assets", q="SN-000") == [ids["loose"], ids["ws"]]
    _, loose = await api.call("GET", "/api/assets", params={"active": "false"})
    assert [(a["name"], a["customer"], a["site"], a["end_user"]) for a in loose["items"]] == [
        ("LOOSE-PC", None, None, None)]
    assert await ids_of(api, "/api/assets", customer_id="999999") == []


async def test_reference_listings_page_by_id(api: Api) -> None:
    ids = await seed(api.ctx.db)
    status, first = await api.call("GET", "/api/sites", params={"limit": "2"})
    assert status == 200 and [s["id"] for s in first["items"]] == [ids["old_site"],
                                                                   ids["annex"]]
    second = await ids_of(api, "/api/sites", limit="2",
                          before_id=str(first["next_before_id"]))
    assert second == [ids["main"]]


HOSTILE_PARAMS = [
    {"customer_id": "abc"}, {"customer_id": "-1"}, {"customer_id": "1.5"},
    {"customer_id": "99999999999999999999"}, {"customer_id": "\u00b2"}, {"site_id": "x"},
    {"active": "yes"}, {"active": "True"}, {"limit": "100000"}, {"limit": "0"},
    {"limit": "ten"}, {"before_id": "-5"}, {"q": "x" * 201}, {"q": "nul\x00byte"},
]


# Filters that a listing does not have are ignored, like any unknown query parameter.
NOT_A_FILTER_OF = {"/api/customers": {"customer_id", "site_id"}, "/api/sites": {"site_id"},
                   "/api/end-users": {"site_id"}, "/api/tickets": {"active"}}


@pytest.mark.parametrize("path", ["/api/customers", "/api/sites", "/api/assets",
                                  "/api/end-users", "/api/tickets"])
async def test_bad_filter_values_are_400_with_the_reason(api: Api, path: str) -> None:
    for params in HOSTILE_PARAMS:
        status, body = await api.call("GET", path, params=params)
        name = next(iter(params))
        if name in NOT_A_FILTER_OF.get(path, ()):
            assert status == 200, (params, body)
            continue
        assert status == 400 and body["error"] == "bad_request", (params, body)
        assert f"'{name}'" in body["detail"] or "'limit' and 'before_id'" in body["detail"]


@pytest.mark.parametrize("path", ["/api/tickets", "/api/assets", "/api/customers"])
async def test_a_page_is_one_query_however_many_rows(api: Api, path: str) -> None:
    await seed(api.ctx.db)
    with queries_sent(api.ctx.db) as small:
        await api.call("GET", path, params={"limit": "1"})
    with queries_sent(api.ctx.db) as full:
        await api.call("GET", path, params={"limit": "100"})
    assert len(full) == len(small) == 1, full


async def test_a_page_limit_is_written_into_the_sql(api: Api) -> None:
    """Not bound: PostgreSQL's generic plan of a page must know its limit, or with many rows
    it is a parallel plan and every page is planned again (daemon/store/queries.py)."""
    with queries_sent(api.ctx.db) as sent:
        await api.call("GET", "/api/tickets", params={"limit": "37"})
    [statement] = sent
    assert re.search(r"\bLIMIT 37\b", statement), statement


# --- tickets ------------------------------------------------------------------------------

async def test_ticket_json_names_what_it_belongs_to(api: Api) -> None:
    ids = await seed(api.ctx.db)
    status, ticket = await api.call("GET", f"/api/tickets/{ids['t_disk']}")
    assert status == 200
    assert {k: ticket[k] for k in ("customer_id", "customer", "site_id", "site", "asset_id",
                                   "asset", "end_user_id", "end_user", "alert", "notes")} == {
        "customer_id": ids["acme"], "customer": "Acme Dental", "site_id": ids["main"],
        "site": "Main Office", "asset_id": ids["ws"], "asset": "WS-DANA",
        "end_user_id": ids["dana"], "end_user": "Dana Whitfield", "alert": None, "notes": []}
    _, listing = await api.call("GET", "/api/tickets", params={"limit": "1"})
    [bare] = listing["items"]
    assert (bare["id"], bare["customer"], bare["site"], bare["asset"], bare["end_user"]) == (
        ids["t_bare"], None, None, None, None)
    # Every answer that returns a ticket carries the names.
    status, noted = await api.call("POST", f"/api/tickets/{ids['t_disk']}/notes",
                                   body={"body": "called Dana"})
    assert status == 201 and noted["end_user"] == "Dana Whitfield"
    status, closed = await api.call("POST", f"/api/tickets/{ids['t_disk']}/close")
    assert status == 200 and (closed["status"], closed["site"]) == ("closed", "Main Office")


async def test_ticket_filters_customer_site_and_status(api: Api) -> None:
    ids = await seed(api.ctx.db)
    placed = [ids["t_printer"], ids["t_disk"]]
    assert await ids_of(api, "/api/tickets", customer_id=str(ids["acme"])) == placed
    assert await ids_of(api, "/api/tickets", site_id=str(ids["main"])) == placed
    assert await ids_of(api, "/api/tickets", site_id=str(ids["annex"])) == []
    await api.call("POST", f"/api/tickets/{ids['t_printer']}/close")
    assert await ids_of(api, "/api/tickets", customer_id=str(ids["acme"]),
                        status="open") == [ids["t_disk"]]


async def test_alert_filters_give_the_same_tickets_in_every_form(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """`source` and `alert_uid`, alone and together (daemon/store/ticket_filters.py). On
    SQLite a source with few alerts is joined through the index, one with many walks the
    newest tickets: FEW_ALERTS lowered to 3 makes datto's three alerts many."""
    assert await ids_of(api, "/api/tickets", alert_uid="u1") == []  # no alert, no source
    await seed(api.ctx.db)  # tickets without an alert: never of a source
    made: dict[tuple[str, str], int] = {}
    for source, uid in (("datto", "u1"), ("syncro", "u1"), ("datto", "u2"), ("halo", "u3"),
                        ("datto", "u4")):
        _, body = await api.call("POST", "/api/alerts",
                                 body={"source": source, "uid": uid, "action": "raise"})
        made[source, uid] = body["events"][0]["ticket_id"]
    datto = [made["datto", "u4"], made["datto", "u2"], made["datto", "u1"]]
    await api.call("POST", f"/api/tickets/{datto[1]}/close")
    for few_alerts in (ticket_filters.FEW_ALERTS, 3):
        monkeypatch.setattr(ticket_filters, "FEW_ALERTS", few_alerts)
        assert await ids_of(api, "/api/tickets", source="datto") == datto
        assert await ids_of(api, "/api/tickets", source="datto", limit="2") == datto[:2]
        assert await ids_of(api, "/api/tickets", source="datto",
                            before_id=str(datto[0])) == datto[1:]
        assert await ids_of(api, "/api/tickets", source="datto", status="closed") == [
            datto[1]]
        assert await ids_of(api, "/api/tickets", source="halo") == [made["halo", "u3"]]
        assert await ids_of(api, "/api/tickets", source="nobody") == []
    assert await ids_of(api, "/api/tickets", alert_uid="u1") == [made["syncro", "u1"],
                                                                 made["datto", "u1"]]
    assert await ids_of(api, "/api/tickets", alert_uid="u1", source="syncro") == [
        made["syncro", "u1"]]
    assert await ids_of(api, "/api/tickets", alert_uid="u3", source="datto") == []
    assert await ids_of(api, "/api/tickets", alert_uid="u9") == []


async def test_text_search_finds_every_word_in_summary_or_details(api: Api) -> None:
    ids = await seed(api.ctx.db)
    assert await ids_of(api, "/api/tickets", q="disk") == [ids["t_disk"]]
    assert await ids_of(api, "/api/tickets", q="PRINTER desk") == [ids["t_printer"]]
    assert await ids_of(api, "/api/tickets", q="printer disk") == []  # all words must match
    assert await ids_of(api, "/api/tickets", q="fs-acme-01") == [ids["t_bare"], ids["t_disk"]]
    assert await ids_of(api, "/api/tickets", q="fs-acme-01",
                        customer_id=str(ids["acme"])) == [ids["t_disk"]]
    first = await ids_of(api, "/api/tickets", q="fs-acme-01", limit="1")
    assert first == [ids["t_bare"]]
    assert await ids_of(api, "/api/tickets", q="fs-acme-01", limit="1",
                        before_id=str(first[0])) == [ids["t_disk"]]
    assert await ids_of(api, "/api/tickets", q="  ") == [ids["t_bare"], ids["t_printer"],
                                                         ids["t_disk"]]


async def test_new_and_changed_tickets_are_searchable_at_once(api: Api) -> None:
    status, raised = await api.call("POST", "/api/alerts", body={
        "source": "datto", "uid": "a1b2", "action": "raise", "device": "SRV-MAIL",
        "message": "Exchange queue growing"})
    assert status == 201
    ticket_id = raised["events"][0]["ticket_id"]
    assert await ids_of(api, "/api/tickets", q="exchange queue") == [ticket_id]

    def retitle(session: Session) -> None:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and "Exchange queue" in ticket.summary
        ticket.summary, ticket.details = "SRV-MAIL relay", "Postfix relay stuck"
    await api.ctx.db.write(retitle)
    assert await ids_of(api, "/api/tickets", q="exchange queue") == []
    assert await ids_of(api, "/api/tickets", q="postfix") == [ticket_id]


HOSTILE_SEARCHES = [
    '"', '""', "'", "AND OR (", "NEAR(disk full)", "summary:disk", "details : x", "disk*",
    "-disk", "^disk", "+disk", "disk OR", "(", ")", "{summary details}: disk", "\\", "%_",
    "!", "&|<>:*", "disk\tfull", "Ünïcödé 漢字 😀", "a" * 200, "\u200b", "NOT", "*", ":",
]


async def test_search_syntax_in_q_is_text_never_an_error(api: Api) -> None:
    await seed(api.ctx.db)
    for q in HOSTILE_SEARCHES:
        status, body = await api.call("GET", "/api/tickets", params={"q": q})
        assert status == 200, (q, body)
        assert isinstance(body["items"], list)


async def test_syntax_characters_around_a_word_still_find_it(api: Api) -> None:
    ids = await seed(api.ctx.db)
    for q in ('"disk"', "(disk)", "disk!", "-disk-"):
        assert await ids_of(api, "/api/tickets", q=q) == [ids["t_disk"]], q
