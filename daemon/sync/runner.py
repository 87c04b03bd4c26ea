"""Running a sync: read the RMM's listings page by page, plan each batch (daemon.sync.core),
and apply it (daemon.sync.store) or only report it (preview).

- Streaming: listings are read by a task that stays up to two batches (500 records) ahead
  of the planning, so the rate limiter, not our processing, sets the pace; only small
  reference data and the set of seen asset ids stay in memory.
- One run at a time per database: `Database.exclusive("sync")` (a PostgreSQL advisory lock
  or an flock); a run that finds it taken is refused, not queued.
- An apply commits each batch on its own: a run that fails part-way keeps what it applied
  and says where it stopped; the next run continues from the stored ids. Deactivation of
  assets missing upstream happens only after a complete listing.
- Applied runs are recorded in `sync_runs` (a run interrupted by a stop or crash is marked
  failed by the next run); a preview writes nothing at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from daemon.config import Config
from daemon.config.sync_sections import LocalSiteRef
from daemon.core.clock import Clock, utcnow
from daemon.rmm.clients import RmmClients
from daemon.rmm.datto import DattoClient
from daemon.rmm.errors import RmmError
from daemon.rmm.syncro import SyncroClient
from daemon.store.database import Database
from daemon.store.models import SyncRun
from daemon.sync import store
from daemon.sync.core import (
    ConfigProblem,
    PageState,
    Planner,
    Policy,
    SyncOp,
    UpAsset,
    UpContact,
    UpCustomer,
    kind_of,
    map_fields,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
SOURCES = ("datto", "syncro")
ENTITIES = ("customers", "assets")
BATCH = 250  # records planned and committed together
DELETED_DEVICES_SITE = "Deleted Devices"  # Datto's built-in site, never imported
MAX_SKIPPED_KEPT = 200  # reasons kept in a report; the count is always complete
Progress = Callable[[str, int], None]  # (what, records done so far)


class SyncRefused(Exception):
    """The sync cannot start: not configured, or another run holds the lock."""


@dataclass
class SyncReport:
    source: str
    entities: list[str]
    preview: bool
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"  # running | ok | failed
    counts: Counter[str] = field(default_factory=Counter)  # "asset.create" -> n
    ops: list[SyncOp] | None = None  # kept for previews and --json
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    run_id: int | None = None
    trigger: str = "cli"  # schedule | cli

    def add(self, ops: Iterable[SyncOp]) -> None:
        for op in ops:
            self.counts[f"{op.entity}.{op.action}"] += 1
            if self.ops is not None:
                self.ops.append(op)

    def skip(self, reason: str) -> None:
        self.counts["skipped"] += 1
        if len(self.skipped) < MAX_SKIPPED_KEPT:
            self.skipped.append(reason)

    @property
    def writes(self) -> int:
        return sum(n for key, n in self.counts.items() if "." in key and
                   not key.endswith(".unchanged"))

    def summary(self) -> str:
        parts = [f"{n} {key.replace('.', ' ')}" for key, n in sorted(self.counts.items())
                 if not key.endswith(".unchanged")]
        what = "would write" if self.preview else "wrote"
        head = (f"sync {self.source} ({','.join(self.entities)}): {self.status}; "
                f"{what} {self.writes} change(s)")
        unchanged = sum(n for k, n in self.counts.items() if k.endswith(".unchanged"))
        return head + (f": {', '.join(parts)}" if parts else "") + \
            f"; {unchanged} record(s) already in step" + \
            (f"; errors: {'; '.join(self.errors)}" if self.errors else "")

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "run_id": self.run_id, "source": self.source, "entities": self.entities,
            "preview": self.preview, "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "counts": dict(sorted(self.counts.items())), "skipped": self.skipped,
            "errors": self.errors}
        if self.ops is not None:
            body["operations"] = [op.as_json() for op in self.ops]
        return body


class SyncRunner:
    """Runs syncs for the scheduled job of `alertd run` and for `alertd sync`."""

    def __init__(self, db: Database, clients: RmmClients, config: Config,
                 clock: Clock = utcnow):
        self._db = db
        self._clients = clients
        self._config = config
        self._clock = clock

    def enabled_sources(self) -> list[str]:
        """Sources with API credentials and at least one entity switched on."""
        found = []
        for source in SOURCES:
            settings = getattr(self._config.sync, source)
            if getattr(self._clients, source) is not None and (settings.customers
                                                               or settings.assets):
                found.append(source)
        return found

    async def run_scheduled(self) -> None:
        """The APScheduler job: every enabled source, its configured entities."""
        for source in self.enabled_sources():
            try:
                await self.run(source, trigger="schedule")
            except SyncRefused as err:
                log.info("sync %s skipped: %s", source, err)
            except Exception:  # a bug must not stop the scheduler; the run is recorded
                log.exception("sync %s failed", source)

    async def run(self, source: str, *, customers: bool | None = None,
                  assets: bool | None = None, preview: bool = False, trigger: str = "cli",
                  keep_ops: bool = False, progress: Progress | None = None) -> SyncReport:
        """One sync of `source`. `customers`/`assets`: None takes `[sync.<source>]`'s
        setting. Raises SyncRefused; RMM and configuration failures end the run as failed
        (recorded, unless a preview)."""
        if source not in SOURCES:
            raise SyncRefused(f"no RMM named {source!r}: datto or syncro")
        client = getattr(self._clients, source)
        if client is None:
            raise SyncRefused(f"[{source}] API credentials are not configured")
        settings = getattr(self._config.sync, source)
        wanted = [name for name, flag in (("customers", customers), ("assets", assets))
                  if (flag if flag is not None else getattr(settings, name))]
        if not wanted:
            raise SyncRefused("nothing to sync: no entity selected or enabled")
        report = SyncReport(source, wanted, preview, self._clock(),
                            ops=[] if keep_ops or preview else None, trigger=trigger)
        async with self._db.exclusive("sync") as got:
            if not got:
                raise SyncRefused("another sync is running (this or another instance)")
            if not preview:
                report.run_id = await self._db.write(lambda s: self._record_start(s, report))
            try:
                await self._run(source, client, report, progress)
                report.status = "ok"
            except (RmmError, ConfigProblem) as err:
                report.errors.append(str(err))
                report.status = "failed"
            except asyncio.CancelledError:  # alertd is stopping
                report.errors.append("interrupted: alertd stopped during the run")
                report.status = "failed"
                raise
            except Exception as err:
                report.errors.append(f"{type(err).__name__}: {err}")
                report.status = "failed"
                raise
            finally:
                report.finished_at = self._clock()
                if report.run_id is not None:
                    await self._db.write(lambda s: self._record_end(s, report))
                log.log(logging.INFO if report.status == "ok" else logging.ERROR, "%s",
                        report.summary())
        return report

    # --- one run ---------------------------------------------------------------------------

    async def _run(self, source: str, client: Any, report: SyncReport,
                   progress: Progress | None) -> None:
        index = await self._db.read(lambda s: store.load_index(s, source))
        planner = Planner(self._policy(source), index)
        id_map: dict[int, int] = {}
        if source == "syncro":
            await self._syncro(client, planner, report, id_map, progress)
        else:
            await self._datto(client, planner, report, id_map, progress)

    def _policy(self, source: str) -> Policy:
        sync = self._config.sync
        settings = sync.syncro if source == "syncro" else sync.datto
        customer_map: dict[str, LocalSiteRef] = dict(
            sync.syncro.customer_map if source == "syncro" else sync.datto.site_map)
        return Policy(
            source=source, site_name=sync.site_name, top_level=settings.top_level,
            asset_group=settings.asset_group, match_field=settings.match_field,
            match_exclusions=frozenset(v.strip().lower() for v in sync.match_exclusions),
            customer_map=customer_map,
            default_site=sync.syncro.default_site if source == "syncro" else None,
            site_mode=sync.datto.site_mode if source == "datto" else "customer_per_site",
            parent_customer=sync.datto.customer if source == "datto" else "",
            deactivate=(sync.syncro.deactivate_missing if source == "syncro"
                        else sync.datto.deactivate_deleted),
            last_user_as_end_user=source == "datto" and sync.datto.last_user_as_end_user)

    async def _commit(self, planner: Planner, report: SyncReport, ops: list[SyncOp],
                      id_map: dict[int, int]) -> None:
        if not report.preview and ops:
            now = self._clock()
            await self._db.write(lambda s: store.apply_ops(s, planner.policy.source, ops,
                                                           id_map, now))
        report.add(ops)  # counted once written: a failed batch is not in the counts

    async def _customers(self, records: AsyncIterator[UpCustomer], planner: Planner,
                         report: SyncReport, id_map: dict[int, int], plan: Any,
                         progress: Progress | None) -> None:
        done = 0
        async for batch in _batches(_prefetched(records), BATCH):
            ops = _plan_batch(batch, plan, "customer", report)
            await self._commit(planner, report, ops, id_map)
            done += len(batch)
            if progress:
                progress("customers", done)

    async def _assets(self, records: AsyncIterator[UpAsset], planner: Planner,
                      report: SyncReport, id_map: dict[int, int],
                      progress: Progress | None,
                      before_plan: Callable[[list[UpAsset], PageState], Any] | None = None
                      ) -> None:
        """Plan and apply every asset of `records` (an RMM error ends the run)."""
        source, match_field = planner.policy.source, planner.policy.match_field
        done = 0
        async for batch in _batches(_prefetched(records), BATCH):
            ext_ids = [a.ext_id for a in batch]
            state = await self._db.read(partial(store.page_state, source=source,
                                                ext_ids=ext_ids, match_field="",
                                                match_values=[]))
            if before_plan is not None:
                batch = await before_plan(batch, state)
            values = sorted({v for a in batch if (v := planner.policy.match_value(a))
                             and a.ext_id not in state.by_ref})
            if values:
                state.by_match = await self._db.read(partial(
                    store.assets_by_match, source=source, match_field=match_field,
                    values=values))
            ops = _plan_batch(batch, partial(planner.asset, state=state), "asset", report)
            await self._commit(planner, report, ops, id_map)
            done += len(batch)
            if progress:
                progress("assets", done)

    # --- Syncro ----------------------------------------------------------------------------

    async def _syncro(self, client: SyncroClient, planner: Planner, report: SyncReport,
                      id_map: dict[int, int], progress: Progress | None) -> None:
        settings = self._config.sync.syncro
        if "customers" in report.entities:
            await self._customers(_syncro_customers(client), planner, report, id_map,
                                  planner.customer, progress)
        if "assets" in report.entities:
            kinds, dropdowns = await _syncro_field_kinds(client)
            records = _syncro_assets(client, settings.field_mappings, kinds, dropdowns)
            await self._assets(records, planner, report, id_map, progress)
            await self._deactivate_missing(planner, report, id_map)

    async def _deactivate_missing(self, planner: Planner, report: SyncReport,
                                  id_map: dict[int, int]) -> None:
        if not planner.policy.deactivate:
            return
        source = planner.policy.source
        stored = await self._db.read(lambda s: store.stored_active_assets(s, source))
        await self._commit(planner, report, planner.missing_assets(stored), id_map)

    # --- Datto -----------------------------------------------------------------------------

    async def _datto(self, client: DattoClient, planner: Planner, report: SyncReport,
                     id_map: dict[int, int], progress: Progress | None) -> None:
        settings = self._config.sync.datto
        if "customers" in report.entities:
            plan = (planner.customer if settings.site_mode == "customer_per_site"
                    else planner.site_under_parent)
            await self._customers(_datto_sites(client), planner, report, id_map, plan,
                                  progress)
        if "assets" in report.entities:
            deleted_site = await _datto_deleted_site_uid(client)
            records = _datto_devices(client, settings.field_mappings, deleted_site)
            fetch = _serial_fetcher(client) if settings.fetch_serials else None
            await self._assets(records, planner, report, id_map, progress, fetch)

    # --- run records -----------------------------------------------------------------------

    @staticmethod
    def _record_start(session: Session, report: SyncReport) -> int:
        # This run holds the sync lock: a row still "running" is from a process that died.
        session.execute(update(SyncRun).where(SyncRun.status == "running").values(
            status="failed", errors=["interrupted: alertd stopped or died during the run"]))
        return int(session.execute(insert(SyncRun).returning(SyncRun.id), {
            "source": report.source, "entities": ",".join(report.entities),
            "trigger": report.trigger, "started_at": report.started_at,
            "status": "running", "counts": {}, "errors": []}).scalar_one())

    @staticmethod
    def _record_end(session: Session, report: SyncReport) -> None:
        session.execute(update(SyncRun).where(SyncRun.id == report.run_id).values(
            finished_at=report.finished_at, status=report.status,
            counts=dict(sorted(report.counts.items())), errors=report.errors[:50]))


# --- reading the RMMs ------------------------------------------------------------------------

async def _syncro_customers(client: SyncroClient) -> AsyncIterator[UpCustomer]:
    async for record in client.paged("/customers", "customers"):
        if record.get("id") is None:
            continue
        contacts = tuple(
            UpContact(str(c["id"]), str(c.get("name") or "").strip(), c.get("email") or None,
                      c.get("phone") or c.get("mobile") or None)
            for c in sorted((c for c in record.get("contacts") or []
                             if isinstance(c, dict) and c.get("id") is not None),
                            key=lambda c: int(c["id"]) if str(c["id"]).isdigit() else 0))
        name = (record.get("business_then_name") or record.get("business_name")
                or record.get("fullname") or f"Syncro customer {record['id']}")
        email = (record.get("email") or "").lower()
        default = next((c.ext_id for c in contacts if email and (c.email or "").lower()
                        == email), contacts[0].ext_id if contacts else None)
        yield UpCustomer(str(record["id"]), str(name), contacts, default)


async def _syncro_field_kinds(client: SyncroClient
                              ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Custom field kinds by name, and dropdown option labels (id -> label) by field name,
    from `GET /settings`."""
    body = await client.settings()
    assets = body.get("assets") if isinstance(body, dict) else None
    if not isinstance(assets, dict):
        return {}, {}
    fields = [f for f in assets.get("asset_type_fields") or [] if isinstance(f, dict)]
    kinds = {str(f.get("name")): kind_of(f.get("field_type")) for f in fields}
    names_by_id = {f.get("id"): str(f.get("name")) for f in fields}
    dropdowns: dict[str, dict[str, str]] = {}
    for answer in assets.get("asset_type_field_answers") or []:
        if not isinstance(answer, dict):
            continue
        field_name = names_by_id.get(answer.get("asset_type_field_id"))
        label = answer.get("value") or answer.get("content") or answer.get("name")
        if field_name is not None and label is not None:
            dropdowns.setdefault(field_name, {})[str(answer.get("id"))] = str(label)
    return kinds, dropdowns


async def _syncro_assets(client: SyncroClient, mappings: list[Any], kinds: dict[str, str],
                         dropdowns: dict[str, dict[str, str]]) -> AsyncIterator[UpAsset]:
    async for record in client.paged("/customer_assets", "assets"):
        if record.get("id") is None:
            continue
        properties = record.get("properties") if isinstance(record.get("properties"),
                                                            dict) else {}
        customer_id = record.get("customer_id")
        contact_id = record.get("contact_id")
        yield UpAsset(
            ext_id=str(record["id"]), name=str(record.get("name") or ""),
            owner_ext_id=str(customer_id) if customer_id is not None else None,
            type_name=record.get("asset_type"), serial=record.get("asset_serial"),
            mapped=map_fields(mappings, record, properties or {}, {}, kinds, dropdowns),
            contact_ext_id=str(contact_id) if contact_id is not None else None)


async def _datto_sites(client: DattoClient) -> AsyncIterator[UpCustomer]:
    async for record in client.paged("/api/v2/account/sites", "sites"):
        if not record.get("uid") or record.get("name") == DELETED_DEVICES_SITE:
            continue
        yield UpCustomer(str(record["uid"]), str(record.get("name") or record["uid"]))


async def _datto_deleted_site_uid(client: DattoClient) -> str | None:
    async for record in client.paged("/api/v2/account/sites", "sites"):
        if record.get("name") == DELETED_DEVICES_SITE:
            return str(record.get("uid"))
    return None


async def _datto_devices(client: DattoClient, mappings: list[Any],
                         deleted_site_uid: str | None) -> AsyncIterator[UpAsset]:
    async for record in client.paged("/api/v2/account/devices", "devices"):
        if not record.get("uid"):
            continue
        device_type = record.get("deviceType") if isinstance(record.get("deviceType"),
                                                             dict) else {}
        udf = record.get("udf") if isinstance(record.get("udf"), dict) else {}
        yield UpAsset(
            ext_id=str(record["uid"]), name=str(record.get("hostname") or ""),
            owner_ext_id=record.get("siteUid"),
            type_name=(device_type or {}).get("type") or (device_type or {}).get("category"),
            serial=None, mapped=map_fields(mappings, record, {}, udf or {}, {}, {}),
            last_user=record.get("lastLoggedInUser"),
            deleted=bool(record.get("deleted"))
            or (deleted_site_uid is not None and record.get("siteUid") == deleted_site_uid),
            device_class=record.get("deviceClass"))


AUDIT_CONCURRENCY = 8  # audits in flight; more would only wait in the limiter


def _serial_fetcher(client: DattoClient) -> Callable[[list[UpAsset], PageState], Any]:
    async def fetch(batch: list[UpAsset], state: PageState) -> list[UpAsset]:
        """Serials for the batch's devices alertd has no serial for (one audit read each,
        under the client's read limiter); the others keep the one alertd has."""
        # Few in flight: more would only hold limiter slots while they wait for a connection.
        gate = asyncio.Semaphore(AUDIT_CONCURRENCY)

        async def one(asset: UpAsset) -> UpAsset:
            local = state.by_ref.get(asset.ext_id)
            if asset.deleted or (local is not None and local.serial):
                return asset
            async with gate:
                serial = await client.device_serial(asset.ext_id, asset.device_class)
            return dataclasses.replace(asset, serial=serial)
        return list(await asyncio.gather(*(one(asset) for asset in batch)))
    return fetch


# --- plumbing --------------------------------------------------------------------------------

def _plan_batch(records: Iterable[T], plan: Callable[[T], tuple[list[SyncOp], str | None]],
                entity: str, report: SyncReport) -> list[SyncOp]:
    """Plan each record; count the skipped ones and those of `entity` already in step."""
    ops: list[SyncOp] = []
    for record in records:
        planned, skipped = plan(record)
        if skipped:
            report.skip(skipped)
        elif not any(op.entity == entity for op in planned):
            report.counts[f"{entity}.unchanged"] += 1
        ops.extend(planned)
    return ops


async def _prefetched(source: AsyncIterator[T], ahead: int = 2 * BATCH) -> AsyncIterator[T]:
    """`source`, read by a task that stays up to `ahead` items in front of the consumer, so
    fetching the next page overlaps processing this one."""
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=ahead)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put((True, item))
            await queue.put((False, None))
        except Exception as err:  # handed to the consumer, raised there
            await queue.put((False, err))

    task = asyncio.create_task(pump())
    try:
        while True:
            more, item = await queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _batches(source: AsyncIterator[T], size: int) -> AsyncIterator[list[T]]:
    batch: list[T] = []
    async for item in source:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
