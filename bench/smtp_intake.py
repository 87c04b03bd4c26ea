"""Benchmark: SMTP messages/s stored durably (250 after the commit), 1 KB messages, with 1, 10
and 50 concurrent clients, against a bare aiosmtpd handler that only commits the raw bytes to
SQLite by adaptive group commit (synchronous=FULL; bench/group_commit.py, the reference of
../shared/perf-notes.md), measured in the same run. Clients run in separate processes, many
messages per connection.

    .venv/bin/python bench/smtp_intake.py [--messages 3000] [--clients 1,10,50]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import smtplib
import tempfile
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP
from common import alertd_context
from group_commit import GroupCommitWriter
from sqlalchemy import text

from daemon.intake.worker import DeliveryWorker
from daemon.mail.smtp import SmtpHandler, start_smtp_server
from daemon.store.database import Database

BODY = "x" * 900  # with the headers: ~1 KB on the wire


def client(port: int, count: int, worker: int, start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for n in range(count):
            smtp.sendmail("rmm@example.com", ["alerts@example.com"], (
                f"From: rmm@example.com\r\nTo: alerts@example.com\r\n"
                f"Message-ID: <{worker}-{n}-{start_at}@bench.example>\r\n"
                f"Subject: Alert on device: 192.0.2.1 - bench {worker}/{n}\r\n\r\n{BODY}\r\n"
            ).encode())


def run_clients(port: int, clients: int, total: int) -> float:
    """Send `total` messages over `clients` connections; wall seconds for all of them."""
    per_client = max(1, total // clients)
    # Spawned interpreters need a moment to start; the clock starts when all have.
    start_at = time.time() + 2.0 + 0.2 * clients
    spawn = multiprocessing.get_context("spawn")  # not fork: this process runs a loop
    processes = [spawn.Process(target=client, args=(port, per_client, w, start_at))
                 for w in range(clients)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        assert process.exitcode == 0
    return time.time() - start_at, per_client * clients  # type: ignore[return-value]


class BareHandler:
    """Stores the raw message and answers 250 after its commit (group commit)."""

    def __init__(self, path: Path):
        self._writer = GroupCommitWriter(path)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await self._writer.commit(envelope.original_content)
        return "250 OK"


async def serve_bare(path: Path) -> asyncio.Server:
    handler = BareHandler(path)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(handler, loop=loop), "127.0.0.1", 0)


async def serve_alertd(tmp: Path) -> tuple[asyncio.Server, Database, DeliveryWorker]:
    # All clients come from 127.0.0.1: the per-client session cap (default 10) is lifted.
    ctx = await alertd_context(tmp, '[smtp]\nlisten = "127.0.0.1:0"\n'
                                    'max_sessions_per_client = 100\n')
    config, db = ctx.config, ctx.db
    # The worker is not started: this measures intake (250 after the commit); processing
    # follows asynchronously and is measured by bench/api_ingest.py's lifecycle path.
    worker = ctx.worker
    server = await start_smtp_server(
        SmtpHandler(ctx.pipeline, config.smtp, ctx.metrics), config.smtp)
    return server, db, worker


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--clients", default="1,10,50")
    args = parser.parse_args()
    print(f"{args.messages} messages of ~1 KB per run, clients in separate processes")
    print(f"{'clients':>7}  {'bare msg/s':>10}  {'alertd msg/s':>12}  ratio")
    for clients in (int(c) for c in args.clients.split(",")):
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            bare = await serve_bare(tmp / "bare.db")
            port = bare.sockets[0].getsockname()[1]
            seconds, sent = await asyncio.to_thread(run_clients, port, clients, args.messages)
            bare_rate = sent / seconds
            bare.close()
            server, db, _ = await serve_alertd(tmp / "alertd")
            port = server.sockets[0].getsockname()[1]
            seconds, sent = await asyncio.to_thread(run_clients, port, clients, args.messages)
            rate = sent / seconds
            server.close()
            stored = await db.read(lambda s: s.execute(text("SELECT count(*) FROM deliveries"))
                                   .scalar())
            await db.dispose()
            assert stored == sent, (stored, sent)
            print(f"{clients:>7}  {bare_rate:>10.0f}  {rate:>12.0f}  {rate / bare_rate:.0%}")


if __name__ == "__main__":
    asyncio.run(main())
