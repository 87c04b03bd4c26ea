"""Benchmark: SMTP messages/s stored durably (250 after the commit), 1 KB messages, with 1, 10
and 50 concurrent clients, against a bare aiosmtpd handler that only commits the raw bytes to
SQLite by adaptive group commit (synchronous=FULL; bench/group_commit.py, the reference of
../shared/perf-notes.md), measured in the same run.

    .venv/bin/python bench/smtp_intake.py [--messages 3000] [--clients 1,10,50] [--rounds 3]
                                          [--profile DIR]

How a run is timed: the client processes (spawned, smtplib, many messages per connection)
start, connect, say EHLO, send one warm-up message each and wait on a barrier; the clock runs
from the barrier to the last 250. Every client sends `--messages / clients` messages, the same
count to both servers. Each round measures the bare server and alertd (each first in turn),
each on a fresh database; the medians of the rounds are printed, with each round's ratio
(compare ratios taken in one run only: ../shared/perf-notes.md), and the CPU time the server
process used per message (steadier than msg/s on a shared machine).

Both servers run in this process, logging configured as `alertd run` does it (INFO, aiosmtpd's
per-command lines off) into a file: alertd's one line per stored delivery costs what it costs
under systemd. alertd's delivery worker is not started: this measures intake; processing
follows asynchronously (bench/http_ingest.py measures the lifecycle path).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import smtplib
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only the standard library at the top (bench/servers.py is nothing else): every spawned
# client imports this module again, and 50 imports of alertd (~1 s of CPU each) would compete
# with the servers. The servers' imports are in the functions that run them.
from servers import py_spy

if TYPE_CHECKING:
    from group_commit import GroupCommitWriter

BODY = "x" * 900  # with the headers: ~1 KB on the wire
WARM_UP_MESSAGES = 1  # per client, before the barrier: session set-up is not measured
BARRIER_TIMEOUT_S = 120.0  # 50 spawned interpreters on 2 busy cores start in a few seconds

# A server under test: started on a fresh state directory, it answers its port and a
# coroutine that stops it and returns how many messages it stored.
Serve = Callable[[Path], Awaitable[tuple[int, Callable[[], Awaitable[int]]]]]


def message(worker: int, n: int, nonce: str) -> bytes:
    return (f"From: rmm@example.com\r\nTo: alerts@example.com\r\n"
            f"Message-ID: <{worker}-{n}-{nonce}@bench.example>\r\n"
            f"Subject: Alert on device: 192.0.2.1 - bench {worker}/{n}\r\n\r\n{BODY}\r\n"
            ).encode()


def client(port: int, count: int, worker: int, nonce: str, ready: Any, done: Any) -> None:
    """One sending process: connect, warm up, wait for all others, then send `count`
    messages; puts (first send, last 250) on `done`. `time.perf_counter` is CLOCK_MONOTONIC
    on Linux: one clock for every process of the machine."""
    messages = [message(worker, n, nonce) for n in range(WARM_UP_MESSAGES + count)]
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo()
        for raw in messages[:WARM_UP_MESSAGES]:
            smtp.sendmail("rmm@example.com", ["alerts@example.com"], raw)
        ready.wait(BARRIER_TIMEOUT_S)
        started = time.perf_counter()
        for raw in messages[WARM_UP_MESSAGES:]:
            smtp.sendmail("rmm@example.com", ["alerts@example.com"], raw)
        done.put((started, time.perf_counter()))


def run_clients(port: int, clients: int, per_client: int, profile_to: Path | None
                ) -> tuple[float, float]:
    """Seconds from the barrier (every client connected and warmed up) to the last 250, and
    the CPU seconds this process (the server under test, all its threads) used meanwhile."""
    spawn = multiprocessing.get_context("spawn")  # not fork: this process runs a loop
    ready = spawn.Barrier(clients + 1)  # and this thread, to start the profiler in time
    done = spawn.Queue()
    nonce = uuid.uuid4().hex
    processes = [spawn.Process(target=client, args=(port, per_client, w, nonce, ready, done))
                 for w in range(clients)]
    for process in processes:
        process.start()
    profiler = None
    try:
        if profile_to is not None:
            profiler = start_profiler(profile_to)
        ready.wait(BARRIER_TIMEOUT_S)
        cpu_s = time.process_time()
        spans = [done.get(timeout=600) for _ in processes]
        cpu_s = time.process_time() - cpu_s
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output and exits
            profiler.wait(60)
        for process in processes:
            process.join(60)
    assert all(process.exitcode == 0 for process in processes)
    return max(end for _, end in spans) - min(start for start, _ in spans), cpu_s


def start_profiler(out: Path) -> subprocess.Popen[bytes]:
    """py-spy samples this process (the server under test, all threads; py-spy leaves idle
    ones out as well as it can tell) from the barrier on and writes collapsed stacks to `out`
    (flamegraph.pl or speedscope read them)."""
    profiler = py_spy(os.getpid(), out)
    time.sleep(0.5)  # attached before the clock runs
    return profiler


class BareHandler:
    """Stores the raw message and answers 250 after its commit (group commit)."""

    def __init__(self, writer: GroupCommitWriter):
        self._writer = writer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await self._writer.commit(envelope.original_content)
        return "250 OK"


async def serve_bare(tmp: Path) -> tuple[int, Callable[[], Awaitable[int]]]:
    from aiosmtpd.smtp import SMTP
    from group_commit import GroupCommitWriter

    writer = GroupCommitWriter(tmp / "bare.db")
    handler = BareHandler(writer)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, loop=loop), "127.0.0.1", 0)

    async def stop() -> int:
        server.close()
        await asyncio.to_thread(writer.close)
        return writer.count()

    return server.sockets[0].getsockname()[1], stop


async def serve_alertd(tmp: Path) -> tuple[int, Callable[[], Awaitable[int]]]:
    from common import alertd_context
    from sqlalchemy import text

    from daemon.mail.smtp import SmtpHandler, start_smtp_server

    # All clients come from 127.0.0.1: the per-client session cap (default 10) is lifted.
    ctx = await alertd_context(tmp / "alertd", '[smtp]\nlisten = "127.0.0.1:0"\n'
                                              'max_sessions_per_client = 100\n')
    server = await start_smtp_server(
        SmtpHandler(ctx.pipeline, ctx.config.smtp, ctx.metrics), ctx.config.smtp)

    async def stop() -> int:
        server.close()
        stored = await ctx.db.read(lambda s: s.execute(text("SELECT count(*) FROM deliveries"))
                                   .scalar())
        await ctx.db.dispose()
        return int(stored or 0)

    return server.sockets[0].getsockname()[1], stop


async def measure(serve: Serve, clients: int, per_client: int, profile_to: Path | None = None
                  ) -> tuple[float, float]:
    """Messages/s of one server on a fresh state directory, and its CPU µs per message."""
    with tempfile.TemporaryDirectory() as name:
        port, stop = await serve(Path(name))
        try:
            seconds, cpu_s = await asyncio.to_thread(run_clients, port, clients, per_client,
                                                     profile_to)
        finally:
            stored = await stop()
        assert stored == clients * (WARM_UP_MESSAGES + per_client), stored
        sent = clients * per_client
        return sent / seconds, cpu_s / sent * 1e6


async def main() -> None:
    from daemon.service.logs import setup_logging

    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000, help="per server and round")
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy each server in an extra round, before the measured ones")
    args = parser.parse_args()
    log_path = Path(tempfile.gettempdir()) / f"smtp_intake-{os.getpid()}.log"
    with log_path.open("w") as log_file:
        setup_logging()
        logging.getLogger().handlers[0].setStream(log_file)  # type: ignore[attr-defined]
        print(f"{args.messages} messages of ~1 KB per server and round, clients in separate "
              f"processes, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}",
              flush=True)
        print("msg/s: median of the rounds; ratio: median of the rounds' ratios; server CPU: "
              "µs of this process's CPU time (all threads) per message, the clients' not "
              "counted", flush=True)
        print(f"{'clients':>7}  {'bare msg/s':>10}  {'alertd msg/s':>12}  ratio  "
              f"{'bare CPU':>8}  {'alertd CPU':>10}  (each round's ratio)", flush=True)
        for clients in (int(c) for c in args.clients.split(",")):
            per_client = max(1, args.messages // clients)
            if args.profile:  # py-spy slows what it samples: this round is not counted
                await measure(serve_bare, clients, per_client,
                              args.profile / f"bare-{clients}.txt")
                await measure(serve_alertd, clients, per_client,
                              args.profile / f"alertd-{clients}.txt")
            bare, ours = [], []
            for round_ in range(args.rounds):  # in turn first, against drifting load
                order = [(serve_bare, bare), (serve_alertd, ours)][::1 - 2 * (round_ % 2)]
                for serve, results in order:
                    results.append(await measure(serve, clients, per_client))
            ratios = [o[0] / b[0] for b, o in zip(bare, ours, strict=True)]
            bare_rate, rate = (statistics.median(r for r, _ in runs) for runs in (bare, ours))
            bare_cpu, cpu = (statistics.median(c for _, c in runs) for runs in (bare, ours))
            print(f"{clients:>7}  {bare_rate:>10.0f}  {rate:>12.0f}  "
                  f"{statistics.median(ratios):>5.0%}  {bare_cpu:>8.0f}  {cpu:>10.0f}  "
                  f"({' '.join(f'{r:.0%}' for r in ratios)})", flush=True)
    log_path.unlink()


if __name__ == "__main__":
    asyncio.run(main())
