"""`alertd deliveries list|show|replay`: every raw input, and replaying one through the same
pipeline the daemon runs."""

from __future__ import annotations

import argparse
import json

from daemon.cli.backend import Backend, backend_command
from daemon.cli.common import CliError, Invocation, SubParsers, add_listing, add_show
from daemon.cli.output import print_listing, print_record, short_time, show
from daemon.intake.deliveries import ReplayRefused
from daemon.store.queries import Page


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    deliveries = commands.add_parser("deliveries", parents=[common],
                                     help="deliveries (every raw input)")
    actions = deliveries.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = add_listing(actions, common, "list", "deliveries")
    listing.add_argument("--status",
                         choices=["received", "processed", "ignored", "rejected", "failed"])
    listing.add_argument("--channel", choices=["smtp", "imap", "webhook", "poll", "api"])
    listing.add_argument("--source")
    add_show(actions, common, "delivery")
    replay = actions.add_parser("replay", parents=[common],
                                help="process a failed, ignored or rejected delivery again")
    replay.add_argument("id", type=int)
    replay.add_argument("--json", action="store_true", help="print JSON")
    deliveries.set_defaults(remote_capable=True, handler=backend_command(run), secret_sections=())


async def run(inv: Invocation, backend: Backend) -> int:
    args = inv.args
    if args.action == "list":
        listing = await backend.listing("deliveries", Page(args.limit, args.before_id), {
            "status": args.status, "channel": args.channel, "source": args.source})
        print_listing(listing, args.json,
                      ["ID", "CHANNEL", "SOURCE", "STATUS", "TRIES", "RECEIVED",
                       "OUTCOME / ERROR"],
                      lambda d: [d["id"], d["channel"], d["source"], d["status"],
                                 d["attempts"], short_time(d["received_at"]),
                                 d["outcome"] or d["error"]])
        return 0
    if args.action == "show":
        delivery = await backend.record("delivery", args.id)
        if delivery is None:
            raise CliError(f"delivery {args.id} not found")
        print_record(delivery, args.json)
        return 0
    try:
        result = await backend.replay(args.id)
    except (LookupError, ReplayRefused) as err:
        raise CliError(str(err).strip("'")) from None
    if result["status"] is None:
        raise CliError(f"delivery {args.id} is being processed by another alertd process")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        outcomes = ", ".join(f"alert {e['alert_id']} {e['outcome']}" for e in result["events"])
        show(f"delivery {args.id}: {result['status']}" + (f" ({outcomes})" if outcomes else "")
             + (f": {result['error']}" if result["error"] else ""))
    return 0 if result["status"] in ("processed", "ignored") else 1
