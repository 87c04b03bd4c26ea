"""`alertd sync [datto|syncro] [--customers] [--assets] [--preview] [--json]` and
`alertd sync history`: import customers, sites, end users and assets from the RMMs."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from daemon.cli.backend import Backend, backend_command
from daemon.cli.common import CliError, Invocation, SubParsers, database_command, refuse_remote
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
    sync.add_argument("--limit", type=int, default=50, help="history: how many runs")
    sync.add_argument("--before-id", type=int, help="history: runs older than this id")
    sync.set_defaults(remote_capable=True, handler=_handle, secret_sections=("datto", "syncro"))


def _handle(inv: Invocation) -> int:
    # History is a listing (also through --url); a sync runs here, with the RMMs' API keys.
    if inv.args.target == "history":
        return _history(inv)
    refuse_remote(inv, "sync")
    return _sync(replace(inv, remote=None))


class _ProgressLine:
    """A one-line progress display on a terminal's stderr ("syncro assets: 1,250")."""

    def __init__(self, source: str):
        self._source = source
        self._shown = False

    def __call__(self, what: str, done: int) -> None:
        sys.stderr.write(f"\r{self._source} {what}: {done:,} records")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\n")


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
            progress = _ProgressLine(source) if sys.stderr.isatty() and not args.json \
                else None
            try:
                report = await runner.run(
                    source, customers=args.customers if chosen else None,
                    assets=args.assets if chosen else None, preview=args.preview,
                    keep_ops=args.json or args.preview, trigger="cli", progress=progress)
            except SyncRefused as err:  # say so, and go on with the next RMM
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
