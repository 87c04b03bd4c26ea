"""`alertd sync`'s progress line (issue 18, item 6): done / total, rate, ETA, and the waits for
the RMM's rate limit, on a simulated clock."""

from __future__ import annotations

import io

from daemon.cli.cmd_sync import ProgressLine


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_the_line_shows_done_total_rate_and_eta() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine("syncro", out, clock)
    line.total("assets", 4800)
    assert line.line() == "syncro assets: 0 / 4,800 records"
    clock.now_s += 4
    line.done("assets", 1250)
    assert line.line() == "syncro assets: 1,250 / 4,800 records, 312/s, ETA 0:11"
    line.waiting(42)
    clock.now_s += 2
    assert line.line() == ("syncro assets: 1,250 / 4,800 records, 208/s, ETA 0:17; "
                           "waiting 40 s for Syncro's rate limit")
    clock.now_s += 41  # the wait is over
    line.done("assets", 4800)
    assert line.line() == "syncro assets: 4,800 / 4,800 records, 102/s"
    line.close()
    assert out.getvalue().startswith("\rsyncro assets: 0 / 4,800 records")
    assert out.getvalue().endswith("\n") and out.getvalue().count("\r") == 4


def test_a_new_entity_starts_over_and_an_unknown_total_shows_the_count() -> None:
    clock = Clock()
    line = ProgressLine("datto", io.StringIO(), clock)
    line.total("customers", 10)
    clock.now_s += 1
    line.done("customers", 10)
    clock.now_s += 1
    line.done("assets", 250)  # no total told for assets
    clock.now_s += 1
    assert line.line() == "datto assets: 250 records, 250/s"
    clock.now_s += 3600
    line.total("assets", 1_000_000)
    line.done("assets", 250_000)
    # The assets' rate counts from their first batch (at 102 s), not from the customers'.
    assert line.line() == "datto assets: 250,000 / 1,000,000 records, 69/s, ETA 3:00:03"
