"""Benchmark: HTTP intake - the Datto and Syncro webhooks and POST /api/alerts (a raise with a
new alert id on every request: delivery + alert + ticket committed before the answer) - against
a bare aiohttp handler that parses the JSON and commits one SQLite row per request by adaptive
group commit (the reference of ../shared/perf-notes.md), in the same run.

    .venv/bin/python bench/http_ingest.py [--duration 10] [--connections 50]
        [--routes datto,syncro,api] [--postgres postgresql+asyncpg://127.0.0.1/test]
        [--processes 2] [--cpus 0] [--loop-only] [--rounds 1] [--profile DIR] [--notify]

Each target is its own server process: the bare handler, then `alertd run` itself (the real
daemon with its default logging, SMTP listener and scheduler). The load comes from wrk
(`apt-get install wrk`) in another process, 2 threads, a ~1 KB body. With `--postgres`,
`--processes N` alertd processes share the database, each loaded by a wrk of its own with
`connections / N` connections; their rates are added. Prints requests/s, p50/p99 latency,
non-2xx answers, the server's CPU time per request (user + system, all its threads: steadier
than the rate on a busy machine), then the same per thread ("main" is the event loop's; for
alertd on SQLite the other busy one is the writer) with the share of the run the machine's
CPUs were idle, and its peak RSS (VmHWM). `--cpus LIST` pins alertd (taskset): the rate it
keeps on one CPU shows how much of the machine it can use. `--loop-only` adds a probe, not a
figure of alertd: the daemon with each intake group's write replaced by a 3 ms sleep,
nothing stored, so its rate is what the event loop's own work allows. `--rounds N` measures
every route N times (each round's servers start afresh) and prints per route the median
ratio and p99, their ranges, and in how many rounds p99 stayed under 50 ms: this VM's speed
swings from minute to minute. Compare ratios within one run only (../shared/perf-notes.md).

Figures (2-vCPU VM, CPython 3.11.7, SQLite 3.40.1 WAL/FULL; the bare reference's rate swung
between 10k and 18k req/s from run to run on this VM). 2026-12-07, the datto route, three
runs on the VM's slow phase (bare 10.7-12.7k): 1,664-2,007 req/s (14.5-16.8 % of bare), p99
42-48 ms, 526-638 us of CPU per request (bare 75-89). Earlier the same day, on the fast phase
(bare 14-18k): datto 2,384-2,816 req/s (14-16 %); syncro 1,872-2,224 (14-17 %); api
2,136-3,429 (12-25 %); p99 24-39 ms. Later that day, what bounds it (docs/design.md, "Fifth
round"), all three routes in one run (bare 10.0-14.5k): alertd 16 % of bare on each, the
machine's CPUs idle 41-43 % of alertd's runs (35-40 % of the bare handler's); the probe
(its event loop alone) 4,608 datto, 4,657 syncro and 5,175 api req/s: 44 %, 47 % and 36 %
of bare, at 191-216 us of CPU per request, where the loop's thread costs 258-376 us beside
the writer. Pinned to one CPU, alertd served the same rate (1,688-1,831 req/s, against
1,723-1,852 unpinned, alternating runs). That night, `--rounds 4` (bare 9.1-12.9k): median
15 % datto, 15 % syncro, 16 % api (13-18 %), p99 under 50 ms in 6 of the 12 runs.
docs/design.md ("Intake performance") has each round's figures.
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from group_commit import GroupCommitWriter
from servers import py_spy, start_server

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret-0123456789"

# Every request a new alert id: a per-run nonce, the wrk thread number and a counter (no
# collisions, also across the warm-up and the measured run, so every request opens a ticket).
# The body template's ALERT_ID is replaced by the id (a GUID for Datto, a number for Syncro).
WRK_SCRIPT = """
-- thread_id is a global: thread:set() writes the thread's globals, not a chunk local.
local counter = 0
local threads = 0
local template = [==[BODY]==]
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
function request()
  counter = counter + 1
  local id = ID_FORMAT
  local body = string.gsub(template, "ALERT_ID", id)
  return wrk.format("POST", nil, HEADERS, body)
end
"""
MESSAGE = "x" * 750
DATTO_BODY = json.dumps({
    "alert_uid": "ALERT_ID", "alert_resolved": "false", "state": SECRET,
    "alert_message": MESSAGE, "alert_priority": "High", "alert_category": "Disk Usage",
    # A device of its own per alert: each request opens a ticket (one device's alerts of one
    # category would join one ticket: issue 16, rule 2).
    "device_hostname": "PC-ALERT_ID", "site_name": "Bench Site", "platform": "merlot"})
SYNCRO_BODY = json.dumps({
    "text": "RMM Alert\nBENCH-PC\n\nLow Hd Space Trigger", "attributes": {
        "id": "ALERT_ID", "customer_id": 31000042, "computer_name": "PC-ALERT_ID",
        "resolved": False, "description": "Low Hd Space Trigger", "formatted_output": MESSAGE,
        "created_at": "2026-10-14T08:15:02.114-06:00",
        "customer": {"id": 31000042, "business_name": "Bench Customer"},
        "properties": {"trigger": "low_hd_space_trigger", "device_id": 3300777}}}
    ).replace('"ALERT_ID"', "ALERT_ID")
API_BODY = json.dumps({"source": "datto", "uid": "ALERT_ID", "action": "raise",
                       "device": "BENCH-PC", "priority": "High", "message": MESSAGE})
GUID_FORMAT = 'string.format("%08x-NONCE-4000-8000-%012x", thread_id, counter)'
NUMBER_FORMAT = 'string.format("%d", (0xNONCE * 8 + thread_id) * 100000000 + counter)'
JSON_HEADERS = '{["Content-Type"] = "application/json"}'
# route: (path, body, id format, headers)
ROUTES = {
    "datto": ("/api/notify/datto", DATTO_BODY, GUID_FORMAT, JSON_HEADERS),
    "syncro": (f"/api/notify/syncro?token={SECRET}", SYNCRO_BODY, NUMBER_FORMAT, JSON_HEADERS),
    "api": ("/api/alerts", API_BODY, GUID_FORMAT,
            '{["Content-Type"] = "application/json", ["Authorization"] = "Bearer '
            + SECRET + '"}'),
}


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
        app.router.add_post("/{path:.*}", handler)  # every route's body alike
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"bare ready: http=127.0.0.1:{runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


def start_alertd(tmp: Path, name: str, database_toml: str, root: Path = ROOT,
                 notify_port: int | None = None, cpus: str | None = None,
                 loop_only: bool = False) -> tuple[subprocess.Popen[str], int]:
    state = tmp / name
    state.mkdir()
    config = state / "alertd.toml"
    notify = (f'[[notify]]\nname = "sink"\nkind = "webhook"\n'
              f'url = "http://127.0.0.1:{notify_port}/hook"\nsecret = "{SECRET}"\n'
              'events = ["ticket.opened"]\n'
              if notify_port else "")
    config.write_text(f'[daemon]\nstate_dir = "{state}"\n[http]\nlisten = "127.0.0.1:0"\n'
                      f'[smtp]\nlisten = "127.0.0.1:0"\n[api]\ntokens = ["{SECRET}"]\n'
                      f'[datto]\nwebhook_secret = "{SECRET}"\n'
                      f'[syncro]\nwebhook_token = "{SECRET}"\n' + database_toml + notify)
    pinned = ["taskset", "-c", cpus] if cpus else []
    alertd = ([__file__, "--serve-loop-only", str(root.resolve()), "--"] if loop_only
              else ["-m", "daemon"])
    return start_server([*pinned, sys.executable, *alertd, "run", "--config", str(config)],
                        state / "log", r"alertd ready: http=127\.0\.0\.1:(\d+)", cwd=root)


def serve_sink() -> None:
    """A receiver of notifications: 204 to every POST."""
    from aiohttp import web

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook", lambda _: web.Response(status=204))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"sink ready: http=127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def serve_loop_only(root: Path, daemon_args: list[str]) -> None:
    """`alertd run` with each intake group's write replaced by a 3 ms sleep and a made-up
    outcome (a new alert and ticket): nothing is stored, everything else runs as it does
    (the route, the pipeline's answer, its log line and metrics). The rate it keeps is what
    the event loop's own work allows once it shares the interpreter with no writer. A probe
    for ../docs/design.md, not a figure of alertd."""
    sys.path.insert(0, str(root))
    from daemon.core.events import DeliveryStatus
    from daemon.intake import ingest_group
    from daemon.intake.deliveries import StoredRow
    from daemon.intake.inbound import ProcessResult
    from daemon.tickets.transitions import EventResult

    ids = itertools.count(1)

    async def no_write(self: ingest_group.IngestGroups, group: list[Any]) -> None:
        await asyncio.sleep(0.003)
        for item, future in group:
            event, new_id = item.meaning.events[0], next(ids)
            opened = EventResult(event.source, event.uid, new_id, "opened", new_id, True)
            ingest_group.settle(future, True, (StoredRow(new_id, False), ProcessResult(
                new_id, DeliveryStatus.PROCESSED, events=(opened,))))

    ingest_group.IngestGroups._write = no_write  # type: ignore[method-assign]
    from daemon.cli.main import main
    sys.exit(main(daemon_args))


def start_bare(tmp: Path) -> tuple[subprocess.Popen[str], int]:
    tmp.mkdir(exist_ok=True)
    return start_server([sys.executable, __file__, "--serve-bare", str(tmp / "bare.db")],
                        tmp / "bare.log", r"bare ready: http=127\.0\.0\.1:(\d+)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU time per thread so far: "main" (the event loop) and each other thread
    by its id (CPython does not name its threads for the OS)."""
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        name = "main" if task.name == str(pid) else f"thread {task.name}"
        fields = stat.rpartition(")")[2].split()
        used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        seconds[name] = seconds.get(name, 0.0) + used
    return seconds


def machine_cpu_ticks() -> tuple[int, int]:
    """(idle, total) clock ticks of every CPU so far (/proc/stat: idle + iowait count idle)."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


_RUNS = itertools.count()  # one nonce per wrk run


def write_script(route: str, script: Path) -> None:
    _, body, id_format, headers = ROUTES[route]
    nonce = f"{next(_RUNS):04x}"
    script.write_text(WRK_SCRIPT.replace("BODY", body).replace("ID_FORMAT", id_format)
                      .replace("HEADERS", headers).replace("NONCE", nonce))


def start_wrk(url: str, duration_s: int, connections: int, script: Path
              ) -> subprocess.Popen[str]:
    command = [shutil.which("wrk") or "wrk", "-t2", f"-c{connections}", f"-d{duration_s}s",
               "--latency", "-s", str(script), url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def wrk_result(process: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = process.communicate()
    assert process.returncode == 0, out

    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert rate, out
    return {"rate": float(rate.group(1)), "p50": latency_ms("50"), "p99": latency_ms("99"),
            "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0}


def measure(name: str, servers: list[tuple[subprocess.Popen[str], int]], route: str,
            args: argparse.Namespace, tmp: Path) -> tuple[float, float]:
    """Load each server with its own wrk (connections shared out) and stop them; prints the
    summed rate, the worst p50/p99, and CPU per request over all servers. Returns (summed
    rate in req/s, worst p99 in ms)."""
    path = ROUTES[route][0]
    connections = max(1, args.connections // len(servers))
    scripts = [tmp / f"{route}-{n}.lua" for n in range(len(servers))]
    try:
        for script in scripts:
            write_script(route, script)
        warm = [start_wrk(f"http://127.0.0.1:{port}{path}", 2, connections, script)
                for (_, port), script in zip(servers, scripts, strict=True)]
        for process in warm:  # also fills caches and the pools
            wrk_result(process)
        for script in scripts:
            write_script(route, script)
        profilers = [profile(process.pid, f"{name}-{n}", args)
                     for n, (process, _) in enumerate(servers)]
        cpu_before = sum(cpu_seconds(process.pid) for process, _ in servers)
        threads_before = thread_cpu_seconds(servers[0][0].pid)
        idle_before, total_before = machine_cpu_ticks()
        runs = [start_wrk(f"http://127.0.0.1:{port}{path}", args.duration, connections, script)
                for (_, port), script in zip(servers, scripts, strict=True)]
        results = [wrk_result(run) for run in runs]
        idle_after, total_after = machine_cpu_ticks()
        cpu_s = sum(cpu_seconds(process.pid) for process, _ in servers) - cpu_before
        threads_after = thread_cpu_seconds(servers[0][0].pid)
        for profiler in profilers:
            if profiler is not None:
                profiler.wait(60)
        rss = max(peak_rss_mib(process.pid) for process, _ in servers)
    finally:
        for process, _ in servers:
            process.send_signal(signal.SIGTERM)
        for process, _ in servers:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    rate = sum(result["rate"] for result in results)
    p50 = max(result["p50"] for result in results)
    p99 = max(result["p99"] for result in results)
    non_2xx = sum(result["non_2xx"] for result in results)
    print(f"{name:<36} {rate:8.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
          f"non-2xx {non_2xx:.0f}   CPU {cpu_s / (rate * args.duration) * 1e6:5.0f} us/req   "
          f"peak RSS {rss:6.1f} MiB", flush=True)
    per_thread = {name: threads_after[name] - threads_before.get(name, 0.0)
                  for name in threads_after}
    requests = results[0]["rate"] * args.duration
    busy = sorted(((used, name) for name, used in per_thread.items() if used > 0), reverse=True)
    idle = (idle_after - idle_before) / max(1, total_after - total_before)
    print("    CPU by thread (first server): " + ", ".join(
        f"{name} {used / requests * 1e6:.0f} us/req" for used, name in busy[:4])
        + f"; the machine's CPUs were idle {idle:.0%} of the run", flush=True)
    return rate, p99


def profile(pid: int, name: str, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """With --profile DIR: py-spy samples `pid` (every thread, native frames off) for the
    measured run and writes collapsed stacks to DIR/<name>.txt (flamegraph.pl or speedscope
    read them; `sort | head` shows the heaviest stacks)."""
    if not args.profile:
        return None
    out = args.profile / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".txt")
    # PYSPY_GIL=1: only the thread holding the interpreter lock (where the CPU goes).
    gil = ["--gil"] if os.environ.get("PYSPY_GIL") else []
    return py_spy(pid, out, "--duration", str(args.duration), *gil)


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


def measure_route(route: str, work: Path, args: argparse.Namespace, notify_port: int | None
                  ) -> tuple[float | None, float]:
    """One route: the bare handler, then alertd on SQLite (and the probe), then alertd on
    PostgreSQL, as asked; prints each and the ratios. Returns (alertd/bare on SQLite, alertd's
    p99 in ms), the ratio None without SQLite."""
    path = ROUTES[route][0].split("?")[0]
    bare = ratio = None
    p99 = float("nan")
    if args.sqlite:
        bare, _ = measure(f"bare aiohttp + group commit ({route})", [start_bare(work / route)],
                          route, args, work)
        server = start_alertd(work, f"{route}-sqlite", "", args.alertd_root, notify_port,
                              args.cpus)
        ours, p99 = measure(f"alertd {path} SQLite", [server], route, args, work)
        ratio = ours / bare
        print(f"ratio alertd/bare ({route}, SQLite): {ratio:.0%}", flush=True)
        if args.loop_only:
            server = start_alertd(work, f"{route}-loop-only", "", args.alertd_root, notify_port,
                                  args.cpus, loop_only=True)
            loop, _ = measure("  probe: its event loop alone", [server], route, args, work)
            print(f"ratio probe/bare ({route}): {loop / bare:.0%}", flush=True)
    if args.postgres:
        database = reset_postgres(args.postgres)
        servers = [start_alertd(work, f"{route}-pg-{n}", database, args.alertd_root,
                                notify_port, args.cpus)
                   for n in range(args.processes)]
        pg, _ = measure(f"alertd {path} PG x{args.processes}", servers, route, args, work)
        if bare is not None:
            print(f"ratio alertd PostgreSQL/bare SQLite ({route}): {pg / bare:.0%}", flush=True)
    return ratio, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="seconds per target")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--routes", default="datto,syncro,api",
                        help="comma-separated: " + ", ".join(ROUTES))
    parser.add_argument("--postgres", help="also run alertd on this PostgreSQL URL")
    parser.add_argument("--processes", type=int, default=1,
                        help="alertd processes sharing the PostgreSQL database")
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True,
                        help="run the bare reference and alertd on SQLite (default)")
    parser.add_argument("--alertd-root", type=Path, default=ROOT, metavar="DIR",
                        help="run the alertd of this checkout (`git worktree add DIR REV`: "
                             "an earlier revision measured the same way)")
    parser.add_argument("--cpus", metavar="LIST",
                        help="pin each alertd process to these CPUs (taskset -c LIST, e.g. 0): "
                             "the rate it keeps on one CPU shows how much of the machine it "
                             "can use")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy the servers during the measured run (pip install py-spy)")
    parser.add_argument("--notify", action="store_true",
                        help="alertd notifies a local webhook sink of every ticket opened")
    parser.add_argument("--loop-only", action="store_true",
                        help="then a probe: alertd with its intake writes replaced by a 3 ms "
                             "sleep (nothing stored): the rate its event loop alone allows")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every route; prints the median ratio and p99 per route")
    parser.add_argument("--serve-bare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-loop-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-sink", action="store_true", help=argparse.SUPPRESS)
    args, daemon_args = parser.parse_known_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    if args.serve_loop_only:
        serve_loop_only(args.serve_loop_only, [a for a in daemon_args if a != "--"])
        return
    if daemon_args:
        parser.error(f"unrecognized arguments: {' '.join(daemon_args)}")
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    if args.serve_sink:
        serve_sink()
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    routes = args.routes.split(",")
    if unknown := [route for route in routes if route not in ROUTES]:
        parser.error(f"unknown route(s) {', '.join(unknown)}: choose from {', '.join(ROUTES)}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sink = (start_server([sys.executable, __file__, "--serve-sink"], tmp / "sink.log",
                             r"sink ready: http=127\.0\.0\.1:(\d+)") if args.notify else None)
        notify_port = sink[1] if sink else None
        rounds: dict[str, list[tuple[float, float]]] = {}  # route: (ratio, alertd's p99 ms)
        try:
            print(f"wrk -t2 -c{args.connections} -d{args.duration}s, new alert id per request, "
                  f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
            for round_no in range(args.rounds):
                work = tmp / f"round-{round_no}"  # each round's servers start afresh
                work.mkdir()
                for route in routes:
                    ratio, p99 = measure_route(route, work, args, notify_port)
                    if ratio is not None:
                        rounds.setdefault(route, []).append((ratio, p99))
            if args.rounds > 1:
                for route, results in rounds.items():
                    ratios, p99s = [r for r, _ in results], [p for _, p in results]
                    print(f"{route}, {len(results)} rounds: ratio median "
                          f"{statistics.median(ratios):.0%} (range {min(ratios):.0%}-"
                          f"{max(ratios):.0%}), p99 median {statistics.median(p99s):.1f} ms "
                          f"(range {min(p99s):.1f}-{max(p99s):.1f}; under 50 ms in "
                          f"{sum(p < 50 for p in p99s)} of {len(p99s)})", flush=True)

        finally:
            if sink is not None:
                sink[0].terminate()
                sink[0].wait(10)

if __name__ == "__main__":
    main()
