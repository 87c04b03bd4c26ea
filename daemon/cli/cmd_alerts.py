"""`alertd alerts list|show|trail`."""

from __future__ import annotations

import argparse
import json

from daemon.cli.backend import Backend, backend_command
from daemon.cli.common import CliError, Invocation, SubParsers, add_listing, add_show
from daemon.cli.output import print_listing, print_record, short_time, show, table
from daemon.store.queries import Page


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    alerts = commands.add_parser("alerts", parents=[common], help="alerts")
    actions = alerts.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = add_listing(actions, common, "list", "alerts")
    listing.add_argument("--source")
    listing.add_argument("--uid")
    listing.add_argument("--state", choices=["open", "resolved"])
    add_show(actions, common, "alert")
    trail = actions.add_parser("trail", parents=[common],
                               help="every decision alertd took about an alert, and why")
    trail.add_argument("uid", metavar="UPSTREAM_UID", help="the alert's id in its RMM")
    trail.add_argument("--source", help="the alert's source (when several share the id)")
    trail.add_argument("--json", action="store_true", help="print JSON")
    alerts.set_defaults(remote_capable=True, handler=backend_command(run), secret_sections=())


async def run(inv: Invocation, backend: Backend) -> int:
    args = inv.args
    if args.action == "list":
        listing = await backend.listing("alerts", Page(args.limit, args.before_id), {
            "source": args.source, "uid": args.uid, "state": args.state})
        print_listing(listing, args.json,
                      ["ID", "SOURCE", "UID", "STATE", "SEEN", "CHANNELS", "LAST SEEN",
                       "TICKET"],
                      lambda a: [a["id"], a["source"], a["uid"], a["state"], a["occurrences"],
                                 ",".join(a["channels"]), short_time(a["last_seen_at"]),
                                 a["ticket_id"]])
        return 0
    if args.action == "trail":
        return await _trail(backend, args.uid, args.source, args.json)
    alert = await backend.record("alert", args.id)
    if alert is None:
        raise CliError(f"alert {args.id} not found")
    print_record(alert, args.json)
    return 0


async def _trail(backend: Backend, uid: str, source: str | None, as_json: bool) -> int:
    """The trail of each alert with this upstream id (of `source`, if given)."""
    found = await backend.listing("alerts", Page(20, None), {"source": source, "uid": uid})
    if not found["items"]:
        raise CliError(f"no alert {uid!r}" + (f" from {source}" if source else ""))
    trails = [await backend.record("alert_trail", alert["id"]) for alert in found["items"]]
    if as_json:
        print(json.dumps(trails, indent=2))
        return 0
    for trail in trails:
        assert trail is not None
        alert = trail["alert"]
        show(f"alert {alert['id']} {alert['source']}/{alert['uid']} ({alert['state']})"
             + (" - older decisions left out" if trail["truncated"] else ""))
        show(table([[short_time(t["at"]), t["decision"], t["channel"] or t["actor"] or "",
                     t["reason"] or ""] for t in trail["items"]],
                   ["AT", "DECISION", "BY", "REASON"]))
    return 0
