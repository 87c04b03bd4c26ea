"""`alertd`: parse the arguments, load the configuration, run the command's handler."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from daemon import __version__
from daemon.cli import (
    cmd_alerts,
    cmd_db,
    cmd_deliveries,
    cmd_maintenance,
    cmd_notify,
    cmd_outbox,
    cmd_rmm,
    cmd_rules,
    cmd_run,
    cmd_shell,
    cmd_sync,
    cmd_tickets,
    cmd_webhooks,
)
from daemon.cli.cmd_run import report_errors
from daemon.cli.common import (
    REMOTE_COMMANDS,
    CliError,
    Handler,
    Invocation,
    RemoteChoice,
    UsageError,
    remote_refusal,
)
from daemon.cli.output import show
from daemon.config import ConfigError, load_config
from daemon.rules.load import RulesError
from daemon.service.logs import setup_logging
from daemon.store.database import SchemaOutOfDate, redact_url
from daemon.store.queries import BadFilter

# In the order `alertd --help` lists them.
COMMAND_GROUPS = (cmd_run, cmd_db, cmd_tickets, cmd_alerts, cmd_maintenance, cmd_deliveries,
                  cmd_rules, cmd_webhooks, cmd_outbox, cmd_notify, cmd_sync, cmd_rmm, cmd_shell)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help="configuration file (default: $ALERTD_CONFIG, else none: "
                             "built-in defaults)")
    common.add_argument("--url", default=argparse.SUPPRESS, metavar="URL",
                        help="ask the alertd at URL through its HTTP API instead of this "
                             f"machine's database ({', '.join(REMOTE_COMMANDS)}; default: "
                             "$ALERTD_URL)")
    common.add_argument("--token-file", default=argparse.SUPPRESS, metavar="FILE",
                        help="with --url: a file holding an API token of that alertd "
                             "(default: $ALERTD_TOKEN_FILE)")
    parser = argparse.ArgumentParser(prog="alertd", parents=[common],
                                     description="RMM alerts into tickets, kept in step.")
    parser.add_argument("--version", action="version", version=f"alertd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands, common)
    # `completion` and `man` are generated from the whole parser.
    parser.set_defaults(root_parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything alertd creates (the database and its WAL, the API token, exports) is its
    # own: 0600 files, 0700 directories, whatever umask the shell or unit would give.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    environ = dict(os.environ)
    config_path: Path | None = getattr(args, "config", None)
    if config_path is None and environ.get("ALERTD_CONFIG"):
        config_path = Path(environ["ALERTD_CONFIG"])
    url = getattr(args, "url", None)
    remote = None
    if url or environ.get("ALERTD_URL"):
        remote = RemoteChoice(url or environ["ALERTD_URL"], getattr(args, "token_file", None)
                              or environ.get("ALERTD_TOKEN_FILE") or None, from_env=not url)
    # `remote_capable`: whether this command (and action) can run through --url. ALERTD_URL
    # in the environment reaches only those; the others run here as if it were not set.
    capable = getattr(args, "remote_capable", False)
    if remote is not None and not (capable(args) if callable(capable) else capable):
        if not remote.from_env:
            show(f"alertd: {remote_refusal(args.command)}", err=True)
            return 2
        remote = None
    try:
        # Each command reads only the secrets it uses (`secret_sections`; all by default);
        # through --url, none: the daemon asked holds them.
        reads_no_secret = remote is not None or getattr(args, "syntax_only", False)
        config = load_config(config_path, environ,
                             () if reads_no_secret else getattr(args, "secret_sections", None))
    except ConfigError as err:
        report_errors(err.issues, "configuration", getattr(args, "json", False))
        return 2
    invocation = Invocation(args, config, config_path, environ, remote)
    handler: Handler = args.handler
    if args.command == "run":  # sets up its own logging and reports its own failures
        return handler(invocation)
    setup_logging("text", "WARNING")
    try:
        return handler(invocation)
    except UsageError as err:
        show(f"alertd: {err}", err=True)
        return 2
    except (CliError, SchemaOutOfDate, BadFilter, RulesError, ValueError) as err:
        show(f"alertd: {err}", err=True)
        return 1
    except (SQLAlchemyError, OSError) as err:  # the database is down or unreachable
        show(f"alertd: database {redact_url(config.database.url)}: "
             f"{type(err).__name__}: {str(err).splitlines()[0]}", err=True)
        return 1
