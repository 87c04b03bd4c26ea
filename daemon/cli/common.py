"""What every command shares: the invocation, the error that prints one line, the database
for a command, and the parser pieces used by several command groups.

Exit codes: 0 success, 1 the action failed (not found, conflict, database error), 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from daemon.config import Config
from daemon.store.database import Database, open_database
from daemon.store.queries import MAX_PAGE

T = TypeVar("T")
SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


class CliError(Exception):
    """A failure to report as one line on stderr with exit code 1."""


@dataclass(frozen=True)
class RemoteChoice:
    """The alertd to ask instead of the local database: `--url` and `--token-file`, or
    `ALERTD_URL` and `ALERTD_TOKEN_FILE` (`from_env`)."""

    url: str
    token_file: str | None
    from_env: bool


@dataclass(frozen=True)
class Invocation:
    """One run of `alertd`: the parsed arguments and the loaded configuration."""

    args: argparse.Namespace
    config: Config
    config_path: Path | None
    environ: Mapping[str, str]
    remote: RemoteChoice | None = None


Handler = Callable[[Invocation], int]


def run_async(action: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(action)


async def with_db(config: Config, action: Callable[[Database], Awaitable[int]]) -> int:
    """Run `action` on the configured database (which must be migrated already)."""
    db = open_database(config.database)
    try:
        # Only `run` and `db upgrade` migrate: a newer CLI must not change the schema under
        # a running older daemon.
        await db.ensure_schema(auto_migrate=False)
        return await action(db)
    finally:
        await db.dispose()


def database_command(run: Callable[[Invocation, Database], Awaitable[int]]) -> Handler:
    """The handler of a command that works on the database: `run(invocation, db)`."""
    return lambda inv: run_async(with_db(inv.config, lambda db: run(inv, db)))


def remote_refusal(command: str) -> str:
    """What `--url` with a command that works on this machine is told."""
    return (f"alertd {command} works on this machine's database and files; --url reaches "
            f"{', '.join(REMOTE_COMMANDS)} only")


# The commands `--url` can run on another machine's alertd (through its HTTP API).
REMOTE_COMMANDS = ("tickets", "alerts", "deliveries", "outbox", "sync history", "rules test")


class UsageError(Exception):
    """A usage mistake to report as one line on stderr with exit code 2."""


def actor(args: argparse.Namespace) -> str:
    """Who acts: `--actor`, or the login name (recorded as `agent:<name>`)."""
    return str(args.actor or getpass.getuser())


def page_size(text: str) -> int:
    """`--limit`: 1 to `MAX_PAGE`, as the API's listings take it (the same pages here and
    through --url)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"from 1 to {MAX_PAGE}")
    return value


def add_listing(sub: SubParsers, common: argparse.ArgumentParser, name: str, what: str
                ) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=f"list {what}")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--limit", type=page_size, default=50, help="1 to 1000 (default 50)")
    parser.add_argument("--before-id", type=int, help="page: items older than this id")
    return parser


def add_show(sub: SubParsers, common: argparse.ArgumentParser, what: str) -> None:
    parser = sub.add_parser("show", parents=[common], help=f"show one {what}")
    parser.add_argument("id", type=int)
    parser.add_argument("--json", action="store_true", help="print JSON")
