"""`alertd rules check|test`: validate a rules file; show what it makes of a message."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import aiohttp

from daemon.cli.backend import Remote, remote_target
from daemon.cli.common import CliError, Invocation, SubParsers, run_async
from daemon.cli.output import report_errors, show
from daemon.rules.explain import explain_message, format_explanation
from daemon.rules.load import RulesError, load_rules
from daemon.rules.model import RuleSet


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    rules = commands.add_parser("rules", parents=[common], help="email rules")
    actions = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", parents=[common],
                               help="validate a rules file; print every error with its line")
    check.add_argument("--rules", type=Path, metavar="FILE", help="default: [rules] path")
    check.add_argument("--json", action="store_true", help="print JSON")
    test = actions.add_parser("test", parents=[common],
                              help="show what the rules make of a message (stores nothing)")
    test.add_argument("message", type=Path, metavar="MESSAGE.eml")
    test.add_argument("--rules", type=Path, metavar="FILE", help="default: [rules] path")
    test.add_argument("--json", action="store_true", help="print JSON")
    # Through --url: `rules test` of the rules in force there (a local --rules file is tested
    # here).
    rules.set_defaults(remote_capable=lambda args: args.action == "test" and args.rules is None,
                       handler=run, secret_sections=())


def load_rules_or_report(path: Path) -> RuleSet | None:
    """The rules at `path`, or None after printing every problem to stderr."""
    try:
        return load_rules(path)
    except RulesError as err:
        report_errors(err.issues, "rules", as_json=False)
        return None


def run(inv: Invocation) -> int:
    args = inv.args
    remote = inv.remote
    try:
        raw = args.message.read_bytes() if args.action == "test" else b""
    except OSError as err:
        raise CliError(f"cannot read {args.message}: {err.strerror}") from None
    if remote is not None:
        report = run_async(_remote_test(remote.url, remote.token_file, raw))
    else:
        path = args.rules or inv.config.rules.path
        if args.action == "check" and args.json:
            try:
                names = [rule.name for rule in load_rules(path).rules]
            except RulesError as err:
                report_errors(err.issues, "rules", True)
                return 2
            print(json.dumps({"ok": True, "rules_file": str(path), "rules": names}, indent=2))
            return 0
        rules = load_rules_or_report(path)
        if rules is None:
            return 2
        if args.action == "check":
            show(f"{path}: OK, {len(rules.rules)} rule(s): "
                 + ", ".join(repr(r.name) for r in rules.rules))
            return 0
        report = explain_message(rules, raw)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        show(format_explanation(report))
    return 0 if report["error"] is None else 1


async def _remote_test(url: str, token_file: str | None, raw: bytes) -> dict[str, Any]:
    target = remote_target(url, token_file)
    async with aiohttp.ClientSession() as session:
        return await Remote(target, session).rules_test(raw)
