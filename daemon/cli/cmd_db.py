"""`alertd db upgrade|current`: the database schema."""

from __future__ import annotations

import argparse
import json

from daemon.cli.common import SubParsers, run_async
from daemon.cli.output import show
from daemon.config import Config
from daemon.store.database import open_database, redact_url


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    db = commands.add_parser("db", parents=[common], help="database schema")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", parents=[common], help="apply pending migrations")
    current = actions.add_parser("current", parents=[common],
                                 help="show the schema revision (exit 1 if behind)")
    for parser in (upgrade, current):
        parser.add_argument("--json", action="store_true", help="print JSON")
    db.set_defaults(handler=lambda inv: run_async(run(inv.args, inv.config)),
                    secret_sections=())


async def run(args: argparse.Namespace, config: Config) -> int:
    db = open_database(config.database)
    shown_url = redact_url(config.database.url)
    try:
        if args.action == "upgrade":
            before, head = await db.upgrade()
            if args.json:
                print(json.dumps({"database": shown_url, "before": before, "now": head},
                                 indent=2))
            elif before == head:
                show(f"database {shown_url} is up to date ({head})")
            else:
                show(f"database {shown_url} upgraded {before or 'empty'} -> {head}")
            return 0
        current, head = await db.schema_revisions()
        if args.json:
            print(json.dumps({"database": shown_url, "current": current, "newest": head},
                             indent=2))
        else:
            show(f"current: {current or 'empty'}\nnewest:  {head}")
        return 0 if current == head else 1
    finally:
        await db.dispose()

