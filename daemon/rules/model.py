"""Rules as data: a TOML rules file compiles once into these frozen objects (see load.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from jinja2 import Template

MatchOp = Literal["equals", "contains", "regex"]


class RuleAction(StrEnum):
    RAISE = "raise"
    RESOLVE = "resolve"
    IGNORE = "ignore"  # matched on purpose: keep the delivery as ignored, with the trace

# Message fields a condition can test; "header:<name>" tests any header by name.
FIELDS = ("from", "to", "subject", "original_subject", "body")
# Fields a regex may extract (named groups) that become alert attributes.
EVENT_FIELDS = ("alert_uid", "device", "site", "customer", "priority", "message")
TICKET_KEYS = ("type", "priority", "summary", "details")


@dataclass(frozen=True)
class Condition:
    field: str  # one of FIELDS, or "header:<lower-case name>"
    op: MatchOp
    value: str
    ignore_case: bool
    negate: bool
    pattern: re.Pattern[str] | None  # regex ops only
    label: str = ""  # how the trace names it; set once at load (evaluation is hot)

    def __post_init__(self) -> None:
        if not self.label:
            text = f"{'not ' if self.negate else ''}{self.field} {self.op} «{self.value}»"
            object.__setattr__(self, "label", text)


@dataclass(frozen=True)
class Rule:
    name: str
    source: str | None
    action: RuleAction | None  # None: only extracts fields for later rules
    match_any: bool
    stop: bool
    conditions: tuple[Condition, ...]
    ticket: dict[str, Template]  # ticket field -> compiled sandboxed template
    line: int | None


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    path: Path | None = None
