"""The `alertd` command: argument parsing and the CLI's composition root.

Exit codes: 0 success, 1 the action failed (not found, conflict, database error), 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from daemon import __version__
from daemon.config import Config, ConfigError, load_config
from daemon.core.lifecycle import TicketAlreadyClosed
from daemon.interpreters import build_pipeline
from daemon.logs import setup_logging
from daemon.metrics import Metrics
from daemon.outbox import DEAD, DROPPED, PENDING, OutboxRefused, change_outbox_row
from daemon.pipeline import ReplayRefused, utcnow
from daemon.rmm.check import check_source
from daemon.rmm.clients import build_clients
from daemon.rules.explain import explain_message, format_explanation
from daemon.rules.load import RulesError, load_rules
from daemon.rules.model import RuleSet
from daemon.store.database import Database, SchemaOutOfDate, open_database, redact_url
from daemon.store.queries import BadFilter, Page, Queries
from daemon.sync.runner import SyncRefused, SyncRunner
from daemon.tickets import TicketNotFound, TicketService
from daemon.webhooks.setup import NotConfigured, datto_setup, format_setup, syncro_setup


class CliError(Exception):
    """A failure to report as one line on stderr with exit code 1."""


# --- output -----------------------------------------------------------------------------


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [[("" if c is None else str(c)).replace("\n", " ") for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    widths[-1] = len(headers[-1])  # the last column is free text: do not pad it
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _short_time(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else ""


def _print_listing(listing: dict[str, Any], as_json: bool, headers: list[str],
                   row: Callable[[dict[str, Any]], list[Any]]) -> None:
    if as_json:
        print(json.dumps(listing, indent=2))
        return
    print(_table([row(item) for item in listing["items"]], headers))
    if listing["next_before_id"]:
        print(f"(more: --before-id {listing['next_before_id']})")


def _print_record(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(record, indent=2))
        return
    for key, value in record.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{key}:")
            for item in value:
                print("  - " + json.dumps(item))
        elif isinstance(value, dict | list):
            print(f"{key}: {json.dumps(value)}")
        else:
            print(f"{key}: {'' if value is None else value}")


# --- commands ---------------------------------------------------------------------------


async def _with_db(config: Config, action: Callable[[Database], Awaitable[int]]) -> int:
    db = open_database(config)
    try:
        # Only `run` and `db upgrade` migrate: a newer CLI must not change the schema under
        # a running older daemon.
        await db.ensure_schema(auto_migrate=False)
        return await action(db)
    finally:
        await db.dispose()


def _actor(args: argparse.Namespace) -> str:
    return f"agent:{args.actor or getpass.getuser()}"


async def cmd_tickets(args: argparse.Namespace, db: Database) -> int:
    queries = Queries(db)
    if args.action == "list":
        listing = await queries.tickets(Page(args.limit, args.before_id), status=args.status,
                                        alert_uid=args.alert_uid, source=args.source)
        _print_listing(listing, args.json, ["ID", "STATUS", "SOURCE", "ALERT", "OPENED",
                                            "SUMMARY"],
                       lambda t: [t["id"], t["status"], (t["alert"] or {}).get("source"),
                                  (t["alert"] or {}).get("uid"), _short_time(t["opened_at"]),
                                  t["summary"]])
        return 0
    tickets = TicketService(db, Metrics())
    try:
        if args.action == "close":
            result = await tickets.close(args.id, _actor(args), args.note)
            print(f"ticket {args.id} closed"
                  + (f"; alert {result.alert_id} resolved" if result.alert_resolved else "")
                  + (f"; upstream resolve queued (outbox {result.outbox_id})"
                     if result.outbox_id else ""))
        elif args.action == "note":
            note_id = await tickets.add_note(args.id, _actor(args), args.text)
            print(f"note {note_id} added to ticket {args.id}")
        else:
            ticket = await queries.ticket(args.id)
            if ticket is None:
                raise TicketNotFound(f"ticket {args.id} not found")
            _print_record(ticket, args.json)
    except TicketNotFound as err:
        raise CliError(str(err)) from None
    except TicketAlreadyClosed:
        raise CliError(f"ticket {args.id} is already closed") from None
    return 0


async def cmd_alerts(args: argparse.Namespace, db: Database) -> int:
    queries = Queries(db)
    if args.action == "list":
        listing = await queries.alerts(Page(args.limit, args.before_id), source=args.source,
                                       uid=args.uid, state=args.state)
        _print_listing(listing, args.json,
                       ["ID", "SOURCE", "UID", "STATE", "SEEN", "CHANNELS", "LAST SEEN",
                        "TICKET"],
                       lambda a: [a["id"], a["source"], a["uid"], a["state"], a["occurrences"],
                                  ",".join(a["channels"]), _short_time(a["last_seen_at"]),
                                  a["ticket_id"]])
        return 0
    alert = await queries.alert(args.id)
    if alert is None:
        raise CliError(f"alert {args.id} not found")
    _print_record(alert, args.json)
    return 0


async def cmd_deliveries(args: argparse.Namespace, db: Database, config: Config) -> int:
    queries = Queries(db)
    if args.action == "list":
        listing = await queries.deliveries(Page(args.limit, args.before_id), status=args.status,
                                           channel=args.channel, source=args.source)
        _print_listing(listing, args.json,
                       ["ID", "CHANNEL", "SOURCE", "STATUS", "TRIES", "RECEIVED",
                        "OUTCOME / ERROR"],
                       lambda d: [d["id"], d["channel"], d["source"], d["status"],
                                  d["attempts"], _short_time(d["received_at"]),
                                  d["outcome"] or d["error"]])
        return 0
    if args.action == "show":
        delivery = await queries.delivery(args.id)
        if delivery is None:
            raise CliError(f"delivery {args.id} not found")
        _print_record(delivery, args.json)
        return 0
    pipeline = build_pipeline(config, db, Metrics())
    try:
        result = await pipeline.replay(args.id)
    except LookupError as err:
        raise CliError(str(err)) from None
    except ReplayRefused as err:
        raise CliError(str(err)) from None
    if result is None:
        raise CliError(f"delivery {args.id} is being processed by another alertd process")
    outcomes = ", ".join(f"alert {e.alert_id} {e.outcome}" for e in result.events)
    print(f"delivery {args.id}: {result.status.value}"
          + (f" ({outcomes})" if outcomes else "") + (f": {result.error}" if result.error else ""))
    return 0 if result.status.value in ("processed", "ignored") else 1


async def cmd_db(args: argparse.Namespace, config: Config) -> int:
    db = open_database(config)
    try:
        if args.action == "upgrade":
            before, head = await db.upgrade()
            if before == head:
                print(f"database {redact_url(config.database.url)} is up to date ({head})")
            else:
                print(f"database {redact_url(config.database.url)} upgraded "
                      f"{before or 'empty'} -> {head}")
        else:
            current, head = await db.schema_revisions()
            print(f"current: {current or 'empty'}\nnewest:  {head}")
            return 0 if current == head else 1
    finally:
        await db.dispose()
    return 0


def _load_rules_or_report(path: Path) -> RuleSet | None:
    try:
        return load_rules(path)
    except RulesError as err:
        for issue in err.issues:
            print(issue, file=sys.stderr)
        print(f"{len(err.issues)} rules error(s); nothing was changed", file=sys.stderr)
        return None


def cmd_rules(args: argparse.Namespace, config: Config) -> int:
    path = args.rules or config.rules.path
    rules = _load_rules_or_report(path)
    if rules is None:
        return 2
    if args.action == "check":
        print(f"{path}: OK, {len(rules.rules)} rule(s): "
              + ", ".join(repr(r.name) for r in rules.rules))
        return 0
    try:
        raw = args.message.read_bytes()
    except OSError as err:
        raise CliError(f"cannot read {args.message}: {err.strerror}") from None
    report = explain_message(rules, raw)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(format_explanation(report))
    return 0 if report["error"] is None else 1


async def cmd_outbox(args: argparse.Namespace, db: Database) -> int:
    queries = Queries(db)
    if args.action == "list":
        listing = await queries.outbox(Page(args.limit, args.before_id), status=args.status,
                                       source=args.source)
        _print_listing(listing, args.json,
                       ["ID", "STATUS", "SOURCE", "TARGET", "ATTEMPTS", "NEXT", "LAST ERROR"],
                       lambda r: [r["id"], r["status"], r["source"], r["target"],
                                  r["attempts"], _short_time(r["next_attempt_at"]),
                                  r["last_error"]])
        return 0
    allowed, status = ((DEAD, PENDING), PENDING) if args.action == "retry" else \
        ((DEAD, PENDING), DROPPED)
    try:
        await change_outbox_row(db, args.id, allowed, status, utcnow())
    except (LookupError, OutboxRefused) as err:
        raise CliError(str(err).strip("'")) from None
    print(f"outbox {args.id}: {status}"
          + (" (a running alertd sends it at its next outbox run)" if status == PENDING else ""))
    return 0


async def cmd_rmm(args: argparse.Namespace, config: Config) -> int:
    clients = build_clients(config)
    try:
        result = await check_source(args.name, clients)
    finally:
        await clients.close()
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(f"{result.source}: {result.status}: {result.message}")
        for probe in result.probes:
            print(f"  {'ok     ' if probe.ok else 'MISSING'} {probe.what}"
                  + (f": {probe.detail}" if probe.detail else ""))
    return 0 if result.ok else 1


class _ProgressLine:
    """A one-line progress display on a terminal's stderr ("syncro assets: 1,250")."""

    def __init__(self, source: str):
        self._source = source
        self._shown = False

    def __call__(self, what: str, done: int) -> None:
        sys.stderr.write(f"\r{self._source} {what}: {done:,} records")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\n")


async def cmd_sync(args: argparse.Namespace, config: Config, db: Database) -> int:
    if args.target == "history":
        listing = await Queries(db).sync_runs(Page(args.limit, args.before_id),
                                              source=args.source)
        _print_listing(listing, args.json,
                       ["ID", "SOURCE", "ENTITIES", "TRIGGER", "STATUS", "STARTED", "CHANGES"],
                       lambda r: [r["id"], r["source"], ",".join(r["entities"]), r["trigger"],
                                  r["status"], _short_time(r["started_at"]),
                                  sum(n for k, n in r["counts"].items()
                                      if "." in k and not k.endswith(".unchanged"))])
        return 0
    clients = build_clients(config)
    results: list[dict[str, Any]] = []
    ok = True
    try:
        runner = SyncRunner(db, clients, config)
        sources = [args.target] if args.target else runner.enabled_sources()
        if not sources:
            raise CliError("nothing to sync: no RMM has API keys and an entity switched on "
                           "([sync.datto] / [sync.syncro] customers, assets); or name the RMM "
                           "and add --customers and/or --assets")
        chosen = args.customers or args.assets  # neither flag: what the config enables
        for source in sources:
            progress = _ProgressLine(source) if sys.stderr.isatty() and not args.json \
                else None
            try:
                report = await runner.run(
                    source, customers=args.customers if chosen else None,
                    assets=args.assets if chosen else None, preview=args.preview,
                    keep_ops=args.json or args.preview, trigger="cli", progress=progress)
            except SyncRefused as err:  # say so, and go on with the next RMM
                print(f"alertd: sync {source}: {err}", file=sys.stderr)
                ok = False
                continue
            finally:
                if progress is not None:
                    progress.close()
            ok = ok and report.status == "ok"
            if args.json:
                results.append(report.as_json())
            else:  # printed as each RMM finishes, so nothing done goes unreported
                for op in report.ops or ():
                    print(op.describe())
                for reason in report.skipped:
                    print(f"skip {reason}")
                print(report.summary(), flush=True)
    finally:
        await clients.close()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if ok else 1


def cmd_webhook_config(args: argparse.Namespace, config: Config) -> int:
    builders = {"datto": datto_setup, "syncro": syncro_setup}
    try:
        setup = builders[args.vendor](config)
    except NotConfigured as err:
        print(f"alertd: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(setup.as_json(), indent=2))
    else:
        print(format_setup(setup))
    return 0


# --- parser -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help="configuration file (default: $ALERTD_CONFIG, else none: "
                             "built-in defaults)")
    parser = argparse.ArgumentParser(prog="alertd", parents=[common],
                                     description="RMM alerts into tickets, kept in step.")
    parser.add_argument("--version", action="version", version=f"alertd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.add_argument("--log-format", choices=["text", "json"], help="override [logging] format")
    commands.add_parser("check-config", parents=[common],
                        help="validate the configuration; print every error with its line")

    db = commands.add_parser("db", parents=[common], help="database schema")
    db_actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_actions.add_parser("upgrade", parents=[common], help="apply pending migrations")
    db_actions.add_parser("current", parents=[common],
                          help="show the schema revision (exit 1 if behind)")

    def listing(sub: argparse._SubParsersAction, name: str, what: str  # type: ignore[type-arg]
                ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=f"list {what}")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--limit", type=int, default=50)
        p.add_argument("--before-id", type=int, help="page: items older than this id")
        return p

    def show(sub: argparse._SubParsersAction, what: str) -> None:  # type: ignore[type-arg]
        p = sub.add_parser("show", parents=[common], help=f"show one {what}")
        p.add_argument("id", type=int)
        p.add_argument("--json", action="store_true", help="print JSON")

    tickets = commands.add_parser("tickets", parents=[common], help="tickets")
    t = tickets.add_subparsers(dest="action", required=True, metavar="ACTION")
    tl = listing(t, "list", "tickets")
    tl.add_argument("--status", choices=["open", "closed"])
    tl.add_argument("--alert-uid")
    tl.add_argument("--source")
    show(t, "ticket")
    tc = t.add_parser("close", parents=[common],
                      help="close as an agent (resolves the alert upstream)")
    tc.add_argument("id", type=int)
    tc.add_argument("--note", help="closing note")
    tc.add_argument("--actor", help="who closes it (default: your login name)")
    tn = t.add_parser("note", parents=[common], help="add a note")
    tn.add_argument("id", type=int)
    tn.add_argument("text")
    tn.add_argument("--actor", help="author (default: your login name)")

    alerts = commands.add_parser("alerts", parents=[common], help="alerts")
    a = alerts.add_subparsers(dest="action", required=True, metavar="ACTION")
    al = listing(a, "list", "alerts")
    al.add_argument("--source")
    al.add_argument("--uid")
    al.add_argument("--state", choices=["open", "resolved"])
    show(a, "alert")

    deliveries = commands.add_parser("deliveries", parents=[common],
                                     help="deliveries (every raw input)")
    d = deliveries.add_subparsers(dest="action", required=True, metavar="ACTION")
    dl = listing(d, "list", "deliveries")
    dl.add_argument("--status",
                    choices=["received", "processed", "ignored", "rejected", "failed"])
    dl.add_argument("--channel", choices=["smtp", "imap", "webhook", "poll", "api"])
    dl.add_argument("--source")
    show(d, "delivery")
    dr = d.add_parser("replay", parents=[common],
                      help="process a failed, ignored or rejected delivery again")
    dr.add_argument("id", type=int)

    rules = commands.add_parser("rules", parents=[common], help="email rules")
    r = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    rc = r.add_parser("check", parents=[common],
                      help="validate a rules file; print every error with its line")
    rc.add_argument("--rules", type=Path, metavar="FILE", help="default: [rules] path")
    rt = r.add_parser("test", parents=[common],
                      help="show what the rules make of a message (stores nothing)")
    rt.add_argument("message", type=Path, metavar="MESSAGE.eml")
    rt.add_argument("--rules", type=Path, metavar="FILE", help="default: [rules] path")
    rt.add_argument("--json", action="store_true", help="print JSON")

    hooks = commands.add_parser("webhook-config", parents=[common],
                                help="print the webhook URL and payloads to paste into the RMM")
    hooks.add_argument("vendor", choices=["datto", "syncro"])
    hooks.add_argument("--json", action="store_true", help="print JSON")

    outbox = commands.add_parser("outbox", parents=[common],
                                 help="resolve calls owed to the RMMs")
    o = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    ol = listing(o, "list", "outbox rows")
    ol.add_argument("--status", choices=["pending", "done", "dead", "dropped"])
    ol.add_argument("--source")
    for name, text in (("retry", "send a dead or pending row again, attempts reset"),
                       ("drop", "give up on a dead or pending row (never sent)")):
        p = o.add_parser(name, parents=[common], help=text)
        p.add_argument("id", type=int)

    sync = commands.add_parser(
        "sync", parents=[common],
        help="import customers, sites, end users and assets from the RMMs (or: sync history)",
        description="alertd sync [datto|syncro] [--customers] [--assets] [--preview] [--json]"
                    "; alertd sync history [--source S] [--json]")
    sync.add_argument("target", nargs="?", choices=["datto", "syncro", "history"],
                      help="one RMM (default: every one with API keys), or history")
    sync.add_argument("--customers", action="store_true",
                      help="Syncro customers and contacts / Datto sites (default: as configured)")
    sync.add_argument("--assets", action="store_true",
                      help="Syncro assets / Datto devices (default: as configured)")
    sync.add_argument("--preview", action="store_true",
                      help="print what would be created, updated, matched and deactivated; "
                           "write nothing")
    sync.add_argument("--json", action="store_true", help="print JSON")
    sync.add_argument("--source", choices=["datto", "syncro"], help="history: one RMM only")
    sync.add_argument("--limit", type=int, default=50, help="history: how many runs")
    sync.add_argument("--before-id", type=int, help="history: runs older than this id")

    rmm = commands.add_parser("rmm", parents=[common], help="RMM API connections")
    r_actions = rmm.add_subparsers(dest="action", required=True, metavar="ACTION")
    rt_ = r_actions.add_parser("test", parents=[common],
                               help="test the API: host, platform, credentials, permissions")
    rt_.add_argument("name", choices=["datto", "syncro"])
    rt_.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    environ = dict(os.environ)
    config_path: Path | None = getattr(args, "config", None)
    if config_path is None and environ.get("ALERTD_CONFIG"):
        config_path = Path(environ["ALERTD_CONFIG"])
    try:
        config = load_config(config_path, environ)
    except ConfigError as err:
        for issue in err.issues:
            print(issue, file=sys.stderr)
        print(f"{len(err.issues)} configuration error(s)", file=sys.stderr)
        return 2
    if args.command == "check-config":
        rules = _load_rules_or_report(config.rules.path)
        if rules is None:
            return 2
        print(f"{config_path or '<defaults>'}: OK (database {redact_url(config.database.url)}, "
              f"http {config.http.listen}, rules {config.rules.path}: {len(rules.rules)})")
        return 0
    if args.command == "webhook-config":
        return cmd_webhook_config(args, config)
    if args.command == "rmm":
        setup_logging("text", "WARNING")
        return asyncio.run(cmd_rmm(args, config))
    if args.command == "rules":
        try:
            return cmd_rules(args, config)
        except CliError as err:
            print(f"alertd: {err}", file=sys.stderr)
            return 1
    if args.command == "run":
        from daemon.service import serve  # the HTTP stack is loaded only by `run`

        setup_logging(args.log_format or config.logging.format, config.logging.level)
        try:
            return asyncio.run(serve(config, config_path, environ))
        except SchemaOutOfDate as err:
            print(f"alertd: {err}", file=sys.stderr)
            return 2
        except RulesError as err:
            print(f"alertd: invalid rules, not starting:\n{err}", file=sys.stderr)
            return 2
        except (OSError, ValueError) as err:  # e.g. the port is taken
            print(f"alertd: {err}", file=sys.stderr)
            return 1
    setup_logging("text", "WARNING")
    try:
        if args.command == "db":
            return asyncio.run(cmd_db(args, config))
        handlers: dict[str, Callable[[Database], Awaitable[int]]] = {
            "tickets": lambda db: cmd_tickets(args, db),
            "alerts": lambda db: cmd_alerts(args, db),
            "deliveries": lambda db: cmd_deliveries(args, db, config),
            "outbox": lambda db: cmd_outbox(args, db),
            "sync": lambda db: cmd_sync(args, config, db),
        }
        return asyncio.run(_with_db(config, handlers[args.command]))
    except (CliError, SchemaOutOfDate, BadFilter, RulesError, ValueError) as err:
        print(f"alertd: {err}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as err:  # the database is down or unreachable
        print(f"alertd: database {redact_url(config.database.url)}: "
              f"{type(err).__name__}: {str(err).splitlines()[0]}", file=sys.stderr)
        return 1
