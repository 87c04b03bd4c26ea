"""The sync's report of one run: counts per entity and action, skipped records, errors, and
the operations themselves for a preview (`SyncReport`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon.sync.records import SyncOp

MAX_SKIPPED_KEPT = 200  # reasons kept in a report; the count is always complete


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
