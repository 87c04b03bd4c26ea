"""`alertd sync [datto|syncro] [--customers] [--assets] [--preview] [--json]` and
`alertd sync history`: import customers, sites, end users and assets from the RMMs."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from daemon.cli.backend import Backend, backend_command
from daemon.cli.common import CliError, Invocation, SubParsers, database_command, page_size
from daemon.cli.output import print_listing, short_time, show
from daemon.rmm.clients import build_clients
from daemon.store.database import Database
from daemon.store.queries import Page
from daemon.sync.runner import SyncRefused, SyncRunner


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    sync = commands.add_parser(
        "sync", parents=[common],
        help="import customers, sites, end users and assets from the RMMs (or: sync history)",
        description="alertd sync [datto|syncro] [--customers] [--assets] [--preview] [--json]"
                    "; alertd sync history [--source S] [--json]")
    sync.add_argument("target", nargs="?", choices=["datto", "syncro", "history"],
                      help="one RMM (default: every one with API keys), or history")
    sync.add_argument("--customers", action="store_true",
                      help="Syncro customers and contacts / Datto sites (default: as configured)")
    sync.add_argument("--assets", action="store_true",
                      help="Syncro assets / Datto devices (default: as configured)")
    sync.add_argument("--preview", action="store_true",
                      help="print what would be created, updated, matched and deactivated; "
                           "write nothing")
    sync.add_argument("--json", action="store_true", help="print JSON")
    sync.add_argument("--source", choices=["datto", "syncro"], help="history: one RMM only")
    sync.add_argument("--limit", type=page_size, default=50,
                      help="history: how many runs (1 to 1000)")
    sync.add_argument("--before-id", type=int, help="history: runs older than this id")
    sync.set_defaults(remote_capable=lambda args: args.target == "history", handler=_handle,
                      secret_sections=("datto", "syncro"))


def _handle(inv: Invocation) -> int:
    # History is a listing (also through --url); a sync runs here, with the RMMs' API keys.
    return (_history if inv.args.target == "history" else _sync)(inv)


SOURCE_NAMES = {"datto": "Datto RMM", "syncro": "Syncro"}


def _clock_text(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class ProgressLine:
    """One line on a terminal's stderr, rewritten as a sync goes (`runner.Progress`):

        syncro assets: 1,250 / 4,800 records, 310/s, ETA 0:12
        syncro assets: 1,250 / 4,800 records, 310/s, ETA 0:12; waiting 42 s for Syncro's rate limit

    The rate counts from the first record of `what`; without a total (an RMM that does not
    tell it) the line shows the count and the rate."""

    def __init__(self, source: str, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._source = source
        self._stream = stream or sys.stderr
        self._clock = clock
        self._what = ""
        self._done = 0
        self._total: int | None = None
        self._started_s = 0.0
        self._waiting_until_s = 0.0
        self._shown = False

    def total(self, what: str, count: int) -> None:
        self._start(what)
        self._total = count
        self._show()

    def done(self, what: str, count: int) -> None:
        self._start(what)
        self._done = count
        self._show()

    def waiting(self, seconds: float) -> None:
        self._waiting_until_s = self._clock() + seconds
        self._show()

    def _start(self, what: str) -> None:
        if what != self._what:
            self._what, self._done, self._total = what, 0, None
            self._started_s = self._clock()

    def line(self) -> str:
        now = self._clock()
        text = f"{self._source} {self._what}: {self._done:,}"
        text += f" / {self._total:,} records" if self._total is not None else " records"
        elapsed_s = now - self._started_s
        rate = self._done / elapsed_s if self._done and elapsed_s > 0 else 0.0
        if rate:
            text += f", {rate:,.0f}/s"
            if self._total is not None and self._total > self._done:
                text += f", ETA {_clock_text((self._total - self._done) / rate)}"
        if now < self._waiting_until_s:
            text += (f"; waiting {self._waiting_until_s - now:.0f} s for "
                     f"{SOURCE_NAMES.get(self._source, self._source)}'s rate limit")
        return text

    def _show(self) -> None:
        # \r rewrites the line: it must not wrap, and is padded over the previous one's rest.
        width = shutil.get_terminal_size((80, 24)).columns - 1
        self._stream.write("\r" + self.line()[:width].ljust(width))
        self._stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the line (once; a second close writes nothing)."""
        if self._shown:
            self._stream.write("\n")
            self._shown = False


async def history(inv: Invocation, backend: Backend) -> int:
    args = inv.args
    listing = await backend.listing("sync_runs", Page(args.limit, args.before_id),
                                    {"source": args.source})
    print_listing(listing, args.json,
                  ["ID", "SOURCE", "ENTITIES", "TRIGGER", "STATUS", "STARTED", "CHANGES"],
                  lambda r: [r["id"], r["source"], ",".join(r["entities"]), r["trigger"],
                             r["status"], short_time(r["started_at"]),
                             sum(n for k, n in r["counts"].items()
                                 if "." in k and not k.endswith(".unchanged"))])
    return 0


async def run(inv: Invocation, db: Database) -> int:
    args, config = inv.args, inv.config
    clients = build_clients(config.datto, config.syncro)
    results: list[dict[str, Any]] = []
    ok = True
    try:
        runner = SyncRunner(db, clients, config.sync)
        sources = [args.target] if args.target else runner.enabled_sources()
        if not sources:
            raise CliError("nothing to sync: no RMM has API keys and an entity switched on "
                           "([sync.datto] / [sync.syncro] customers, assets); or name the RMM "
                           "and add --customers and/or --assets")
        chosen = args.customers or args.assets  # neither flag: what the config enables
        for source in sources:
            progress = ProgressLine(source) if sys.stderr.isatty() and not args.json \
                else None
            try:
                report = await runner.run(
                    source, customers=args.customers if chosen else None,
                    assets=args.assets if chosen else None, preview=args.preview,
                    keep_ops=args.json or args.preview, trigger="cli", progress=progress)
            except SyncRefused as err:  # say so, and go on with the next RMM
                if progress is not None:
                    progress.close()  # the message starts a line of its own
                show(f"alertd: sync {source}: {err}", err=True)
                ok = False
                continue
            finally:
                if progress is not None:
                    progress.close()
            ok = ok and report.status == "ok"
            if args.json:
                results.append(report.as_json())
            else:  # printed as each RMM finishes, so nothing done goes unreported
                for op in report.ops or ():
                    show(op.describe())
                for reason in report.skipped:
                    show(f"skip {reason}")
                show(report.summary(), flush=True)
    finally:
        await clients.close()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if ok else 1


_history = backend_command(history)
_sync = database_command(run)
