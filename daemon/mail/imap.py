"""IMAP intake: one thread per account reads a folder with imapclient (a blocking library).

Per message, in this order: SEARCH LARGER (is it over `max_message_bytes`?), then BODY.PEEK[]
(the message stays unseen), store it as a delivery (committed), apply it, then flag it \\Seen
or move it (processed or failed folder), then advance the checkpoint (UIDVALIDITY + last UID).
A message over `max_message_bytes` is not fetched: it is stored as a rejected delivery with
the reason and no body, and moved like a failed one. A crash anywhere repeats at most the
steps after the commit, and the repeated store is recognised as a duplicate, so every message
becomes a delivery exactly once; a restart resumes after the checkpoint, so nothing is
skipped, even mail an admin already opened. A backlog goes in batches of `batch_size`, each
through these steps in UID order; while the main loop stores and applies one batch, the thread
fetches the next (only fetches: it stays unseen and unstored until its turn).

The connection is a loop: connect, log in, drain, then IDLE (re-issued every 10 minutes,
well inside the 29 minutes of RFC 2177) or poll; any error closes the connection and retries
with jittered exponential backoff. A refused login is logged once, clearly, and retried
slowly. All socket operations have short timeouts so a stop request is noticed within
seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import select
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from daemon.config.mail_sections import ImapAccount
from daemon.core.clock import Clock, utcnow
from daemon.core.events import Channel, DeliveryStatus
from daemon.intake.inbound import Inbound
from daemon.intake.pipeline import Pipeline
from daemon.mail.parse import dedupe_key
from daemon.metrics import ChannelHealth, Metrics
from daemon.store.checkpoints import ImapCheckpoints

log = logging.getLogger(__name__)

T = TypeVar("T")
IDLE_RENEW_S = 600.0  # RFC 2177: servers may drop an IDLE after 30 minutes
LOGIN_RETRY_S = 300.0
BACKOFF_MAX_S = 300.0
STORE_TIMEOUT_S = 120.0  # longest wait for the main loop (a batch stored and applied)


@dataclass(frozen=True)
class FetchedMessage:
    account: str
    folder: str
    uidvalidity: int
    uid: int
    raw: bytes
    rejected_reason: str | None = None  # set (and `raw` empty) when it was not fetched


@dataclass(frozen=True)
class ImapSink:
    """What an account thread needs from the rest of alertd (async, run on the main loop).

    `store(messages)` stores and applies a batch and returns each delivery's status
    (processed / ignored / failed / received; rejected for one not fetched); `checkpoint` /
    `save_checkpoint` read and advance (uidvalidity, last uid) for an account's folder.
    """

    store: Callable[[list[FetchedMessage]], Coroutine[Any, Any, list[str]]]
    checkpoint: Callable[[str, str], Coroutine[Any, Any, tuple[int, int] | None]]
    save_checkpoint: Callable[[str, str, int, int], Coroutine[Any, Any, None]]


class AccountReader:
    """The thread that reads one account; `stop()` ends it within about timeout_s. Each error
    is reported to `on_error(kind)` and recorded in `health` (channel `imap:<account>`)."""

    def __init__(self, account: ImapAccount, sink: ImapSink,
                 loop: asyncio.AbstractEventLoop, on_error: Callable[[str], None],
                 health: ChannelHealth | None = None):
        self.account = account
        self._sink = sink
        self._loop = loop
        self._on_error = on_error
        self._health = health
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"imap-{account.name}")
        self.connected = threading.Event()
        self._login_failures = 0
        self._progressed = False  # the checkpoint advanced during the current session

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        """Wait for the thread; call it off the event loop (the thread may need the loop)."""
        self._thread.join(timeout_s)

    # --- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._session()
                failures = 0
            except LoginError as err:
                self._login_failures += 1
                if self._login_failures == 1:  # once, clearly; then quietly and slowly
                    log.error("imap %s: login refused for user %r on %s:%s: %s; retrying "
                              "every %.0f s", self.account.name, self.account.username,
                              self.account.host, self.account.effective_port,
                              _server_text(err), LOGIN_RETRY_S)
                self._report("login", f"login refused for user {self.account.username!r}: "
                                      f"{_server_text(err)}")
                self._stop.wait(LOGIN_RETRY_S * random.uniform(0.9, 1.1))
                continue
            except Exception as err:  # connection lost, server restart, protocol error
                # Only a session that moved the checkpoint starts the backoff afresh: one that
                # fails on the same batch every time must slow down, not hammer the server.
                failures = 1 if self._progressed else failures + 1
                self._progressed = False
                delay_s = min(BACKOFF_MAX_S, 2 ** min(failures, 9)) * random.uniform(0.5, 1.0)
                log.warning("imap %s: %s: %s; reconnecting in %.1f s", self.account.name,
                            type(err).__name__, err, delay_s)
                self._report(type(err).__name__, f"{type(err).__name__}: {err}")
                self._stop.wait(delay_s)
            finally:
                self.connected.clear()

    def _report(self, kind: str, message: str) -> None:
        self._on_error(kind)
        if self._health is not None:
            self._health.record_error(f"imap:{self.account.name}", message)

    def _connect(self) -> IMAPClient:
        account = self.account
        context = None
        if account.tls != "none":
            context = ssl.create_default_context(cafile=account.ca_file)
            if not account.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        client = IMAPClient(account.host, port=account.effective_port,
                            ssl=account.tls == "implicit", ssl_context=context,
                            timeout=account.timeout_s)
        try:
            if account.tls == "starttls":
                client.starttls(context)
            client.login(account.username, account.password.get_secret_value())
        except BaseException:
            _close(client)
            raise
        if self._login_failures:
            log.info("imap %s: login works again", account.name)
            self._login_failures = 0
        return client

    def _session(self) -> None:
        client = self._connect()
        try:
            folder = self.account.folder
            for extra in (self.account.processed_folder, self.account.failed_folder):
                if extra and not client.folder_exists(extra):
                    client.create_folder(extra)
            status = client.select_folder(folder)
            uidvalidity = int(status[b"UIDVALIDITY"])
            self.connected.set()
            log.info("imap %s: connected to %s:%s, folder %r", self.account.name,
                     self.account.host, self.account.effective_port, folder)
            can_idle = self.account.idle and client.has_capability("IDLE")
            while not self._stop.is_set():
                while self._drain(client, folder, uidvalidity):
                    if self._stop.is_set():
                        return
                if can_idle:
                    self._idle(client)
                else:
                    self._stop.wait(self.account.poll_interval_s)
                    client.noop()  # also notices a dead connection
        finally:
            _close(client)

    def _idle(self, client: IMAPClient) -> None:
        """Wait for new mail, for the renewal deadline, or for a stop request."""
        client.idle()
        renew_at = _now() + IDLE_RENEW_S
        empty_reads = 0
        try:
            while not self._stop.is_set() and _now() < renew_at:
                # Short waits so stop requests are noticed. imapclient's idle_check() hides
                # EOF (it returns no responses), so readiness is checked here: a socket that
                # keeps reporting data while yielding none has been closed by the server.
                readable, _, _ = select.select([client.socket()], [], [], 1.0)
                if not readable:
                    continue
                responses = client.idle_check(timeout=0)
                if not responses:
                    empty_reads += 1  # a TLS record without data can do this once or twice
                    if empty_reads >= 3:
                        raise ConnectionError("the server closed the connection during IDLE")
                    continue
                empty_reads = 0
                if any(r[0] == b"BYE" for r in responses if r):
                    raise ConnectionError(f"the server said BYE: {responses}")
                if any(r[1] in (b"EXISTS", b"RECENT") for r in responses if len(r) > 1):
                    break
        finally:
            with contextlib.suppress(Exception):  # a dead connection cannot end IDLE
                client.idle_done()

    def _drain(self, client: IMAPClient, folder: str, uidvalidity: int) -> bool:
        """Handle the messages after the checkpoint, batch by batch; True when some were
        handled (more may have come meanwhile)."""
        account = self.account.name
        saved = self._call(self._sink.checkpoint(account, folder))
        last_uid = saved[1] if saved and saved[0] == uidvalidity else 0
        if saved and saved[0] != uidvalidity:
            # The folder was recreated: every UID changed. Read it all again; messages
            # already stored are recognised by their Message-ID (or bytes) and not repeated.
            log.warning("imap %s: UIDVALIDITY of %r changed (%s -> %s); rescanning",
                        account, folder, saved[0], uidvalidity)
        # "n:*" always includes the highest UID, even below n (RFC 3501 6.4.8): filter.
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        size = self.account.batch_size
        batches = [uids[start:start + size] for start in range(0, len(uids), size)]
        if not batches:
            return False
        # Three stages overlap: while the main loop stores and applies batch n, this thread
        # fetches batch n + 1, then, once n is stored, starts storing n + 1 before it flags n
        # and advances the checkpoint past it. Flags and checkpoint still advance batch by
        # batch, in UID order, each only after its batch is committed.
        messages = self._fetch(client, folder, uidvalidity, batches[0])
        stored = asyncio.run_coroutine_threadsafe(self._sink.store(messages), self._loop)
        for index, batch in enumerate(batches):
            following: list[FetchedMessage] | None = None
            following_stored: Future[list[str]] | None = None
            try:
                if index + 1 < len(batches) and not self._stop.is_set():
                    following = self._fetch(client, folder, uidvalidity, batches[index + 1])
                statuses = stored.result(timeout=STORE_TIMEOUT_S)
                if following is not None:
                    following_stored = asyncio.run_coroutine_threadsafe(
                        self._sink.store(following), self._loop)
                self._settle(client, folder, uidvalidity, batch, messages, statuses)
            except BaseException:
                # Let running stores finish first: a reconnect must not store the same
                # batch while its store is still running.
                for running in (stored, following_stored):
                    if running is not None:
                        with contextlib.suppress(Exception):
                            running.result(timeout=STORE_TIMEOUT_S)
                raise
            if following is None or following_stored is None:  # both set, or neither
                break
            messages, stored = following, following_stored
        return True

    def _settle(self, client: IMAPClient, folder: str, uidvalidity: int, batch: list[int],
                messages: list[FetchedMessage], statuses: list[str]) -> None:
        """Flag or move a stored batch by its deliveries' statuses, then advance the
        checkpoint past it."""
        account = self.account.name
        processed: list[int] = []
        failed: list[int] = []
        for message, status in zip(messages, statuses, strict=True):
            (failed if status in ("failed", "rejected") else processed).append(message.uid)
        # Failed mail goes to failed_folder, or stays as it is (unread, for a human to see);
        # the checkpoint keeps it from being read again either way.
        if failed and self.account.failed_folder:
            _move(client, failed, self.account.failed_folder)
        if processed and self.account.processed_folder:
            _move(client, processed, self.account.processed_folder)
        elif processed:
            # SILENT: no FETCH response per message to read back (RFC 3501 6.4.6).
            client.add_flags(processed, [b"\\Seen"], silent=True)
        self._call(self._sink.save_checkpoint(account, folder, uidvalidity, batch[-1]))
        self._progressed = True
        log.info("imap %s: %d message(s) stored from %r (uid %s..%s)", account, len(batch),
                 folder, batch[0], batch[-1])

    def _fetch(self, client: IMAPClient, folder: str, uidvalidity: int, batch: list[int]
               ) -> list[FetchedMessage]:
        """The batch's messages in UID order; those over `max_message_bytes` without their
        body (a hostile or broken one must not fill memory), those expunged meanwhile left
        out."""
        limit_bytes = self.account.max_message_bytes
        # One SEARCH names those over the limit (LARGER: RFC822.SIZE above n, RFC 3501 6.4.4),
        # rather than a FETCH RFC822.SIZE response to read for every message; only theirs
        # are fetched, for the reason.
        large = set(client.search(["UID", f"{batch[0]}:{batch[-1]}", "LARGER",
                                   str(limit_bytes)])).intersection(batch)
        sizes = {uid: int(data[b"RFC822.SIZE"])
                 for uid, data in client.fetch(sorted(large), ["RFC822.SIZE"]).items()
                 if b"RFC822.SIZE" in data} if large else {}
        small = [uid for uid in batch if uid not in large]
        bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
        messages = []
        for uid in batch:
            size_bytes = sizes.get(uid)
            if size_bytes is not None and size_bytes > limit_bytes:
                reason = (f"message of {size_bytes} bytes is over max_message_bytes "
                          f"({limit_bytes}); not fetched")
                log.warning("imap %s: uid %s in %r: %s", self.account.name, uid, folder,
                            reason)
                messages.append(FetchedMessage(self.account.name, folder, uidvalidity, uid,
                                               b"", reason))
            elif b"BODY[]" in bodies.get(uid, {}):
                messages.append(FetchedMessage(self.account.name, folder, uidvalidity, uid,
                                               bodies[uid][b"BODY[]"]))
        return messages

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the main loop and wait for it (bounded, so stop is noticed)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(
            timeout=STORE_TIMEOUT_S)


def _move(client: IMAPClient, uids: list[int], folder: str) -> None:
    """MOVE (RFC 6851), or COPY + \\Deleted (+ UID EXPUNGE) on servers without it."""
    if client.has_capability("MOVE"):
        client.move(uids, folder)
        return
    client.copy(uids, folder)
    client.delete_messages(uids)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)  # only ours, not what a human marked deleted
    # Without UIDPLUS an EXPUNGE would also remove what a human marked deleted: leave ours
    # marked \\Deleted for the next expunge (the checkpoint keeps alertd from rereading them).


def _close(client: IMAPClient) -> None:
    """Cleanup never raises: the connection may already be gone."""
    try:
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception as err:
            log.debug("imap: closing a dead connection: %s", err)


def _server_text(err: Exception) -> str:
    text = str(err)
    return text.removeprefix("b'").removesuffix("'") if text else type(err).__name__


_now = time.monotonic


def make_sink(pipeline: Pipeline, checkpoints: ImapCheckpoints, metrics: Metrics,
              clock: Clock = utcnow) -> ImapSink:
    """The sink that ingests fetched mail through the pipeline and keeps checkpoints."""

    async def store(messages: list[FetchedMessage]) -> list[str]:
        """Ingest a batch, applied in UID order; each message's delivery status. One not
        fetched is stored `rejected` with its reason (it has no Message-ID or bytes to
        recognise it by: its place in the folder names it)."""
        ingested = await pipeline.ingest(*(Inbound(
            channel=Channel.IMAP,
            dedupe_key=(f"unfetched:{m.account}:{m.folder}:{m.uidvalidity}:{m.uid}"
                        if m.rejected_reason else dedupe_key(m.raw)),
            payload=m.raw, content_type="message/rfc822", rejected_reason=m.rejected_reason,
            meta={"account": m.account, "folder": m.folder, "uidvalidity": m.uidvalidity,
                  "uid": m.uid}) for m in messages))
        for account, count in Counter(message.account for message in messages).items():
            metrics.imap_fetched.labels(account).inc(count)
        # A duplicate (stored before a crash) reports the status it has now.
        return [DeliveryStatus.REJECTED.value if message.rejected_reason
                else (result.status or DeliveryStatus.RECEIVED).value
                for message, result in zip(messages, ingested, strict=True)]

    async def save_checkpoint(account: str, folder: str, uidvalidity: int, last_uid: int
                              ) -> None:
        await checkpoints.save(account, folder, uidvalidity, last_uid, clock())

    return ImapSink(store, checkpoints.get, save_checkpoint)
