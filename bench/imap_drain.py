"""Benchmark: time to drain a backlog from a real Dovecot into processed deliveries.

    .venv/bin/python bench/imap_drain.py [--messages 10000] [--batch 500]

Seeds the maildir directly (IMAP APPEND manages ~160 msg/s), starts one account reader
against a private Dovecot (tests/dovecot.py), and times from connect until every message is
a processed delivery and flagged \\Seen. Each message: FETCH BODY.PEEK[], store (commit),
parse + rules + lifecycle (commit), then STORE \\Seen per batch and the checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from common import alertd_context
from sqlalchemy import func, select

from daemon.config.mail_sections import ImapAccount
from daemon.mail.imap import AccountReader, make_sink
from daemon.store.models import Delivery
from tests.dovecot import Dovecot, dovecot_base_dir, dovecot_unavailable_reason


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    reason = dovecot_unavailable_reason()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as name, dovecot_base_dir(Path(name)) as base:
        tmp = Path(name)
        server = Dovecot(base)
        server.start()
        try:
            started = time.perf_counter()
            for n in range(args.messages):
                server.deliver((f"From: Datto RMM <rmm@example.com>\r\nMessage-ID: <b{n}@x>\r\n"
                                f"Subject: Alert on device: 192.0.2.{n % 250} - "
                                f"Alert{{{uuid.uuid4()}}}\r\n\r\nDisk usage high.\r\n"
                                ).encode())
            print(f"seeded {args.messages} messages in {time.perf_counter() - started:.1f} s")
            ctx = await alertd_context(tmp / "state")
            db = ctx.db
            account = ImapAccount(name="bench", host=server.host, port=server.port,
                                  tls="none", username=server.username,
                                  password=server.password,  # type: ignore[arg-type]
                                  batch_size=args.batch, idle=False, poll_interval_s=0.2)
            reader = AccountReader(account, make_sink(ctx.pipeline, ctx.checkpoints, ctx.metrics),
                                   asyncio.get_running_loop(), lambda kind: None)
            processed = select(func.count()).select_from(Delivery).where(
                Delivery.status == "processed")
            started = time.perf_counter()
            reader.start()
            while await db.read(lambda s: s.scalar(processed)) < args.messages:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            reader.request_stop()
            await asyncio.to_thread(reader.join, 10)
            await db.dispose()
            print(f"drained {args.messages} messages into processed deliveries in "
                  f"{elapsed:.1f} s ({args.messages / elapsed:.0f} msg/s)")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
