"""The rules page: the rules file in force, and a tester that shows what the rules make of a
pasted or uploaded message, the same report as `alertd rules test`. Nothing is stored."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from daemon.console.state import render
from daemon.http.app import CONTEXT
from daemon.rules.explain import explain_message

SHOWN_RULES_CHARS = 200_000


def _rules_text(ctx: Any) -> tuple[str | None, str | None]:
    """(path, text) of the rules file in force, read now (the file, as it is on disk)."""
    path = ctx.rules.rules.path
    if path is None:
        return None, None
    try:
        return str(path), path.read_text(encoding="utf-8", errors="replace")[:SHOWN_RULES_CHARS]
    except OSError as err:
        return str(path), f"(cannot read the file: {err.strerror})"


async def rules_page(request: web.Request, report: dict[str, Any] | None = None,
                     message: str = "", error: str | None = None, status: int = 200
                     ) -> web.Response:
    ctx = request.app[CONTEXT]
    path, text = await asyncio.to_thread(_rules_text, ctx)
    return render(request, "rules.html", status=status, rules=ctx.rules.rules.rules,
                  rules_path=path, text=text, report=report, message=message, error=error)


async def test_message(request: web.Request) -> web.Response:
    form = await request.post()
    upload, pasted = form.get("file"), form.get("message")
    raw: bytes | None = None
    if isinstance(upload, web.FileField) and upload.filename:
        raw = upload.file.read()
    elif isinstance(pasted, str) and pasted.strip():
        # A browser sends a textarea's line breaks as CRLF already; a pasted message keeps them.
        raw = pasted.encode("utf-8")
    if not raw:
        return await rules_page(request, error="Paste a message or choose an .eml file first.",
                                status=400)
    rules = request.app[CONTEXT].rules.rules  # once: a reload must not mix two rule sets
    report = await asyncio.to_thread(explain_message, rules, raw)
    shown = pasted if isinstance(pasted, str) else raw.decode("utf-8", "replace")
    return await rules_page(request, report=report, message=shown[:SHOWN_RULES_CHARS])
