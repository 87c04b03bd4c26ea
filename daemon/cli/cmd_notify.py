"""`alertd notify list|test NAME`: the `[[notify]]` targets, and a test message to one."""

from __future__ import annotations

import argparse
import json
from typing import Any

from daemon.cli.common import CliError, SubParsers, run_async
from daemon.cli.output import show, table
from daemon.config import Config
from daemon.config.notify_sections import ChatTarget, EmailTarget, WebhookTarget
from daemon.notify.notifier import Notifiers
from daemon.notify.transports import NotifyError, shown_url


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    notify = commands.add_parser("notify", parents=[common],
                                 help="notification targets ([[notify]])")
    actions = notify.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="list the configured targets")
    listing.add_argument("--json", action="store_true", help="print JSON")
    test = actions.add_parser("test", parents=[common],
                              help="send a test message to a target; say what failed")
    test.add_argument("name")
    test.add_argument("--json", action="store_true", help="print JSON")
    notify.set_defaults(handler=lambda inv: run_async(run(inv.args, inv.config)),
                        secret_sections=("notify",))


def where(target: WebhookTarget | ChatTarget | EmailTarget) -> str:
    """Where a target sends, without a credential (a chat webhook's URL is one)."""
    if isinstance(target, WebhookTarget):
        return shown_url(target.url, with_path=True)
    if isinstance(target, ChatTarget):
        return f"{target.kind} incoming webhook"
    return f"{', '.join(target.to)} via {target.smtp_host}:{target.smtp_port}"


async def run(args: argparse.Namespace, config: Config) -> int:
    if args.action == "list":
        rows: list[dict[str, Any]] = [
            {"name": t.name, "kind": t.kind, "to": where(t), "events": list(t.events),
             "sources": list(t.sources), "customers": list(t.customers),
             "priorities": list(t.priorities),
             "storm_limit_per_minute": t.storm_limit_per_minute} for t in config.notify]
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            show("no [[notify]] targets configured")
        else:
            show(table([[r["name"], r["kind"], r["to"], ", ".join(r["events"]),
                         "; ".join(f"{key}: {', '.join(r[key])}"
                                   for key in ("sources", "customers", "priorities") if r[key])]
                        for r in rows], ["NAME", "KIND", "TO", "EVENTS", "FILTERS"]))
        return 0
    target = next((t for t in config.notify if t.name == args.name), None)
    if target is None:
        known = ", ".join(t.name for t in config.notify) or "none configured"
        raise CliError(f"no [[notify]] target named {args.name!r} (targets: {known})")
    notifiers = Notifiers([target], None, config.public_url)
    try:
        await notifiers.by_name[target.name].send_test()
    except NotifyError as err:
        if args.json:
            print(json.dumps({"target": target.name, "sent": False, "error": str(err),
                              "retryable": err.retryable}, indent=2))
        else:
            show(f"notify {target.name}: FAILED: {err}"
                 + ("" if err.retryable else " (retrying would not help: fix the target)"))
        return 1
    finally:
        await notifiers.close()
    if args.json:
        print(json.dumps({"target": target.name, "sent": True, "to": where(target)}, indent=2))
    else:
        show(f"notify {target.name}: test message sent to {where(target)}")
    return 0
