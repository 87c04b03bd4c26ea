"""`alertd outbox list|retry|drop`: the resolve calls alertd owes the RMMs and the
notifications it owes the `[[notify]]` targets (FOR: the RMM or the target; WHAT: the alert
id or the event)."""

from __future__ import annotations

import argparse
import json

from daemon.cli.backend import Backend, backend_command
from daemon.cli.common import CliError, Invocation, SubParsers, add_listing
from daemon.cli.output import print_listing, short_time, show
from daemon.rmm.outbox import DROPPED, PENDING, OutboxRefused
from daemon.store.queries import Page


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    outbox = commands.add_parser("outbox", parents=[common],
                                 help="resolve calls owed to the RMMs, notifications owed")
    actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = add_listing(actions, common, "list", "outbox rows")
    listing.add_argument("--status", choices=["pending", "done", "dead", "dropped"])
    listing.add_argument("--source")
    for name, text in (("retry", "send a dead or pending row again, attempts reset"),
                       ("drop", "give up on a dead or pending row (never sent)")):
        change = actions.add_parser(name, parents=[common], help=text)
        change.add_argument("id", type=int)
        change.add_argument("--json", action="store_true", help="print JSON")
    outbox.set_defaults(remote_capable=True, handler=backend_command(run), secret_sections=())


async def run(inv: Invocation, backend: Backend) -> int:
    args = inv.args
    if args.action == "list":
        listing = await backend.listing("outbox", Page(args.limit, args.before_id), {
            "status": args.status, "source": args.source})
        print_listing(listing, args.json,
                      ["ID", "STATUS", "ACTION", "FOR", "WHAT", "ATTEMPTS", "NEXT",
                       "LAST ERROR"],
                      lambda r: [r["id"], r["status"], r["action"], r["source"], r["target"],
                                 r["attempts"], short_time(r["next_attempt_at"]),
                                 r["last_error"]])
        return 0
    status = PENDING if args.action == "retry" else DROPPED
    try:
        await backend.change_outbox(args.id, args.action)
    except (LookupError, OutboxRefused) as err:
        raise CliError(str(err).strip("'")) from None
    if args.json:
        print(json.dumps({"id": args.id, "status": status}, indent=2))
        return 0
    show(f"outbox {args.id}: {status}"
         + (" (a running alertd sends it at its next outbox run)" if status == PENDING else ""))
    return 0
