"""Wall-clock time as alertd uses it: aware UTC datetimes, passed in as a `Clock` for tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time (an aware UTC datetime); tests pass a fixed or stepping one."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc_iso(moment: datetime | None) -> str | None:
    """ISO 8601 with `Z`, as every answer and listing writes a timestamp."""
    return moment.isoformat().replace("+00:00", "Z") if moment else None
