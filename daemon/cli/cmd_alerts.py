"""`alertd alerts list|show`."""

from __future__ import annotations

import argparse

from daemon.cli.common import (
    CliError,
    Invocation,
    SubParsers,
    add_listing,
    add_show,
    database_command,
)
from daemon.cli.output import print_listing, print_record, short_time
from daemon.store.database import Database
from daemon.store.queries import Page, Queries


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    alerts = commands.add_parser("alerts", parents=[common], help="alerts")
    actions = alerts.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = add_listing(actions, common, "list", "alerts")
    listing.add_argument("--source")
    listing.add_argument("--uid")
    listing.add_argument("--state", choices=["open", "resolved"])
    add_show(actions, common, "alert")
    alerts.set_defaults(handler=database_command(run), secret_sections=())


async def run(inv: Invocation, db: Database) -> int:
    args = inv.args
    queries = Queries(db)
    if args.action == "list":
        listing = await queries.alerts(Page(args.limit, args.before_id), source=args.source,
                                       uid=args.uid, state=args.state)
        print_listing(listing, args.json,
                      ["ID", "SOURCE", "UID", "STATE", "SEEN", "CHANNELS", "LAST SEEN",
                       "TICKET"],
                      lambda a: [a["id"], a["source"], a["uid"], a["state"], a["occurrences"],
                                 ",".join(a["channels"]), short_time(a["last_seen_at"]),
                                 a["ticket_id"]])
        return 0
    alert = await queries.alert(args.id)
    if alert is None:
        raise CliError(f"alert {args.id} not found")
    print_record(alert, args.json)
    return 0
