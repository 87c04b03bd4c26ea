"""How the CLI prints: aligned tables, records, short timestamps."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [[("" if c is None else str(c)).replace("\n", " ") for c in r] for r in rows]
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
    print(table([row(item) for item in listing["items"]], headers))
    if listing["next_before_id"]:
        print(f"(more: --before-id {listing['next_before_id']})")


def print_record(record: dict[str, Any], as_json: bool) -> None:
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
