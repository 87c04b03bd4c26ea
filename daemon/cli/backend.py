"""Where the CLI's data commands get their answers: the database on this machine (`Local`),
or a running alertd's HTTP API from any machine (`Remote`: `--url` and `--token-file`, or
`ALERTD_URL` and `ALERTD_TOKEN_FILE`).

Both answer with the same records, because the API's answers are the store's records
(`Queries`), and raise the same errors, so a command prints the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from daemon.cli.common import (
    CliError,
    Handler,
    Invocation,
    RemoteChoice,
    UsageError,
    run_async,
    with_db,
)
from daemon.cli.output import show
from daemon.config import Config
from daemon.config.base import LOOPBACK_HOSTS
from daemon.core.clock import utcnow
from daemon.core.lifecycle import TicketAlreadyClosed
from daemon.http.submissions import result_body
from daemon.intake.deliveries import ReplayRefused
from daemon.metrics import Metrics
from daemon.rmm.outbox import DEAD, DROPPED, PENDING, OutboxRefused, change_outbox_row
from daemon.rules.email_interpreter import RulesHolder
from daemon.rules.load import load_rules
from daemon.service.wiring import build_pipeline
from daemon.store.database import Database
from daemon.store.queries import Page, Queries
from daemon.store.timeline import alert_trail
from daemon.tickets.agent import AgentActions
from daemon.tickets.notices import Notices
from daemon.tickets.transitions import TicketNotFound

Record = dict[str, Any]


class Backend(Protocol):
    """What the data commands ask; listings are `{"items": [...], "next_before_id": n}`."""

    async def listing(self, kind: str, page: Page, filters: Mapping[str, Any]) -> Record:
        """kind: tickets, alerts, deliveries, outbox, sync_runs."""

    async def record(self, kind: str, record_id: int) -> Record | None:
        """kind: ticket, alert, delivery, alert_trail; None when there is none."""

    async def close_ticket(self, ticket_id: int, actor: str, note: str | None) -> Record:
        """`{"alerts_resolved": [...], "outbox_ids": [...]}`; raises TicketNotFound,
        TicketAlreadyClosed."""

    async def add_note(self, ticket_id: int, actor: str, text: str) -> int:
        """The new note's id; raises TicketNotFound, ValueError (empty)."""

    async def replay(self, delivery_id: int) -> Record:
        """As POST /api/deliveries/{id}/replay answers; raises LookupError, ReplayRefused."""

    async def change_outbox(self, row_id: int, action: str) -> None:
        """action: retry or drop; raises LookupError, OutboxRefused."""


class Local:
    """The configured database, opened by this process."""

    def __init__(self, db: Database, config: Config):
        self._db = db
        self._config = config
        self._queries = Queries(db)

    async def listing(self, kind: str, page: Page, filters: Mapping[str, Any]) -> Record:
        result: Record = await getattr(self._queries, kind)(page, **filters)
        return result

    async def record(self, kind: str, record_id: int) -> Record | None:
        if kind == "alert_trail":
            return await alert_trail(self._db, record_id)
        found: Record | None = await getattr(self._queries, kind)(record_id)
        return found

    def _agent(self) -> AgentActions:
        # A CLI close queues the upstream resolve and its notifications; a running daemon's
        # outbox sends them (at its next look, `[outbox] interval_s`).
        return AgentActions(self._db, Metrics(), notices=Notices(self._config.notify))

    async def close_ticket(self, ticket_id: int, actor: str, note: str | None) -> Record:
        return (await self._agent().close(ticket_id, f"agent:{actor}", note)).closing()

    async def add_note(self, ticket_id: int, actor: str, text: str) -> int:
        return await self._agent().add_note(ticket_id, f"agent:{actor}", text)

    async def replay(self, delivery_id: int) -> Record:
        config = self._config
        pipeline = build_pipeline(config, self._db, Metrics(),
                                  RulesHolder(load_rules(config.rules.path)))
        result = await pipeline.replay(delivery_id)
        if result is None:
            return result_body(delivery_id, False, None, None)
        return result_body(delivery_id, False, result.status, result.error, result.events)

    async def change_outbox(self, row_id: int, action: str) -> None:
        await change_outbox_row(self._db, row_id, (DEAD, PENDING),
                                PENDING if action == "retry" else DROPPED, utcnow())


# The API's path of each kind of listing and record.
_PATHS = {"tickets": "/api/tickets", "alerts": "/api/alerts", "deliveries": "/api/deliveries",
          "outbox": "/api/outbox", "sync_runs": "/api/sync/runs", "ticket": "/api/tickets/{}",
          "alert": "/api/alerts/{}", "delivery": "/api/deliveries/{}",
          "alert_trail": "/api/alerts/{}/trail"}
TIMEOUT_S = 60.0  # a replay or a rules test of a large message takes a while
MAX_TOKEN_FILE_BYTES = 4096  # an API token is one short line
# An answer of alertd's is a page of at most 1,000 records: a few MB. Past this, no alertd.
MAX_ANSWER_BYTES = 64 << 20


@dataclass(frozen=True)
class RemoteTarget:
    url: str  # "https://alertd.example:8080", no trailing slash
    token: str
    token_file: Path


def remote_target(url: str, token_file: str | None) -> RemoteTarget:
    """The daemon to ask, from `--url`/`ALERTD_URL` and `--token-file`/`ALERTD_TOKEN_FILE`;
    raises UsageError with what is wrong. Warns on stderr when the token would cross a
    network unencrypted."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is no number raises here, not at the first call)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or any(
            ord(c) < 0x21 or ord(c) > 0x7e for c in url):
        raise UsageError(f"--url {url!r}: give the daemon's address, as http(s)://HOST:PORT")
    if parts.username is not None or parts.password is not None or parts.query or \
            parts.fragment:
        # A password in the URL would be printed in every message that names it.
        raise UsageError("--url: give only http(s)://HOST:PORT[/PATH]; the API token comes "
                         "from --token-file")
    if not token_file:
        raise UsageError("--url needs --token-file FILE (or ALERTD_TOKEN_FILE): a file "
                         "holding an API token of that alertd ([api] tokens)")
    path = Path(token_file)
    try:
        with path.open("rb") as file:  # bounded: a wrong path may name a device or a log
            token = file.read(MAX_TOKEN_FILE_BYTES + 1).decode("ascii", "replace").strip()
    except OSError as err:
        raise UsageError(f"--token-file {path}: cannot read it ({err.strerror or err})"
                         ) from None
    if not token or len(token) > MAX_TOKEN_FILE_BYTES or any(
            ord(c) < 0x21 or ord(c) > 0x7e for c in token):
        raise UsageError(f"--token-file {path}: holds no API token (one line of printable "
                         "ASCII)")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        show(f"alertd: warning: http:// sends the API token unencrypted to {parts.hostname}; "
             "use the https:// address of its reverse proxy, or an SSH tunnel", err=True)
    return RemoteTarget(url.rstrip("/"), token, path)


class Remote:
    """A running alertd, through its HTTP API with an API token."""

    def __init__(self, target: RemoteTarget, session: aiohttp.ClientSession):
        self._target = target
        self._session = session

    async def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                    body: Any = None) -> tuple[int, Any]:
        """(status, JSON answer) of a 2xx or 404/409; raises CliError for anything else."""
        url = self._target.url + path
        try:
            async with self._session.request(
                    method, url, params={k: str(v).lower() if isinstance(v, bool) else str(v)
                                         for k, v in (params or {}).items() if v is not None},
                    json=body, headers={"Authorization": f"Bearer {self._target.token}"},
                    # alertd never redirects: a redirect is a wrong URL, and must not carry
                    # the token elsewhere.
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as response:
                body = await response.content.read(MAX_ANSWER_BYTES + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CliError(f"{self._target.url}: cannot reach alertd "
                           f"({type(err).__name__}: {err or 'timed out'})") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise CliError(f"{url}: answered more than {MAX_ANSWER_BYTES >> 20} MiB "
                           "(is this alertd?)")
        text = body.decode("utf-8", "replace")
        try:
            answer = json.loads(text)
        except ValueError:
            raise CliError(f"{url}: answered {status} with no JSON (is this alertd?)") from None
        if status == 401:
            raise CliError(f"{self._target.url} refused the token in {self._target.token_file} "
                           "(401): is it one of that alertd's [api] tokens?")
        if status < 300 or status in (404, 409):
            return status, answer
        detail = answer.get("detail") if isinstance(answer, dict) else None
        raise CliError(f"{method} {path}: {status} {detail or text[:200]}")

    async def listing(self, kind: str, page: Page, filters: Mapping[str, Any]) -> Record:
        status, answer = await self._call("GET", _PATHS[kind], params={
            **filters, "limit": page.limit, "before_id": page.before_id})
        if status != 200:
            raise CliError(f"{_PATHS[kind]}: {status} {answer.get('detail')}")
        result: Record = answer
        return result

    async def record(self, kind: str, record_id: int) -> Record | None:
        status, answer = await self._call("GET", _PATHS[kind].format(record_id))
        return answer if status == 200 else None

    async def close_ticket(self, ticket_id: int, actor: str, note: str | None) -> Record:
        status, answer = await self._call("POST", f"/api/tickets/{ticket_id}/close",
                                          body={"note": note or "", "actor": actor})
        if status == 404:
            raise TicketNotFound(f"ticket {ticket_id} not found")
        if status == 409:
            raise TicketAlreadyClosed(ticket_id)
        # An alertd older than this CLI does not tell what the close did.
        closing: Record = answer.get("closing") or {"alerts_resolved": [], "outbox_ids": []}
        return closing

    async def add_note(self, ticket_id: int, actor: str, text: str) -> int:
        if not text.strip():
            raise ValueError("a note needs a body")
        status, answer = await self._call("POST", f"/api/tickets/{ticket_id}/notes",
                                          body={"body": text, "actor": actor})
        if status == 404:
            raise TicketNotFound(f"ticket {ticket_id} not found")
        note_id: int = answer["notes"][-1]["id"]
        return note_id

    async def replay(self, delivery_id: int) -> Record:
        status, answer = await self._call("POST", f"/api/deliveries/{delivery_id}/replay")
        if status == 404:
            raise LookupError(f"delivery {delivery_id} not found")
        if status == 409:
            raise ReplayRefused(answer.get("detail", "refused"))
        result: Record = answer
        return result

    async def change_outbox(self, row_id: int, action: str) -> None:
        status, answer = await self._call("POST", f"/api/outbox/{row_id}/{action}")
        if status == 404:
            raise LookupError(f"outbox row {row_id} not found")
        if status == 409:
            raise OutboxRefused(answer.get("detail", "refused"))

    async def rules_test(self, message: bytes) -> Record:
        """What the daemon's rules in force make of `message` (POST /api/rules/test)."""
        # The API takes the message as JSON text: bytes that are not UTF-8 arrive replaced
        # (U+FFFD); mail is 7-bit ASCII with encoded words but for rare 8-bit bodies.
        _, answer = await self._call("POST", "/api/rules/test", body={
            "message": message.decode("utf-8", "replace")})
        result: Record = answer
        return result


def backend_command(run: Callable[[Invocation, Backend], Awaitable[int]]) -> Handler:
    """The handler of a command that runs on this machine's database or, with `--url`, on a
    running alertd's API: `run(invocation, backend)`."""
    async def remote(inv: Invocation, choice: RemoteChoice) -> int:
        target = remote_target(choice.url, choice.token_file)
        async with aiohttp.ClientSession() as session:
            return await run(inv, Remote(target, session))

    def handle(inv: Invocation) -> int:
        if inv.remote is not None:
            return run_async(remote(inv, inv.remote))
        return run_async(with_db(inv.config, lambda db: run(inv, Local(db, inv.config))))
    return handle
