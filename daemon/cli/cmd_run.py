"""`alertd run` and `alertd check-config`."""

from __future__ import annotations

import argparse

from daemon.cli.cmd_rules import load_rules_or_report
from daemon.cli.common import Invocation, SubParsers, run_async
from daemon.cli.output import show
from daemon.rules.load import RulesError
from daemon.service.logs import setup_logging
from daemon.store.database import SchemaOutOfDate, redact_url


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    run = commands.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.add_argument("--log-format", choices=["text", "json"], help="override [logging] format")
    run.set_defaults(handler=run_daemon)
    check = commands.add_parser("check-config", parents=[common],
                                help="validate the configuration; print every error with its "
                                     "line")
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
    rules = load_rules_or_report(config.rules.path)
    if rules is None:
        return 2
    show(f"{inv.config_path or '<defaults>'}: OK (database {redact_url(config.database.url)}, "
         f"http {config.http.listen}, rules {config.rules.path}: {len(rules.rules)})")
    return 0
