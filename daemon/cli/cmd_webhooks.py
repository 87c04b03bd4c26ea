"""`alertd webhook-config datto|syncro`: the URL and payloads to paste into the RMM."""

from __future__ import annotations

import argparse
import json

from daemon.cli.common import Invocation, SubParsers
from daemon.cli.output import show
from daemon.webhooks.setup import WebhookNotConfigured, datto_setup, format_setup, syncro_setup


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    hooks = commands.add_parser("webhook-config", parents=[common],
                                help="print the webhook URL and payloads to paste into the RMM")
    hooks.add_argument("vendor", choices=["datto", "syncro"])
    hooks.add_argument("--json", action="store_true", help="print JSON")
    hooks.set_defaults(handler=run, secret_sections=("datto", "syncro"))


def run(inv: Invocation) -> int:
    builders = {"datto": datto_setup, "syncro": syncro_setup}
    try:
        setup = builders[inv.args.vendor](inv.config)
    except WebhookNotConfigured as err:
        show(f"alertd: {err}", err=True)
        return 2
    if inv.args.json:
        print(json.dumps(setup.as_json(), indent=2))
    else:
        show(format_setup(setup))
    return 0
