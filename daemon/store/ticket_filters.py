"""The ticket listing's filters on a ticket's alert (`source`, `alert_uid`), written so that
both backends find a page of newest tickets without reading every ticket or every alert of a
source, however many there are (bench/ticket_scale.py measures it).

The only index on what these filters compare is the unique (source, uid) of `alerts`:
- `source` and `alert_uid` together enter it directly: one alert, at most one ticket.
- `alert_uid` alone cannot enter it without a source, so SQLite walked every ticket to check
  its alert (57 ms at 100,000 tickets, 0.4 ms at 1,000). alertd knows a handful of sources:
  they are listed by skipping through the index (`_any_source`), and the index is entered once
  per source. No index of its own: that would cost every new alert a write on intake.
- `source` alone: `source_condition`.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from daemon.store.models import Alert, Ticket

# On SQLite, up to this many alerts of a source, its tickets are found through its alerts;
# with more, by walking the newest tickets (`source_condition`). At the boundary (1 % of
# 100,000 tickets) both plans take about 10 ms for a page of 100.
FEW_ALERTS = 1000

_ALERTS = Alert.__table__.alias("alerts_of_source")
_LISTED = Alert.__table__.alias("listed_sources")


def _any_source() -> ColumnElement[bool]:
    """`alerts.source` is one of the sources any alert has, read as a loose index scan: the
    smallest source, then repeatedly the smallest one after the previous (one seek each)."""
    sources = select(func.min(_LISTED.c.source).label("name")).cte("alert_sources",
                                                                   recursive=True)
    after = (select(func.min(_LISTED.c.source)).where(_LISTED.c.source > sources.c.name)
             .scalar_subquery())
    sources = sources.union_all(select(after).where(sources.c.name.is_not(None)))
    return Alert.source.in_(select(sources.c.name))


def uid_condition(uid: str, source: str | None) -> ColumnElement[bool]:
    """The ticket's alert has the upstream id `uid` (and the source `source`, if given),
    through the (source, uid) index."""
    return and_(Alert.uid == uid,
                Alert.source == source if source is not None else _any_source())


def source_condition(session: Session, source: str) -> ColumnElement[bool]:
    """The ticket's alert is of `source`, in the form that finds a page quickly for this
    source: on SQLite chosen by counting its alerts up to `FEW_ALERTS` (a range of the
    index).

    Which plan is quick depends on the source's share of the tickets. PostgreSQL knows it
    from its statistics and picks the plan for the join itself. SQLite has none (alertd never
    runs ANALYZE there) and enters the (source, uid) index: it reads every alert of the source
    and sorts all their tickets to keep a page, 0.7 s for 100,000 tickets of one source. For
    a source with many alerts the condition is therefore an EXISTS on the ticket's own row,
    so the newest tickets are walked (the primary key, or the index of another filter) and
    the walk stops once a page is full; for a source with few alerts such a walk could cover
    the whole table, and the join through the index is the quick plan.
    """
    if session.get_bind().dialect.name != "sqlite":
        return Alert.source == source
    counted = session.scalar(select(func.count()).select_from(
        select(Alert.id).where(Alert.source == source).limit(FEW_ALERTS).subquery()))
    if (counted or 0) < FEW_ALERTS:
        return Alert.source == source
    return (select(_ALERTS.c.id)
            .where(_ALERTS.c.id == Ticket.alert_id, _ALERTS.c.source == source)
            .correlate(Ticket).exists())
