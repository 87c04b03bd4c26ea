"""Running a sync: read the RMM's listings page by page (daemon.sync.listings), plan each
batch (daemon.sync.planner), and apply it (daemon.sync.persist) or only report it (preview).

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
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from daemon.config.sync_sections import LocalSiteRef, SyncConfig
from daemon.core.clock import Clock, utcnow
from daemon.rmm.clients import RmmClients
from daemon.rmm.datto import DattoClient
from daemon.rmm.errors import RmmError
from daemon.rmm.syncro import SyncroClient
from daemon.store.database import Database
from daemon.store.models import SyncRun
from daemon.sync import persist
from daemon.sync.listings import (
    datto_deleted_site_uid,
    datto_devices,
    datto_sites,
    serial_fetcher,
    syncro_assets,
    syncro_customers,
    syncro_field_kinds,
)
from daemon.sync.planner import Planner
from daemon.sync.records import ConfigProblem, PageState, Policy, SyncOp, UpAsset, UpCustomer
from daemon.sync.report import SyncReport
from daemon.tickets.placement import Placeable, TicketPlacer

log = logging.getLogger(__name__)

T = TypeVar("T")
SOURCES = ("datto", "syncro")
ENTITIES = ("customers", "assets")
BATCH = 250  # records planned and committed together


class Progress(Protocol):
    """Told how a sync goes, for `alertd sync`'s progress line. `what`: customers or assets."""

    def done(self, what: str, count: int) -> None:
        """`count` records of `what` planned and written so far."""

    def total(self, what: str, count: int) -> None:
        """The RMM says it holds `count` records of `what`."""

    def waiting(self, seconds: float) -> None:
        """Calls to the RMM pause `seconds` for its rate limit."""


class SyncRefused(Exception):
    """The sync cannot start: not configured, or another run holds the lock."""


PLACE_PER_UNIT = 100  # tickets placed per transaction after a run


class SyncRunner:
    """Runs syncs for the scheduled job of `alertd run` and for `alertd sync`."""

    def __init__(self, db: Database, clients: RmmClients, settings: SyncConfig,
                 clock: Clock = utcnow):
        self._db = db
        self._clients = clients
        self._settings = settings  # the `[sync]` section
        self._clock = clock

    def enabled_sources(self) -> list[str]:
        """Sources with API credentials and at least one entity switched on."""
        found = []
        for source in SOURCES:
            settings = getattr(self._settings, source)
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
        settings = getattr(self._settings, source)
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
                if not preview:  # tickets that opened with no customer, placed now if they can be
                    placed = await self._place_unplaced()
                    if placed:
                        report.counts["tickets.placed"] = placed
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

    async def _place_unplaced(self) -> int:
        """Place the open tickets without a customer that the records now place: found in a
        read, then written a few per transaction (SQLite's one writer is not held long)."""
        placer = TicketPlacer(self._settings.fallback_end_user)
        placeable = await self._db.read(lambda s: placer.unplaced_placements(s.connection()))
        placed = 0
        for start in range(0, len(placeable), PLACE_PER_UNIT):
            placed += await self._db.write(partial(
                _place_batch, placer, placeable[start:start + PLACE_PER_UNIT], self._clock()))
        return placed

    async def _run(self, source: str, client: Any, report: SyncReport,
                   progress: Progress | None) -> None:
        index = await self._db.read(lambda s: persist.load_index(s, source))
        planner = Planner(self._policy(source), index)
        id_map: dict[int, int] = {}
        try:
            if source == "syncro":
                await self._syncro(client, planner, report, id_map, progress)
            else:
                await self._datto(client, planner, report, id_map, progress)
        finally:
            _observe(client, "", None)  # the clients outlive the run

    def _policy(self, source: str) -> Policy:
        sync = self._settings
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
            await self._db.write(lambda s: persist.apply_ops(s, planner.policy.source, ops,
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
                progress.done("customers", done)

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
            state = await self._db.read(partial(persist.page_state, source=source,
                                                  ext_ids=ext_ids, match_field="",
                                                  match_values=[]))
            if before_plan is not None:
                batch = await before_plan(batch, state)
            values = sorted({v for a in batch if (v := planner.policy.match_value(a))
                             and a.ext_id not in state.by_ref})
            if values:
                state.by_match = await self._db.read(partial(
                    persist.assets_by_match, source=source, match_field=match_field,
                    values=values))
            ops = _plan_batch(batch, partial(planner.asset, state=state), "asset", report)
            await self._commit(planner, report, ops, id_map)
            done += len(batch)
            if progress:
                progress.done("assets", done)

    # --- Syncro ----------------------------------------------------------------------------

    async def _syncro(self, client: SyncroClient, planner: Planner, report: SyncReport,
                      id_map: dict[int, int], progress: Progress | None) -> None:
        settings = self._settings.syncro
        if "customers" in report.entities:
            _observe(client, "customers", progress)
            await self._customers(syncro_customers(client), planner, report, id_map,
                                  planner.customer, progress)
        if "assets" in report.entities:
            kinds, dropdowns = await syncro_field_kinds(client)
            _observe(client, "assets", progress)
            records = syncro_assets(client, settings.field_mappings, kinds, dropdowns)
            await self._assets(records, planner, report, id_map, progress)
            await self._deactivate_missing(planner, report, id_map)

    async def _deactivate_missing(self, planner: Planner, report: SyncReport,
                                  id_map: dict[int, int]) -> None:
        if not planner.policy.deactivate:
            return
        source = planner.policy.source
        stored = await self._db.read(lambda s: persist.stored_active_assets(s, source))
        await self._commit(planner, report, planner.missing_assets(stored), id_map)

    # --- Datto -----------------------------------------------------------------------------

    async def _datto(self, client: DattoClient, planner: Planner, report: SyncReport,
                     id_map: dict[int, int], progress: Progress | None) -> None:
        settings = self._settings.datto
        if "customers" in report.entities:
            plan = (planner.customer if settings.site_mode == "customer_per_site"
                    else planner.site_under_parent)
            _observe(client, "customers", progress)
            await self._customers(datto_sites(client), planner, report, id_map, plan,
                                  progress)
        if "assets" in report.entities:
            deleted_site = await datto_deleted_site_uid(client)
            _observe(client, "assets", progress)
            records = datto_devices(client, settings.field_mappings, deleted_site)
            fetch = serial_fetcher(client) if settings.fetch_serials else None
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


# --- plumbing --------------------------------------------------------------------------------


def _place_batch(placer: TicketPlacer, batch: list[Placeable], now: datetime,
                 session: Session) -> int:
    """One write unit of `SyncRunner._place_unplaced`: how many tickets it placed."""
    return placer.place_tickets(session.connection(), batch, now)

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


def _observe(client: DattoClient | SyncroClient, what: str, progress: Progress | None) -> None:
    """Tell `progress` the total of the paged list `client` reads next (the records of
    `what`) and every wait for the RMM's rate limit; nothing when there is no progress."""
    if progress is None:
        client.observe(None, None)
    else:
        client.observe(lambda count: progress.total(what, count), progress.waiting)
