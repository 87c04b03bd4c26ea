"""`alertd deliveries list|show|replay`: every raw input, and replaying one through the same
pipeline the daemon runs."""

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
from daemon.cli.output import print_listing, print_record, short_time, show
from daemon.intake.deliveries import ReplayRefused
from daemon.metrics import Metrics
from daemon.rules.email_interpreter import RulesHolder
from daemon.rules.load import load_rules
from daemon.service.wiring import build_pipeline
from daemon.store.database import Database
from daemon.store.queries import Page, Queries


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
    deliveries.set_defaults(handler=database_command(run), secret_sections=())


async def run(inv: Invocation, db: Database) -> int:
    args, config = inv.args, inv.config
    queries = Queries(db)
    if args.action == "list":
        listing = await queries.deliveries(Page(args.limit, args.before_id), status=args.status,
                                           channel=args.channel, source=args.source)
        print_listing(listing, args.json,
                      ["ID", "CHANNEL", "SOURCE", "STATUS", "TRIES", "RECEIVED",
                       "OUTCOME / ERROR"],
                      lambda d: [d["id"], d["channel"], d["source"], d["status"],
                                 d["attempts"], short_time(d["received_at"]),
                                 d["outcome"] or d["error"]])
        return 0
    if args.action == "show":
        delivery = await queries.delivery(args.id)
        if delivery is None:
            raise CliError(f"delivery {args.id} not found")
        print_record(delivery, args.json)
        return 0
    pipeline = build_pipeline(config, db, Metrics(), RulesHolder(load_rules(config.rules.path)))
    try:
        result = await pipeline.replay(args.id)
    except (LookupError, ReplayRefused) as err:
        raise CliError(str(err).strip("'")) from None
    if result is None:
        raise CliError(f"delivery {args.id} is being processed by another alertd process")
    outcomes = ", ".join(f"alert {e.alert_id} {e.outcome}" for e in result.events)
    show(f"delivery {args.id}: {result.status.value}"
         + (f" ({outcomes})" if outcomes else "") + (f": {result.error}" if result.error else ""))
    return 0 if result.status.value in ("processed", "ignored") else 1
