"""The tickets pages: the list with its filters, one ticket with its timeline, and the two
agent actions (add a note, close), through the same `AgentActions` as the API."""

from __future__ import annotations

from aiohttp import web

from daemon.console.state import list_page, parse_id, redirect, render
from daemon.core.lifecycle import TicketAlreadyClosed
from daemon.http.app import CONTEXT
from daemon.store.queries import BadFilter
from daemon.store.timeline import alert_timeline
from daemon.tickets.statements import MAX_NOTE_CHARS
from daemon.tickets.transitions import TicketNotFound

ACTOR = "agent:console"  # sessions open with a shared API token: no person's name to use
def _ticket_id(request: web.Request) -> int | None:
    return parse_id(request.match_info["id"])


FILTERS = ("status", "source", "customer_id", "site_id", "q", "no_customer")


def _filters(request: web.Request) -> dict[str, str | None]:
    return {name: request.query.get(name) or None for name in FILTERS}


async def tickets_page(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    filters = _filters(request)
    error = None
    try:
        listing = await ctx.queries.tickets(list_page(request), **filters)
    except BadFilter as err:
        listing, error = {"items": [], "next_before_id": None}, str(err)
    return render(request, "tickets.html", status=400 if error else 200, listing=listing,
                  filters=filters, error=error)


async def ticket_page(request: web.Request, error: str | None = None, status: int = 200
                      ) -> web.Response:
    ctx = request.app[CONTEXT]
    ticket_id = _ticket_id(request)
    ticket = await ctx.queries.ticket(ticket_id) if ticket_id is not None else None
    if ticket is None:
        return render(request, "error.html", status=404, title="Not found",
                      message=f"There is no ticket {request.match_info['id']}.")
    timeline = (await alert_timeline(ctx.db, [alert["id"] for alert in ticket["alerts"]])
                if ticket["alerts"] else {"trail": [], "deliveries": [], "outbox": []})
    return render(request, "ticket.html", status=status, ticket=ticket, timeline=timeline,
                  uids={alert["id"]: alert["uid"] for alert in ticket["alerts"]},
                  error=error, max_note_chars=MAX_NOTE_CHARS)


def _note_problem(note: str) -> str | None:
    """Why a note cannot be stored as typed, or None (the API's NoteBody rules)."""
    if "\x00" in note:  # PostgreSQL's text columns cannot hold it
        return "A note cannot hold NUL characters."
    if len(note) > MAX_NOTE_CHARS:
        return f"A note holds at most {MAX_NOTE_CHARS:,} characters."
    return None


async def add_note(request: web.Request) -> web.Response:
    form = await request.post()
    note = form.get("note")
    ticket_id = _ticket_id(request)
    if ticket_id is None:
        return await ticket_page(request)  # its 404
    if not isinstance(note, str) or not note.strip():
        return await ticket_page(request, "Write a note first.", 400)
    if problem := _note_problem(note):
        return await ticket_page(request, problem, 400)
    try:
        await request.app[CONTEXT].agent.add_note(ticket_id, ACTOR, note)
    except TicketNotFound:
        return await ticket_page(request)
    return redirect(f"/ui/tickets/{ticket_id}")


async def close_ticket(request: web.Request) -> web.Response:
    form = await request.post()
    note = form.get("note")
    ticket_id = _ticket_id(request)
    if ticket_id is None:
        return await ticket_page(request)
    if isinstance(note, str) and (problem := _note_problem(note)):
        return await ticket_page(request, problem, 400)
    try:
        await request.app[CONTEXT].agent.close(
            ticket_id, ACTOR, note.strip() if isinstance(note, str) and note.strip() else None)
    except TicketNotFound:
        return await ticket_page(request)
    except TicketAlreadyClosed:
        return await ticket_page(request, "This ticket was closed already.", 409)
    return redirect(f"/ui/tickets/{ticket_id}")
