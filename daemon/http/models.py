"""Request models of the JSON API: the one source of its request checks (bodies, query
parameters, headers) and of the request schemas in its OpenAPI document (daemon.http.openapi).

A model that refuses a request names each field and the rule it broke (`describe`): bodies
answer 422 (valid JSON, invalid content), query parameters and headers 400.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
)

from daemon.core.api_event import DETAILS_CHARS, MESSAGE_CHARS, SUMMARY_CHARS
from daemon.core.events import MAX_ID
from daemon.store.queries import MAX_PAGE
from daemon.store.ticket_search import MAX_QUERY_CHARS
from daemon.tickets.statements import MAX_NOTE_CHARS
from daemon.tickets.windows import MAX_REASON_CHARS

# At least one character that Python's str.strip() keeps: `\s` of JSON Schema (ECMA-262) and
# of pydantic (Unicode White_Space) leave out the separators \x1c-\x1f, which strip() removes.
NOT_BLANK = r"^[\s\x1c-\x1f]*[^\s\x1c-\x1f]"
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL: refused before any query
# Printable ASCII with no space at either end (HTTP drops it).
PRINTABLE_ASCII = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
# Ids are 1 to 18 ASCII digits (str.isdigit would also take '²').
ID_DIGITS = re.compile(r"[0-9]{1,18}")

# Readable words for the rules the patterns above stand for.
_PATTERN_RULES = {NOT_BLANK: "must not be empty", NO_NUL: "must not contain NUL characters",
                  PRINTABLE_ASCII: "must be printable ASCII, with no space at either end"}


class RequestBody(BaseModel):
    """A closed JSON object: unknown fields are refused (a typo must not pass silently), and
    values are never coerced (`"5"` is no number, `5` no string)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class QueryParams(BaseModel):
    """Query parameters; unknown ones are ignored (a webhook's ?token= among them)."""

    model_config = ConfigDict(extra="ignore")


def _digits(value: object) -> object:
    """A query value is text: only ASCII digits make a number (no sign, space or '_')."""
    if isinstance(value, str):
        if not ID_DIGITS.fullmatch(value):
            raise ValueError("must be a whole number of 1 to 18 digits")
        return int(value)
    return value


def _integral(value: object) -> object:
    """42.0 is the integer 42: JSON has one number type, and JSON Schema's "integer" takes
    it (strict mode alone would refuse it)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The digits check comes last in the chain so it runs first, and the bounds stay JSON
# Schema's minimum/maximum.
RecordId = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_digits)]
QueryText = Annotated[str, Field(pattern=NO_NUL)]
Actor = Annotated[str, Field(max_length=MAX_NOTE_CHARS,
                             description="Who acts, stored as agent:<actor> (its first 100 "
                                         "characters); empty or absent: agent:api")]


# --- bodies --------------------------------------------------------------------------------

class TicketFieldsBody(RequestBody):
    """The ticket to open for a raised alert, when the defaults do not fit."""

    type: Annotated[str, Field(max_length=64)] | None = None
    summary: Annotated[str, Field(max_length=SUMMARY_CHARS)] | None = None
    details: Annotated[str, Field(max_length=DETAILS_CHARS)] | None = None


class AlertEventBody(RequestBody):
    """POST /api/alerts: one event of another system. It mirrors what the api channel's
    interpreter (daemon.core.api_event.parse_api_event) accepts, so a body this model takes
    is never refused when applied."""

    source: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                                 description="Lower-case name: datto, syncro, ...")]
    uid: Annotated[str, Field(max_length=200, pattern=NOT_BLANK)] | Annotated[
        int, Field(ge=0, le=MAX_ID), BeforeValidator(_integral)] = Field(
        description="The upstream alert id")
    action: Literal["raise", "resolve"]
    device: Annotated[str, Field(max_length=255)] | None = None
    device_id: Annotated[str, Field(max_length=200)] | None = None
    site: Annotated[str, Field(max_length=255)] | None = None
    customer: Annotated[str, Field(max_length=255)] | None = None
    priority: Annotated[str, Field(max_length=64)] | None = None
    message: Annotated[str, Field(max_length=MESSAGE_CHARS)] | None = None
    condition: Annotated[str, Field(
        max_length=255, description="The kind of check that raised it: with device_id or "
        "device, the alert's condition (one open ticket per condition)")] | None = None
    ticket: TicketFieldsBody | None = None


class CloseBody(RequestBody):
    """POST /api/tickets/{id}/close (the body is optional)."""

    note: Annotated[str, Field(max_length=MAX_NOTE_CHARS,
                               description="Added to the ticket as it closes; empty: none")
                    ] = ""
    actor: Actor = ""


class NoteBody(RequestBody):
    """POST /api/tickets/{id}/notes."""

    body: Annotated[str, Field(max_length=MAX_NOTE_CHARS, pattern=NOT_BLANK)]
    actor: Actor = ""


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 at +01:00 is before year 1 in UTC
        raise ValueError("is out of range") from None


def _iso_text(value: object) -> object:
    """Times are sent as text: lax mode alone would take a number as seconds since 1970."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    return value


WindowTime = Annotated[AwareDatetime, Field(strict=False, description=(
    "ISO 8601 with its offset, e.g. 2026-12-12T22:00:00+01:00")), BeforeValidator(_iso_text),
    AfterValidator(_in_utc)]
# Not blank, no NUL (PostgreSQL text cannot hold one).
WINDOW_VALUE = r"^[^\x00]*[^\s\x1c-\x1f\x00][^\x00]*$"
_PATTERN_RULES[WINDOW_VALUE] = "must not be empty or contain NUL characters"


class _WindowBody(RequestBody):
    starts_at: WindowTime
    ends_at: WindowTime
    reason: Annotated[str, Field(max_length=MAX_REASON_CHARS, pattern=NO_NUL,
                                 description="Shown in notes and the trail")] = ""
    actor: Actor = ""


class AllWindowBody(_WindowBody):
    """A window over every alert."""

    scope: Literal["all"]


class ScopedWindowBody(_WindowBody):
    """A window over one customer, site or device: by name (without case) or synced id."""

    scope: Literal["customer", "site", "device"]
    value: Annotated[str, Field(max_length=255, pattern=WINDOW_VALUE, description=(
        "The customer, site or device: its name (as the alert or the sync names it, without "
        "case), its id in alertd, or for a device the RMM's own id"))]


class MaintenanceBody(RootModel[Annotated[AllWindowBody | ScopedWindowBody,
                                          Field(discriminator="scope")]]):
    """POST /api/maintenance, as its OpenAPI document states it; a body is checked by the
    model its `scope` names (errors then name the fields as sent). `ends_at` after
    `starts_at` is checked when the window is stored (422)."""


WINDOW_BODIES: dict[str, type[AllWindowBody | ScopedWindowBody]] = {
    "all": AllWindowBody, "customer": ScopedWindowBody, "site": ScopedWindowBody,
    "device": ScopedWindowBody}


class RulesTestBody(RequestBody):
    """POST /api/rules/test."""

    message: Annotated[str, Field(pattern=NOT_BLANK, description=(
        "The raw message (RFC 5322: headers, blank line, body)"))]


# --- headers -------------------------------------------------------------------------------

class IngestHeaders(QueryParams):
    """The headers POST /api/alerts reads."""

    # Printable ASCII: the key is stored in a text column, and header bytes that are not
    # UTF-8 reach the handler as lone surrogates, which no column can hold.
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200,
                                          pattern=PRINTABLE_ASCII)] | None = Field(
        None, alias="Idempotency-Key", description=(
            "Applies the event once however often it is sent (default: the body's canonical "
            "SHA-256)"))


# --- query parameters ----------------------------------------------------------------------

class Paging(QueryParams):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE), BeforeValidator(_digits)] = Field(
        100, description=f"Page size, 1-{MAX_PAGE}")
    before_id: Annotated[RecordId | None, Field(description=(
        "Return items with a smaller id (the previous page's next_before_id)"))] = None


_SOURCE_HELP = "Alert source (datto, syncro, ...)"
_Q_HELP = ("Case-insensitive substring of the name{also}; % and _ are plain characters; "
           f"at most {MAX_QUERY_CHARS} characters (blank: no filter)")
SearchText = Annotated[str, Field(max_length=MAX_QUERY_CHARS, pattern=NO_NUL)]
Active = Annotated[Literal["true", "false"] | None, Field(
    description="true: only active records; false: only inactive ones")]
OfCustomer = Annotated[RecordId | None, Field(description="Only those of this customer (its id)")]
OfSite = Annotated[RecordId | None, Field(description="Only those of this site (its id)")]


class TicketQuery(Paging):
    status: Literal["open", "closed"] | None = None
    alert_uid: Annotated[QueryText | None, Field(description="Upstream alert id")] = None
    source: Annotated[QueryText | None, Field(description=_SOURCE_HELP)] = None
    customer_id: OfCustomer = None
    no_customer: Annotated[Literal["true", "false"] | None, Field(description=(
        "true: only tickets placed at no customer (their device and site matched none; the "
        "next sync that can place them does); false: only placed ones"))] = None
    site_id: OfSite = None
    q: Annotated[SearchText | None, Field(description=(
        "Words that must all appear in the summary or details (whole words, any case; "
        f"full-text index; at most {MAX_QUERY_CHARS} characters; blank: no filter)"))] = None


class AlertQuery(Paging):
    source: Annotated[QueryText | None, Field(description=_SOURCE_HELP)] = None
    uid: Annotated[QueryText | None, Field(description="Upstream alert id")] = None
    state: Literal["open", "resolved"] | None = None


class DeliveryQuery(Paging):
    status: Literal["received", "processed", "ignored", "rejected", "failed"] | None = None
    channel: Literal["smtp", "imap", "webhook", "poll", "api"] | None = None
    source: Annotated[QueryText | None, Field(description="Source name")] = None


class MaintenanceQuery(Paging):
    state: Literal["scheduled", "active", "ended"] | None = None


class OutboxQuery(Paging):
    status: Literal["pending", "done", "dead", "dropped"] | None = None
    source: Annotated[QueryText | None, Field(description="datto or syncro")] = None


class SyncRunQuery(Paging):
    source: Annotated[QueryText | None, Field(description="datto or syncro")] = None


class CustomerQuery(Paging):
    q: Annotated[SearchText | None, Field(description=_Q_HELP.format(also=""))] = None
    active: Active = None


class SiteQuery(CustomerQuery):
    customer_id: OfCustomer = None


class EndUserQuery(SiteQuery):
    q: Annotated[SearchText | None, Field(description=_Q_HELP.format(also=" or email"))
                 ] = None


class AssetQuery(SiteQuery):
    q: Annotated[SearchText | None, Field(description=_Q_HELP.format(also=" or serial"))
                 ] = None
    site_id: OfSite = None


# --- validation ----------------------------------------------------------------------------

Model = TypeVar("Model", bound=BaseModel)


# The names pydantic gives the branches of a union in an error's location.
_BRANCH = re.compile(r"str|int|none|constrained-\w+|(function|lax-or-strict|json-or-python)"
                     r"[-\w]*\[.*\]")


def _path(loc: tuple[int | str, ...]) -> str:
    """The dotted field path of an error, without the union branch names."""
    return ".".join(str(part) for part in loc
                    if isinstance(part, int) or not _BRANCH.fullmatch(part))


def _rule(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    match kind:
        case "missing":
            return "is required"
        case "string_type":
            return "must be a string"
        case "int_type":
            return "must be a whole number"
        case "model_type" | "dict_type" | "model_attributes_type":
            return "must be a JSON object"
        case "string_too_long":
            return f"must be at most {ctx['max_length']} characters"
        case "string_too_short":
            return f"must be at least {ctx['min_length']} characters"
        case "string_pattern_mismatch":
            return _PATTERN_RULES.get(ctx["pattern"], f"must match {ctx['pattern']}")
        case "greater_than_equal":
            return f"must be at least {ctx['ge']}"
        case "less_than_equal":
            return f"must be at most {ctx['le']}"
        case "literal_error":  # ctx["expected"] reads "'a' or 'b'"
            return "must be one of: " + ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))
        case "value_error":
            return str(ctx.get("error", error["msg"]))
    return str(error["msg"]).lower()


def describe(err: ValidationError) -> str:
    """What a model refused, one clause per field: `'<field>' <rule>`, and the unknown fields
    together (`unknown field(s): a, b`). Alternatives of one field are joined by "or"."""
    unknown: list[str] = []
    rules: dict[str, list[str]] = {}
    for error in err.errors(include_url=False):
        if error["type"] == "extra_forbidden":  # the name as sent, whatever it looks like
            unknown.append(".".join(str(part) for part in error["loc"]))
            continue
        path = _path(error["loc"])
        if not path and error["type"] in ("model_type", "dict_type"):
            return "the body must be a JSON object"
        rule = _rule(error)
        if rule not in rules.setdefault(path, []):
            rules[path].append(rule)
    clauses = [f"'{path}' {' or '.join(found)}" for path, found in rules.items()]
    if unknown:
        clauses.insert(0, f"unknown field(s): {', '.join(unknown)}")
    return "; ".join(clauses)

