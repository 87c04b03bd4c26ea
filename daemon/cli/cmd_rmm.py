"""`alertd rmm test datto|syncro`: is the RMM's API usable, and if not, why."""

from __future__ import annotations

import argparse
import json

from daemon.cli.common import SubParsers, run_async
from daemon.cli.output import show
from daemon.config import Config
from daemon.rmm.check import check_source
from daemon.rmm.clients import build_clients


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    rmm = commands.add_parser("rmm", parents=[common], help="RMM API connections")
    actions = rmm.add_subparsers(dest="action", required=True, metavar="ACTION")
    test = actions.add_parser("test", parents=[common],
                              help="test the API: host, platform, credentials, permissions")
    test.add_argument("name", choices=["datto", "syncro"])
    test.add_argument("--json", action="store_true", help="print JSON")
    rmm.set_defaults(handler=lambda inv: run_async(run(inv.args, inv.config)),
                     secret_sections=("datto", "syncro"))


async def run(args: argparse.Namespace, config: Config) -> int:
    clients = build_clients(config.datto, config.syncro)
    try:
        result = await check_source(args.name, clients)
    finally:
        await clients.close()
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        show(f"{result.source}: {result.status}: {result.message}")
        for probe in result.probes:
            show(f"  {'ok     ' if probe.ok else 'MISSING'} {probe.what}"
                 + (f": {probe.detail}" if probe.detail else ""))
    return 0 if result.ok else 1
