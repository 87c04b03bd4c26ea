"""`alertd run` and `alertd check-config`."""

from __future__ import annotations

import argparse
import json

from daemon.cli.common import Invocation, SubParsers, run_async
from daemon.cli.output import report_errors, show
from daemon.rules.load import RulesError, load_rules
from daemon.service.logs import setup_logging
from daemon.store.database import SchemaOutOfDate, redact_url


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    run = commands.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.add_argument("--log-format", choices=["text", "json"], help="override [logging] format")
    run.set_defaults(handler=run_daemon)
    check = commands.add_parser("check-config", parents=[common],
                                help="validate the configuration; print every error with its "
                                     "line")
    check.add_argument("--syntax-only", action="store_true",
                       help="read no secret file or variable: check the file's syntax, keys "
                            "and values (and the rules file) on a machine without the secrets")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=check_config)


def run_daemon(inv: Invocation) -> int:
    from daemon.service.run import serve  # the HTTP stack is loaded only by `run`

    config = inv.config
    setup_logging(inv.args.log_format or config.logging.format, config.logging.level)
    try:
        return run_async(serve(config, inv.config_path, inv.environ))
    except SchemaOutOfDate as err:
        show(f"alertd: {err}", err=True)
        return 2
    except RulesError as err:
        show(f"alertd: invalid rules, not starting:\n{err}", err=True)
        return 2
    except (OSError, ValueError) as err:  # e.g. the port is taken
        show(f"alertd: {err}", err=True)
        return 1


def check_config(inv: Invocation) -> int:
    config = inv.config
    try:
        rules = load_rules(config.rules.path)
    except RulesError as err:
        report_errors(err.issues, "rules", inv.args.json)
        return 2
    summary = {"ok": True, "config": str(inv.config_path) if inv.config_path else None,
               "database": redact_url(config.database.url), "http": str(config.http.listen),
               "rules": str(config.rules.path), "rule_count": len(rules.rules),
               "secrets_read": not inv.args.syntax_only}
    if inv.args.json:
        print(json.dumps(summary, indent=2))
        return 0
    show(f"{inv.config_path or '<defaults>'}: OK (database {summary['database']}, "
         f"http {config.http.listen}, rules {config.rules.path}: {len(rules.rules)}"
         + ("; syntax only: no secret was read" if inv.args.syntax_only else "") + ")")
    return 0
