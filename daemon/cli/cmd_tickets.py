"""`alertd tickets list|show|close|note`: tickets, and agent actions on them."""

from __future__ import annotations

import argparse
import json

from daemon.cli.backend import Backend, backend_command
from daemon.cli.common import CliError, Invocation, SubParsers, actor, add_listing, add_show
from daemon.cli.output import print_listing, print_record, short_time, show
from daemon.core.lifecycle import TicketAlreadyClosed
from daemon.store.queries import Page
from daemon.tickets.transitions import TicketNotFound


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    tickets = commands.add_parser("tickets", parents=[common], help="tickets")
    actions = tickets.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = add_listing(actions, common, "list", "tickets")
    listing.add_argument("--status", choices=["open", "closed"])
    listing.add_argument("--alert-uid")
    listing.add_argument("--source")
    listing.add_argument("--no-customer", action="store_true",
                         help="only tickets placed at no customer (the next sync places them)")
    add_show(actions, common, "ticket")
    close = actions.add_parser("close", parents=[common],
                               help="close as an agent (resolves the alert upstream)")
    close.add_argument("id", type=int)
    close.add_argument("--note", help="closing note")
    close.add_argument("--actor", help="who closes it (default: your login name)")
    close.add_argument("--json", action="store_true", help="print JSON")
    note = actions.add_parser("note", parents=[common], help="add a note")
    note.add_argument("id", type=int)
    note.add_argument("text")
    note.add_argument("--actor", help="author (default: your login name)")
    note.add_argument("--json", action="store_true", help="print JSON")
    tickets.set_defaults(remote_capable=True, handler=backend_command(run), secret_sections=())


async def run(inv: Invocation, backend: Backend) -> int:
    args = inv.args
    if args.action == "list":
        listing = await backend.listing("tickets", Page(args.limit, args.before_id), {
            "status": args.status, "alert_uid": args.alert_uid, "source": args.source,
            "no_customer": "true" if args.no_customer else None})
        print_listing(listing, args.json, ["ID", "STATUS", "SOURCE", "ALERT", "OPENED",
                                           "SUMMARY"],
                      lambda t: [t["id"], t["status"], (t["alert"] or {}).get("source"),
                                 (t["alert"] or {}).get("uid"), short_time(t["opened_at"]),
                                 t["summary"]])
        return 0
    try:
        if args.action == "close":
            closing = await backend.close_ticket(args.id, actor(args), args.note)
            if args.json:
                print(json.dumps({"ticket_id": args.id, **closing}, indent=2))
                return 0
            resolved = ", ".join(map(str, closing["alerts_resolved"]))
            queued = ", ".join(map(str, closing["outbox_ids"]))
            show(f"ticket {args.id} closed"
                 + (f"; alert {resolved} resolved" if len(closing["alerts_resolved"]) == 1
                    else f"; alerts {resolved} resolved" if resolved else "")
                 + (f"; upstream resolve queued (outbox {queued})"
                    if len(closing["outbox_ids"]) == 1
                    else f"; upstream resolves queued (outbox {queued})" if queued else ""))
        elif args.action == "note":
            note_id = await backend.add_note(args.id, actor(args), args.text)
            if args.json:
                print(json.dumps({"ticket_id": args.id, "note_id": note_id}, indent=2))
            else:
                show(f"note {note_id} added to ticket {args.id}")
        else:
            ticket = await backend.record("ticket", args.id)
            if ticket is None:
                raise TicketNotFound(f"ticket {args.id} not found")
            print_record(ticket, args.json)
    except TicketNotFound as err:
        raise CliError(str(err)) from None
    except TicketAlreadyClosed:
        raise CliError(f"ticket {args.id} is already closed") from None
    return 0
