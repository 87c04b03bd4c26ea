"""Benchmark: POST /api/notify/datto (raise, a new alert uid each time: delivery + alert +
ticket committed before the answer) against a bare aiohttp handler that parses the JSON and
commits one SQLite row per request by adaptive group commit (the reference of
../shared/perf-notes.md), in the same run.

    .venv/bin/python bench/webhook_ingest.py [--duration 10] [--connections 50]
                                             [--postgres postgresql+asyncpg://127.0.0.1/test]
                                             [--profile DIR]

Each target is its own server process: the bare handler, then `alertd run` itself (the real
daemon with its default logging, SMTP listener and scheduler). The load comes from wrk
(`apt-get install wrk`) in another process, 2 threads, a 1 KB body; the URL carries no
secret, the body's `state` does. Prints requests/s, p50/p99 latency, non-2xx answers and the
server's CPU time per request (user + system, all its threads: steadier than the rate on a
busy machine) and its peak RSS (VmHWM). Compare ratios within one run only
(../shared/perf-notes.md).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from group_commit import GroupCommitWriter

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret-0123456789"

# Every request a new, valid GUID: a per-run nonce, the wrk thread number and a counter (no
# collisions, also across the warm-up and the measured run, so every request opens a ticket).
# ~1 KB body like the perf-notes reference.
WRK_SCRIPT = """
-- thread_id is a global: thread:set() writes the thread's globals, not a chunk local.
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
function request()
  counter = counter + 1
  local uid = string.format("%08x-NONCE-4000-8000-%012x", thread_id, counter)
  local body = '{"alert_uid":"' .. uid .. '","alert_resolved":"false","state":"SECRET",'
    .. '"alert_message":"MESSAGE","alert_priority":"High","alert_category":"Disk Usage",'
    .. '"device_hostname":"BENCH-PC","site_name":"Bench Site","platform":"merlot"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
""".replace("SECRET", SECRET).replace("MESSAGE", "x" * 750)


def serve_bare(db_path: Path) -> None:
    """The reference server (runs in its own process, ../shared/perf-notes.md): parse the
    JSON, commit one row per request by adaptive group commit (one writer thread; each commit
    takes every row that queued while the previous one ran; synchronous=FULL), answer each
    request after the commit that holds its row."""
    from aiohttp import web

    async def serve() -> None:
        writer = GroupCommitWriter(db_path)

        async def handler(request: web.Request) -> web.Response:
            raw = await request.read()
            json.loads(raw)
            await writer.commit(raw)
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/api/notify/datto", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"bare ready: http=127.0.0.1:{runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


def start_alertd(tmp: Path, name: str, database_toml: str) -> tuple[subprocess.Popen[str], int]:
    state = tmp / name
    state.mkdir()
    config = state / "alertd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{state}"\n[http]\nlisten = "127.0.0.1:0"\n'
                      f'[smtp]\nlisten = "127.0.0.1:0"\n[datto]\nwebhook_secret = "{SECRET}"\n'
                      + database_toml)
    return start([sys.executable, "-m", "daemon", "run", "--config", str(config)],
                 state / "log", r"alertd ready: http=127\.0\.0\.1:(\d+)")


def start_bare(tmp: Path) -> tuple[subprocess.Popen[str], int]:
    return start([sys.executable, __file__, "--serve-bare", str(tmp / "bare.db")],
                 tmp / "bare.log", r"bare ready: http=127\.0\.0\.1:(\d+)")


def start(command: list[str], log_path: Path, ready: str) -> tuple[subprocess.Popen[str], int]:
    """Start a server with its output in a file (as under systemd: the log costs the server a
    write, nothing more) and wait for its ready line; returns the process and its port."""
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log_file,
                                   stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(ready, log_path.read_text())
        if match:
            return process, int(match.group(1))
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n"
                               + log_path.read_text()[-2000:])
        time.sleep(0.05)
    raise RuntimeError("server did not get ready in 30 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


_RUNS = itertools.count()  # one nonce per wrk run


def wrk(url: str, duration_s: int, connections: int, script: Path) -> dict[str, float]:
    script.write_text(WRK_SCRIPT.replace("NONCE", f"{next(_RUNS):04x}"))
    command = [shutil.which("wrk") or "wrk", "-t2", f"-c{connections}", f"-d{duration_s}s",
               "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    assert rate, out
    return {"rate": float(rate.group(1)), "p50": latency_ms("50"), "p99": latency_ms("99"),
            "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
            "socket_errors": 1.0 if errors else 0.0}


def measure(name: str, process: subprocess.Popen[str], port: int, args: argparse.Namespace,
            script: Path) -> float:
    url = f"http://127.0.0.1:{port}/api/notify/datto"
    try:
        wrk(url, 2, args.connections, script)  # warm-up (also fills caches and the pool)
        profiler = profile(process.pid, name, args)
        cpu_before = cpu_seconds(process.pid)
        result = wrk(url, args.duration, args.connections, script)
        cpu_us = (cpu_seconds(process.pid) - cpu_before) / (result["rate"] * args.duration) * 1e6
        if profiler is not None:
            profiler.wait(60)
        rss = peak_rss_mib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    print(f"{name:<32} {result['rate']:8.0f} req/s   p50 {result['p50']:6.1f} ms   "
          f"p99 {result['p99']:6.1f} ms   non-2xx {result['non_2xx']:.0f}   "
          f"CPU {cpu_us:5.0f} us/req   peak RSS {rss:6.1f} MiB", flush=True)
    return result["rate"]


def profile(pid: int, name: str, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """With --profile DIR: py-spy samples `pid` (every thread, native frames off) for the
    measured run and writes collapsed stacks to DIR/<name>.txt (flamegraph.pl or speedscope
    read them; `sort | head` shows the heaviest stacks)."""
    if not args.profile:
        return None
    py_spy = Path(sys.executable).parent / "py-spy"
    args.profile.mkdir(parents=True, exist_ok=True)
    out = args.profile / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".txt")
    return subprocess.Popen([str(py_spy if py_spy.exists() else "py-spy"), "record", "--pid",
                             str(pid), "--duration", str(args.duration), "--rate", "200",
                             "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def reset_postgres(url: str) -> str:
    """A fresh schema for this run; returns the [database] TOML."""
    schema = f"alertd_bench_{os.getpid()}"
    asyncio.run(_create_schema_async(url, schema))
    return f'[database]\nurl = "{url}"\nschema = "{schema}"\n'


async def _create_schema_async(url: str, schema: str) -> None:
    import asyncpg
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await connection.execute(f"CREATE SCHEMA {schema}")
    await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="seconds per target")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--postgres", help="also run alertd on this PostgreSQL URL")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy the servers during the measured run (pip install py-spy)")
    parser.add_argument("--serve-bare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "datto.lua"
        print(f"wrk -t2 -c{args.connections} -d{args.duration}s, new alert uid per request, "
              f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
        bare = measure("bare aiohttp + group commit", *start_bare(tmp), args, script)
        ours = measure("alertd /api/notify/datto SQLite",
                       *start_alertd(tmp, "sqlite", ""), args, script)
        print(f"ratio alertd/bare (SQLite): {ours / bare:.0%}", flush=True)
        if args.postgres:
            pg = measure("alertd /api/notify/datto PG",
                         *start_alertd(tmp, "pg", reset_postgres(args.postgres)), args, script)
            print(f"ratio alertd PostgreSQL/bare SQLite: {pg / bare:.0%}", flush=True)


if __name__ == "__main__":
    main()
