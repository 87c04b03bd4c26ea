"""Rules file (TOML) -> `RuleSet`, with every error reported by rule name, key and line.

    [[rule]]
    name = "Datto RMM Alerts"
    source = "datto"
    action = "raise"                 # raise | resolve | ignore; absent: extract fields only
    match = "all"                    # all | any: how the conditions combine
    stop = true                      # stop evaluating after this rule hits
    from = { contains = "@example-msp.com" }
    subject = { regex = 'Alert\\{(?P<alert_uid>[0-9a-f-]{36})\\}' }
    body = [{ contains = "Device:" }, { regex = 'Site: (?P<site>.+)' }]
    [rule.headers]
    "X-Priority" = { equals = "1" }
    [rule.ticket]
    summary = "{{ device }}: {{ subject }}"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.core.durations import parse_expire_after
from daemon.core.events import is_source_name
from daemon.core.tomllines import Path_, TomlError, line_of, locate_keys, parse_toml
from daemon.rules.model import (
    FIELDS,
    TICKET_KEYS,
    Condition,
    MatchOp,
    Rule,
    RuleAction,
    RuleSet,
    TicketTemplate,
)

if TYPE_CHECKING:
    from jinja2 import Template, nodes
    from jinja2.sandbox import SandboxedEnvironment

RULE_KEYS = {"name", "source", "action", "match", "stop", "headers", "ticket", "expire_after",
             *FIELDS}
CONDITION_KEYS = {"equals", "contains", "regex", "ignore_case", "negate"}


@dataclass(frozen=True)
class RuleIssue:
    file: str
    line: int | None
    rule: str | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        rule = f"rule {self.rule!r}: " if self.rule else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}: {rule}{key}{self.message}"


class RulesError(Exception):
    def __init__(self, issues: list[RuleIssue]):
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


class TemplateSyntax(ValueError):
    """A ticket template Jinja cannot compile: `message` at template line `lineno`."""

    def __init__(self, message: str, lineno: int):
        super().__init__(f"{message} (template line {lineno})")
        self.message = message
        self.lineno = lineno


@cache
def template_environment() -> SandboxedEnvironment:
    """Rule templates run sandboxed; message content is passed in as data, never compiled.
    (One per process, made at the first template that needs Jinja.)"""
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)


def _compile(source: str) -> Template:
    return template_environment().from_string(source)


# A template of text and `{{ name }}` outputs only, read without Jinja: the text holds no
# Jinja delimiter, no \r (Jinja turns every newline into \n) and no whitespace control, and no
# name is one Jinja reads otherwise (constants, operators). Anything else goes to Jinja.
# (tests/unit/test_rules_templates.py holds the two to the same parts and renders.)
_OUTPUT = re.compile(r"\{\{[ \t\n]*([A-Za-z_][A-Za-z0-9_]*)[ \t\n]*\}\}")
_NOT_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not",
                        "in", "is", "if", "else"})


def _plain_parts(source: str) -> tuple[tuple[bool, str], ...] | None:
    """The parts of a template of only text and `{{ name }}` outputs, as Jinja would parse
    them; None for any other template."""
    if "\r" in source:
        return None
    if source.endswith("\n"):  # keep_trailing_newline=False: Jinja drops one
        source = source[:-1]
    parts: list[tuple[bool, str]] = []
    for index, piece in enumerate(_OUTPUT.split(source)):
        if index % 2:
            if piece in _NOT_NAMES:
                return None
            parts.append((True, piece))
        elif "{{" in piece or "{%" in piece or "{#" in piece or piece.endswith("{"):
            return None  # ("{{{ x }}": Jinja opens its output at the first "{{")
        elif piece:
            parts.append((False, piece))
    return tuple(parts)


def ticket_template(source: str) -> TicketTemplate:
    """Compile a ticket template; note its parts when it is only text and `{{ name }}`
    outputs (then Jinja is not loaded until a render needs it). Raises `TemplateSyntax`."""
    parts = _plain_parts(source)
    if parts is not None:
        return TicketTemplate(source, _compile, parts)
    from jinja2 import TemplateSyntaxError

    env = template_environment()
    try:
        tree = env.parse(source)  # parsed once: walked here, then compiled
        compiled = env.from_string(tree)
    except TemplateSyntaxError as err:
        raise TemplateSyntax(err.message or "syntax error", err.lineno) from err
    except RecursionError:  # "{{ ((((...x)))) }}" thousands deep: an answer, not a traceback
        raise TemplateSyntax("expressions nested too deeply", 1) from None
    template = TicketTemplate(source, _compile, jinja_parts(tree))
    template.__dict__["template"] = compiled  # the cached_property, filled
    return template


def jinja_parts(tree: nodes.Template) -> tuple[tuple[bool, str], ...] | None:
    """The parts of a template Jinja parsed, when it is only text and `{{ name }}` outputs;
    None for any other."""
    from jinja2 import nodes

    found: list[tuple[bool, str]] = []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                found.append((False, child.data))
            elif isinstance(child, nodes.Name) and child.ctx == "load":
                found.append((True, child.name))
            else:  # filters, attributes, constants, calls: Jinja's own semantics
                return None
    return tuple(found)


class _Compiler:
    def __init__(self, file: str, text: str):
        self.file = file
        self.lines = locate_keys(text)
        self.issues: list[RuleIssue] = []

    def issue(self, path: Path_, rule: str | None, message: str) -> None:
        key = ".".join(str(p) for p in path[2:])
        self.issues.append(RuleIssue(self.file, line_of(self.lines, path), rule, key, message))

    def condition(self, path: Path_, rule: str, field: str, spec: Any) -> Condition | None:
        if not isinstance(spec, dict):
            self.issue(path, rule, "a condition is a table like { contains = \"text\" }")
            return None
        unknown = sorted(set(spec) - CONDITION_KEYS)
        if unknown:
            self.issue((*path, unknown[0]), rule, f"unknown key (expected one of "
                       f"{', '.join(sorted(CONDITION_KEYS))})")
            return None
        ops = [op for op in ("equals", "contains", "regex") if op in spec]
        if len(ops) != 1:
            self.issue(path, rule, "give exactly one of equals, contains, regex")
            return None
        op: MatchOp = ops[0]  # type: ignore[assignment]
        value = spec[op]
        if not isinstance(value, str):
            self.issue((*path, op), rule, "must be a string")
            return None
        for flag in ("ignore_case", "negate"):
            if flag in spec and not isinstance(spec[flag], bool):
                self.issue((*path, flag), rule, "must be true or false")
                return None
        ignore_case = spec.get("ignore_case", op != "regex")
        pattern = None
        if op == "regex":
            try:
                pattern = re.compile(value, re.IGNORECASE if ignore_case else 0)
            except re.error as err:
                self.issue((*path, op), rule, f"invalid regular expression: {err}")
                return None
        return Condition(field, op, value.lower() if ignore_case and op != "regex" else value,
                         ignore_case, spec.get("negate", False), pattern)

    def conditions(self, path: Path_, rule: str, field: str, spec: Any) -> list[Condition]:
        specs = spec if isinstance(spec, list) else [spec]
        found = []
        for index, item in enumerate(specs):
            item_path = (*path, index) if isinstance(spec, list) else path
            condition = self.condition(item_path, rule, field, item)
            if condition is not None:
                found.append(condition)
        return found

    def rule(self, index: int, raw: Any, names: set[str]) -> Rule | None:
        path: Path_ = ("rule", index)
        if not isinstance(raw, dict):
            self.issue(path, None, "each [[rule]] must be a table")
            return None
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            self.issue((*path, "name"), None, f"rule #{index + 1} needs a name")
            return None
        if name in names:
            self.issue((*path, "name"), name, "another rule has this name")
        names.add(name)
        before = len(self.issues)
        for key in sorted(set(raw) - RULE_KEYS):
            self.issue((*path, key), name, "unknown key")
        action = None
        if "action" in raw:
            try:
                action = RuleAction(raw["action"])
            except ValueError:
                self.issue((*path, "action"), name, "must be raise, resolve or ignore")
        source = raw.get("source")
        if source is not None and not is_source_name(source):
            self.issue((*path, "source"), name,
                       "must be a lower-case name like 'datto', 'syncro' or 'email'")
        if action in (RuleAction.RAISE, RuleAction.RESOLVE) and source is None:
            self.issue((*path, "source"), name, f"a {action} rule needs a source")
        match = raw.get("match", "all")
        if match not in ("all", "any"):
            self.issue((*path, "match"), name, "must be 'all' or 'any'")
        # A rule that only extracts fields goes on to the next rule unless told otherwise.
        stop = raw.get("stop", action is not None)
        if not isinstance(stop, bool):
            self.issue((*path, "stop"), name, "must be true or false")
        conditions: list[Condition] = []
        for key, spec in raw.items():  # in the order written: the first match extracts first
            if key in FIELDS:
                conditions += self.conditions((*path, key), name, key, spec)
            elif key == "headers" and not isinstance(spec, dict):
                self.issue((*path, "headers"), name, "must be a table of header = condition")
            elif key == "headers":
                for header, header_spec in spec.items():
                    conditions += self.conditions((*path, "headers", header), name,
                                                  f"header:{header.lower()}", header_spec)
        if not conditions and len(self.issues) == before:
            self.issue(path, name, "a rule needs at least one condition "
                                   "(from, to, subject, original_subject, body or headers)")
        expire_after_s = None
        if "expire_after" in raw:
            if action is not RuleAction.RAISE:
                self.issue((*path, "expire_after"), name, "is used only by raise rules")
            try:
                expire_after_s = parse_expire_after(raw["expire_after"])
            except ValueError as err:
                self.issue((*path, "expire_after"), name, str(err))
        ticket = {}
        ticket_raw = raw.get("ticket", {})
        if ticket_raw and action is not RuleAction.RAISE:
            self.issue((*path, "ticket"), name, "ticket fields are used only by raise rules")
        if not isinstance(ticket_raw, dict):
            self.issue((*path, "ticket"), name, "must be a table")
            ticket_raw = {}
        for key, source_text in ticket_raw.items():
            if key not in TICKET_KEYS:
                self.issue((*path, "ticket", key), name,
                           f"unknown key (expected one of {', '.join(TICKET_KEYS)})")
            elif not isinstance(source_text, str):
                self.issue((*path, "ticket", key), name, "must be a template string")
            else:
                try:
                    ticket[key] = ticket_template(source_text)
                except TemplateSyntax as err:
                    self.issue((*path, "ticket", key), name,
                               f"template error: {err.message} (template line {err.lineno})")
        if len(self.issues) != before:
            return None
        return Rule(name=name, source=source, action=action, match_any=match == "any",
                    stop=stop, conditions=tuple(conditions), ticket=ticket,
                    line=line_of(self.lines, path), expire_after_s=expire_after_s)


def compile_rules(text: str, file: str = "<rules>", path: Path | None = None) -> RuleSet:
    """Compile a rules file's text. Raises `RulesError` listing every problem."""
    try:
        raw = parse_toml(text)
    except TomlError as err:
        raise RulesError([RuleIssue(file, err.line, None, "", f"TOML syntax error: {err.message}")]
                         ) from err
    compiler = _Compiler(file, text)
    for key in sorted(set(raw) - {"rule"}):
        compiler.issue((key,), None,
                       f"unknown top-level key {key!r} (rules are [[rule]] tables)")
    entries = raw.get("rule", [])
    if not isinstance(entries, list):
        compiler.issue(("rule",), None, "write rules as [[rule]] tables")
        entries = []
    names: set[str] = set()
    rules = [compiler.rule(index, entry, names) for index, entry in enumerate(entries)]
    if compiler.issues:
        raise RulesError(sorted(compiler.issues, key=lambda i: i.line or 0))
    return RuleSet(tuple(r for r in rules if r is not None), path, text)


def load_rules(path: Path) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RulesError([RuleIssue(str(path), None, None, "", f"cannot read: {err}")]
                         ) from err
    return compile_rules(text, str(path), path)
