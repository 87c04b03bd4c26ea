"""The maintenance page: the windows in force and to come, the weekly ones, a form to set one
("from now for 4h", or from a given time), and "End now" (issue 16, rule 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from daemon.console.state import list_page, parse_id, redirect, render
from daemon.console.tickets import ACTOR
from daemon.core.clock import utcnow
from daemon.core.durations import parse_duration
from daemon.core.maintenance import Scope
from daemon.http.app import CONTEXT
from daemon.store.queries import BadFilter
from daemon.tickets.windows import MAX_REASON_CHARS, WindowNotFound, WindowRefused

MAX_VALUE_CHARS = 255


async def maintenance_page(request: web.Request, error: str | None = None, status: int = 200,
                           form: dict[str, str] | None = None) -> web.Response:
    try:
        listing = await request.app[CONTEXT].maintenance.listing(list_page(request))
    except BadFilter as err:
        listing = {"items": [], "next_before_id": None, "weekly": []}
        error, status = str(err), 400
    return render(request, "maintenance.html", status=status, listing=listing, error=error,
                  form=form or {"scope": "all", "value": "", "start": "now",
                                "duration": "2h", "reason": ""},
                  scopes=[scope.value for scope in Scope])


def _starts_at(text: str) -> datetime:
    """"now", or ISO 8601; a time without an offset is UTC (the browser's zone is unknown)."""
    if text.strip().lower() in ("", "now"):
        return utcnow()
    parsed = datetime.fromisoformat(text.strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


async def add_window(request: web.Request) -> web.Response:
    posted = await request.post()
    form = {name: value if isinstance(value := posted.get(name), str) else ""
            for name in ("scope", "value", "start", "duration", "reason")}
    problem = None
    if form["scope"] not in {scope.value for scope in Scope}:
        problem = "Choose a scope."
    elif any("\x00" in text for text in form.values()):
        problem = "The form cannot hold NUL characters."
    elif len(form["value"]) > MAX_VALUE_CHARS or len(form["reason"]) > MAX_REASON_CHARS:
        problem = (f"The value holds at most {MAX_VALUE_CHARS} characters, the reason "
                   f"{MAX_REASON_CHARS:,}.")
    if problem is not None:
        return await maintenance_page(request, problem, 400, form)
    try:
        starts_at = _starts_at(form["start"])
    except ValueError:
        return await maintenance_page(request, (
            f"Start {form['start']!r}: write \"now\" or a time such as "
            "2026-12-12T22:00+01:00 (without an offset: UTC)."), 400, form)
    try:
        seconds = parse_duration(form["duration"])
    except ValueError as err:
        return await maintenance_page(request, f"Duration: {err}.", 400, form)
    try:
        ends_at = starts_at + timedelta(seconds=seconds)
    except OverflowError:
        return await maintenance_page(request, "The window would end after the year 9999.",
                                      400, form)
    try:
        await request.app[CONTEXT].maintenance.add(
            Scope(form["scope"]), form["value"] if form["scope"] != "all" else "", starts_at,
            ends_at, form["reason"], ACTOR)
    except WindowRefused as err:
        return await maintenance_page(request, f"{str(err)[:1].upper()}{str(err)[1:]}.", 400,
                                      form)
    return redirect("/ui/maintenance")


async def end_window(request: web.Request) -> web.Response:
    raw_id = request.match_info["id"]
    window_id = parse_id(raw_id)
    if window_id is None:
        return await maintenance_page(request, f"There is no window {raw_id}.", 404)
    try:
        await request.app[CONTEXT].maintenance.end(window_id, ACTOR)
    except WindowNotFound:
        return await maintenance_page(request, f"There is no window {raw_id}.", 404)
    return redirect("/ui/maintenance")
