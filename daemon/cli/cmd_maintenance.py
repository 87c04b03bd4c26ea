"""`alertd maintenance add|list|end`: maintenance windows (issue 16, rule 4)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta

from daemon.cli.common import CliError, Invocation, SubParsers, actor, database_command
from daemon.cli.output import print_listing, short_time, show, table
from daemon.core.clock import utcnow
from daemon.core.durations import parse_duration
from daemon.core.maintenance import Scope
from daemon.store.database import Database
from daemon.store.queries import Page
from daemon.tickets.maintenance import MaintenanceSchedule
from daemon.tickets.windows import (
    WINDOW_STATES,
    MaintenanceWindows,
    WindowNotFound,
    WindowRefused,
)


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    maintenance = commands.add_parser(
        "maintenance", parents=[common],
        help="maintenance windows: raises in their scope open no ticket until they end")
    actions = maintenance.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="set a window")
    add.add_argument("scope", choices=[scope.value for scope in Scope])
    add.add_argument("value", nargs="?", default="",
                     help="the customer, site or device: its name or id (none for 'all')")
    add.add_argument("--start", default="now", metavar="TIME",
                     help='ISO 8601, e.g. "2026-12-12T22:00+01:00"; without an offset, this '
                          'machine\'s local time (default: now)')
    end = add.add_mutually_exclusive_group(required=True)
    end.add_argument("--end", metavar="TIME", help="when it ends (ISO 8601, as --start)")
    end.add_argument("--for", dest="duration", metavar="DURATION",
                     help='how long from --start: "90m", "4h", "2d"')
    add.add_argument("--reason", default="", help="shown in notes and the trail")
    add.add_argument("--actor", help="who sets it (default: your login name)")
    add.add_argument("--json", action="store_true", help="print JSON")
    listing = actions.add_parser("list", parents=[common],
                                 help="the windows, newest first, and the weekly ones")
    listing.add_argument("--state", choices=WINDOW_STATES)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--before-id", type=int)
    listing.add_argument("--json", action="store_true", help="print JSON")
    finish = actions.add_parser("end", parents=[common],
                                help="end a window now (one not started yet is cancelled)")
    finish.add_argument("id", type=int)
    finish.add_argument("--actor", help="who ends it (default: your login name)")
    finish.add_argument("--json", action="store_true", help="print JSON")
    maintenance.set_defaults(handler=database_command(run), secret_sections=())


def parse_time(text: str, option: str) -> datetime:
    """`now`, or ISO 8601; without an offset, this machine's local time."""
    if text.strip().lower() == "now":
        return utcnow()
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f'{option} {text!r}: expected ISO 8601, e.g. "2026-12-12T22:00+01:00", '
                       'or "now"') from None
    return parsed.astimezone() if parsed.tzinfo is None else parsed


def describe(window: dict[str, object]) -> str:
    what = "every alert" if window["scope"] == "all" else f"{window['scope']} {window['value']!r}"
    return (f"maintenance window {window['id']} ({window['state']}): {what} from "
            f"{window['starts_at']} to {window['ends_at']}; {window['suppressed']} alert(s) "
            "suppressed")


async def run(inv: Invocation, db: Database) -> int:
    args = inv.args
    # The running daemon rereads the windows within seconds (daemon.tickets.maintenance).
    windows = MaintenanceWindows(db, MaintenanceSchedule(), inv.config.lifecycle.maintenance)
    if args.action == "add":
        starts_at = parse_time(args.start, "--start")
        if args.end is not None:
            ends_at = parse_time(args.end, "--end")
        else:
            try:
                seconds = parse_duration(args.duration)
            except ValueError as err:
                raise CliError(f"--for: {err}") from None
            try:
                ends_at = starts_at + timedelta(seconds=seconds)
            except OverflowError:
                raise CliError("--for: the window would end after the year 9999") from None
        try:
            window = await windows.add(Scope(args.scope), args.value, starts_at, ends_at,
                                       args.reason, f"agent:{actor(args)}")
        except WindowRefused as err:
            raise CliError(str(err)) from None
        _print(window, args.json)
        return 0
    if args.action == "end":
        try:
            window = await windows.end(args.id, f"agent:{actor(args)}")
        except WindowNotFound as err:
            raise CliError(str(err)) from None
        _print(window, args.json)
        return 0
    listing = await windows.listing(Page(args.limit, args.before_id), args.state)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    print_listing({"items": listing["items"], "next_before_id": listing["next_before_id"]},
                  False, ["ID", "STATE", "SCOPE", "VALUE", "STARTS", "ENDS", "SUPPRESSED",
                          "REASON"],
                  lambda w: [w["id"], w["state"], w["scope"], w["value"],
                             short_time(w["starts_at"]), short_time(w["ends_at"]),
                             w["suppressed"], w["reason"]])
    if listing["weekly"]:
        show("weekly windows ([[lifecycle.maintenance]]):")
        show(table([[w["name"], "active" if w["active"] else "", w["scope"], w["value"],
                     ",".join(w["days"]), w["start"],
                     w["duration"],
                     w["time_zone"], w["suppressed"]] for w in listing["weekly"]],
                   ["NAME", "STATE", "SCOPE", "VALUE", "DAYS", "START", "FOR", "TIME ZONE",
                    "SUPPRESSED"]))
    return 0


def _print(window: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(window, indent=2))
    else:
        show(describe(window))

