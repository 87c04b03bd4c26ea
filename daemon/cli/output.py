"""How the CLI prints: aligned tables, records, short timestamps; untrusted text made safe
for a terminal.

Alert text comes from anyone who can send mail: a subject holding `ESC]0;...BEL` or `ESC[2J`
must not retitle or clear the admin's terminal. Every human format goes through `show` or
`terminal_safe`, which print control characters (and Unicode's invisible direction marks)
escaped; JSON output is printed as json.dumps made it, exact.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from daemon.config.loading import ConfigIssue
from daemon.rules.load import RuleIssue

# C0 controls but the line break, DEL, C1 controls, and the bidirectional marks and overrides
# that reorder what a terminal shows.
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e"
                     "\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """`text` with every control character but the line break shown as an escape (`\\x1b`)."""
    return _UNSAFE.sub(_escaped, text)


def show(text: str, *, err: bool = False, flush: bool = False) -> None:
    """Print human-readable text, terminal-safe (stderr with `err`)."""
    print(terminal_safe(text), file=sys.stderr if err else sys.stdout, flush=flush)


def table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [[terminal_safe(("" if c is None else str(c)).replace("\n", " ")) for c in r]
             for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    widths[-1] = len(headers[-1])  # the last column is free text: do not pad it
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def short_time(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else ""


def print_listing(listing: dict[str, Any], as_json: bool, headers: list[str],
                  row: Callable[[dict[str, Any]], list[Any]]) -> None:
    if as_json:
        print(json.dumps(listing, indent=2))
        return
    print(table([row(item) for item in listing["items"]], headers))  # cells are made safe
    if listing["next_before_id"]:
        show(f"(more: --before-id {listing['next_before_id']})")


def print_record(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(record, indent=2))
        return
    for key, value in record.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            show(f"{key}:")
            for item in value:
                show("  - " + json.dumps(item))
        elif isinstance(value, dict | list):
            show(f"{key}: {json.dumps(value)}")
        else:
            show(f"{key}: {'' if value is None else value}")


def report_errors(issues: Sequence[ConfigIssue | RuleIssue], what: str, as_json: bool) -> None:
    """Every problem found in a file ("configuration" or "rules"): one line each, or JSON
    (`{"ok": false, "errors": [{"file", "line", "key", "message"}]}`)."""
    if as_json:
        print(json.dumps({"ok": False, "errors": [
            {"file": issue.file, "line": issue.line, "key": issue.key,
             "message": issue.message} for issue in issues]}, indent=2))
        return
    for issue in issues:
        show(str(issue), err=True)
    show(f"{len(issues)} {what} error(s)" + ("; nothing was changed" if what == "rules" else ""),
         err=True)
