"""Rules as data: a TOML rules file compiles once into these frozen objects (see load.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from jinja2 import Template


MatchOp = Literal["equals", "contains", "regex"]


class RuleAction(StrEnum):
    RAISE = "raise"
    RESOLVE = "resolve"
    IGNORE = "ignore"  # matched on purpose: keep the delivery as ignored, with the trace

# Message fields a condition can test; "header:<name>" tests any header by name.
FIELDS = ("from", "to", "subject", "original_subject", "body")
# Fields a regex may extract (named groups) that become alert attributes.
EVENT_FIELDS = ("alert_uid", "device", "site", "customer", "priority", "message", "condition")
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
class TicketTemplate:
    """A rule's ticket template (sandboxed Jinja). `parts` is set when the template is only
    text and plain `{{ name }}` outputs (the usual `{{ subject }}`): (True, name) or (False,
    text), rendered by joining when every name is a string in the context, exactly as Jinja
    would; otherwise, and for anything else, Jinja renders it, compiled by `compile` at the
    first such render. (A Jinja render builds a context per call: about half of the rules'
    cost per message; and a rules file of such templates needs no jinja2 in memory.)"""

    source: str
    compile: Callable[[str], Template]
    parts: tuple[tuple[bool, str], ...] | None = None

    @cached_property
    def template(self) -> Template:
        return self.compile(self.source)

    def render(self, context: dict[str, Any]) -> str:
        if self.parts is None:
            return self.template.render(context)
        pieces: list[str] = []
        for is_name, text in self.parts:
            piece = context.get(text) if is_name else text
            if not isinstance(piece, str):  # undefined, or not text: Jinja's rules apply
                return self.template.render(context)
            pieces.append(piece)
        return "".join(pieces)


@dataclass(frozen=True)
class Rule:
    name: str
    source: str | None
    action: RuleAction | None  # None: only extracts fields for later rules
    match_any: bool
    stop: bool
    conditions: tuple[Condition, ...]
    ticket: dict[str, TicketTemplate]  # ticket field -> compiled sandboxed template
    line: int | None
    expire_after_s: int | None = None  # a raise rule's `expire_after` (docs/lifecycle.md)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    path: Path | None = None
    # The TOML it was compiled from: how worker processes get the same rules (compiled
    # templates do not pickle). None for rule sets built otherwise.
    text: str | None = None
