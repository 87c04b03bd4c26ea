"""Line numbers of TOML keys, so configuration errors can point at the line that caused them.

`tomllib` returns plain dicts without positions. This scanner reads the same text once and maps
every dotted key path (tables, array-of-tables entries by index, and `key = value` lines) to the
1-based line where it is written. It is deliberately approximate: a key inside a multi-line
string or an inline table is attributed to the nearest enclosing line we can see.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

Path_ = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")


def _split_dotted(key: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", key)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def locate_keys(text: str) -> dict[Path_, int]:
    """Map each key path written in `text` to its line number (first occurrence wins)."""
    lines: dict[Path_, int] = {}
    table: Path_ = ()
    array_counts: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names = _split_dotted(header.group(2))
            # `[rule.ticket]` after `[[rule]]` belongs to the latest rule: insert its index.
            resolved: Path_ = ()
            for depth, name in enumerate(names):
                resolved = (*resolved, name)
                prefix = names[: depth + 1]
                is_last = depth == len(names) - 1
                if prefix in array_counts and not (is_last and header.group(1) == "[["):
                    resolved = (*resolved, array_counts[prefix] - 1)
            if header.group(1) == "[[":
                index = array_counts.get(names, 0)
                array_counts[names] = index + 1
                table = (*resolved, index)
            else:
                table = resolved
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*table, *_split_dotted(key.group(1))), number)
    return lines


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of `path`, or of its nearest written ancestor (a missing key -> its table)."""
    for end in range(len(path), 0, -1):
        found = lines.get(tuple(path[:end]))
        if found is not None:
            return found
    return None


class TomlError(ValueError):
    """A TOML text that does not parse: `message` at `line` (None: no line to name)."""

    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def parse_toml(text: str) -> dict[str, Any]:
    """`tomllib.loads`, its refusals as `TomlError`: a syntax error with its line (tomllib's
    "message (at line L, column C)" split), or nesting deeper than tomllib's recursion
    reaches (`[[[[...` thousands deep: an answer, not a traceback)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = re.search(r"\(at line (\d+), column (\d+)\)$", str(err))
        if not match:
            raise TomlError(None, str(err)) from err
        message = str(err)[: match.start()].rstrip()
        raise TomlError(int(match.group(1)), f"{message} (column {match.group(2)})") from err
    except RecursionError:
        raise TomlError(None, "arrays or tables nested too deeply") from None


def format_path(path: Path_) -> str:
    """('imap', 'accounts', 0, 'host') -> 'imap.accounts[0].host'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
