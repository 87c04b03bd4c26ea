"""`[lifecycle]`: how alertd treats the tickets of alerts beyond one ticket per alert (issue 16:
human work, conditions, flapping, maintenance, alerts that never clear)."""

from __future__ import annotations

from typing import Literal

from daemon.config.base import Section


class LifecycleConfig(Section):
    # When an upstream resolve closes its alert's ticket: "untouched" (unless an agent added a
    # note or changed it), "always", or "never" (the ticket is marked resolved upstream).
    auto_close: Literal["untouched", "always", "never"] = "untouched"
