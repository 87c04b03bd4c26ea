"""Benchmark: the resident memory of `alertd run` at idle on the default configuration (SQLite,
HTTP and SMTP on loopback, the example rules, the scheduler), against a bare process that
imports aiohttp, aiosmtpd, SQLAlchemy and APScheduler and serves an aiohttp app and an aiosmtpd
server on loopback with one scheduled job: the floor any daemon built on these libraries pays.

    .venv/bin/python bench/idle_rss.py [--settle 3]
    .venv/bin/python bench/idle_rss.py --imports [--top 25]

Each target is its own process. alertd starts twice on one state directory: the first start
migrates the empty database (that start loads alembic, once in an installation's life), the
second finds the schema current: that one is the idle figure (issue 15, item 5: at most
70 MiB). Idle means: the ready line, `--settle` seconds, one GET /healthz, one more second.
Printed: VmRSS (resident now) and VmHWM (peak) from /proc/PID/status, in MiB.

`--imports` starts alertd once more, schema current, under `-X importtime` and an import hook
that reads VmRSS around every module's execution, and prints per package what its imports
added to RSS and how long they took: where idle memory goes. A module's RSS is charged its
own execution (its own imports are charged to them); the heap grows in steps, charged to the
module that crossed one, so single modules are approximate and package sums hold to ~0.3 MiB.

Measured on this VM (2 CPUs, Python 3.11.7, glibc malloc), 2026-12-07, one run (three more
runs gave the restart 68.9-69.2 MiB):

    alertd, first start (migrates)           idle RSS   81.1 MiB   peak   81.1 MiB
    alertd, restart (schema current)         idle RSS   68.9 MiB   peak   68.9 MiB
      then one API and one console request        RSS   79.3 MiB   peak   79.3 MiB
    bare aiohttp + aiosmtpd + scheduler      idle RSS   51.3 MiB   peak   51.3 MiB
    ratio alertd/bare: 134%

Before this change (at afcb896) the restart was 80.2 MiB: the configuration was pydantic
models (pydantic 5.4 MiB, its models ~4), and the API's request models, the OpenAPI document,
the console's pages and jinja2 were loaded at start. Now the configuration is msgspec structs
(~1 MiB in all), the API's and console's handlers are imported at their first request, and
jinja2 at the first template that needs it (the example rules' are text and `{{ name }}`).
Where the 69 MiB go (`--imports`, MiB): the interpreter 11; SQLAlchemy 16.2 (core, ORM and
the SQLite dialect); aiohttp 6.9 with ssl 4.1, attrs, frozenlist, yarl and multidict 2.6;
alertd's own modules ~10 (the store and its ORM tables 2.8, the intake, tickets, rules, mail
parser, RMM clients, sync, CLI); the standard library ~6 (asyncio, email, importlib.metadata
that SQLAlchemy loads, ...); APScheduler 0.4, prometheus_client 0.35, msgspec 0.3; running
(threads, connections, the rules) ~5.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servers import start_server

ROOT = Path(__file__).resolve().parent.parent
ALERTD_READY = r"alertd ready: http=127\.0\.0\.1:(\d+)"
BARE_READY = r"bare ready: http=127\.0\.0\.1:(\d+)"


def serve_bare() -> None:
    """The floor (runs in its own process): the libraries alertd's idle needs at the least,
    an aiohttp app answering /healthz, an aiosmtpd server created in the event loop as alertd
    creates its own, and a scheduler with one interval job."""
    import asyncio

    import sqlalchemy  # noqa: F401 - imported for its memory, as alertd's storage is
    from aiohttp import web
    from aiosmtpd.smtp import SMTP
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    class Accept:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        loop = asyncio.get_running_loop()
        smtp = await loop.create_server(lambda: SMTP(Accept()), "127.0.0.1", 0)
        jobs = AsyncIOScheduler()
        jobs.add_job(asyncio.sleep, "interval", args=[0], seconds=60)
        jobs.start()
        print(f"bare ready: http=127.0.0.1:{runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        jobs.shutdown(wait=False)
        smtp.close()
        await runner.cleanup()

    asyncio.run(serve())


def serve_counted(config: Path, out: Path) -> None:
    """`alertd run` in this process with an import hook: for every module executed, the VmRSS
    it added (its own imports included) and its depth; written to `out` as JSON on exit."""
    from importlib import _bootstrap_external as loaders

    records: list[tuple[str, int, int]] = []  # (module, inclusive KiB, depth)
    depth = [0]
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024

    def rss_kib() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * page_kib

    def hook(loader: type) -> None:
        execute = loader.exec_module

        def exec_module(self: object, module: object) -> None:
            before_kib = rss_kib()
            depth[0] += 1
            try:
                execute(self, module)
            finally:
                depth[0] -= 1
                records.append((getattr(module, "__name__", "?"), rss_kib() - before_kib,
                                depth[0]))
        loader.exec_module = exec_module  # type: ignore[attr-defined]

    for loader in (loaders.SourceFileLoader, loaders.SourcelessFileLoader,
                   loaders.ExtensionFileLoader):
        hook(loader)
    sys.path.insert(0, str(ROOT))  # this checkout's alertd, as `python -m daemon` finds it
    from daemon.cli.main import main

    try:
        main(["run", "--config", str(config)])
    finally:
        out.write_text(json.dumps({"records": records, "modules": sorted(sys.modules)}))


def write_config(state: Path) -> Path:
    """The default configuration, listeners on ephemeral loopback ports."""
    state.mkdir(parents=True, exist_ok=True)
    config = state / "alertd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{state}"\n[http]\nlisten = "127.0.0.1:0"\n'
                      '[smtp]\nlisten = "127.0.0.1:0"\n')
    return config


def settle(port: int, settle_s: float) -> None:
    """Idle: `settle_s` after ready, one GET /healthz, one more second."""
    # Here, not at the top: --serve-counted runs this file, and what it imports before the
    # hook is installed is not counted (urllib.request brings ssl, http.client and email).
    import urllib.request

    time.sleep(settle_s)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        answer.read()
    time.sleep(1)


def memory_mib(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(value) / 1024
            for key, value in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE)}


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(name: str, command: list[str], log_path: Path, ready: str, settle_s: float,
            then_used: bool = False) -> float:
    """Idle RSS of the server `command` starts; `then_used`: also the RSS after one API and
    one console request (what loads at first use: pydantic's request models, the OpenAPI
    document, jinja2 and the console's pages)."""
    import urllib.request

    process, port = start_server(command, log_path, ready)
    try:
        settle(port, settle_s)
        memory = memory_mib(process.pid)
        if then_used:
            for path in ("/api/openapi.json", "/ui/signin"):  # neither needs a token
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as a:
                    a.read()
            time.sleep(1)
            used = memory_mib(process.pid)
    finally:
        stop(process)
    print(f"{name:<40} idle RSS {memory['VmRSS']:6.1f} MiB   peak {memory['VmHWM']:6.1f} MiB",
          flush=True)
    if then_used:
        print(f"{'  then one API and one console request':<40}      RSS "
              f"{used['VmRSS']:6.1f} MiB   peak {used['VmHWM']:6.1f} MiB", flush=True)
    return memory["VmRSS"]


def package_of(module: str) -> str:
    """The line a module is counted in: its top-level package; alertd's by sub-package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "daemon" else parts[0]


def import_times_us(stderr: str) -> dict[str, int]:
    """Self time of each module from `-X importtime` (stderr of the run)."""
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)", line)
        if match:
            found[match.group(2)] = found.get(match.group(2), 0) + int(match.group(1))
    return found


def show_imports(tmp: Path, settle_s: float, top: int) -> None:
    config = write_config(tmp / "state")
    out = tmp / "imports.json"
    log, err = tmp / "imports.log", tmp / "importtime.txt"
    # A first start migrates the empty database: the counted run finds the schema current.
    stop(start_server([sys.executable, "-m", "daemon", "run", "--config", str(config)],
                      tmp / "migrate.log", ALERTD_READY)[0])
    process, port = start_server([sys.executable, "-X", "importtime", __file__,
                                  "--serve-counted", str(config), str(out)], log,
                                 ALERTD_READY, stderr_path=err)
    try:
        settle(port, settle_s)
        idle_mib = memory_mib(process.pid)["VmRSS"]
    finally:
        stop(process)
    counted = json.loads(out.read_text())
    times_us = import_times_us(err.read_text())
    # Own = inclusive minus what the modules it imported added (the records are post-order).
    own_kib: dict[str, int] = {}
    child_kib = [0] * 200
    for module, inclusive_kib, depth in counted["records"]:
        own_kib[module] = own_kib.get(module, 0) + inclusive_kib - child_kib[depth + 1]
        child_kib[depth + 1] = 0
        child_kib[depth] += inclusive_kib
    packages: dict[str, list[float]] = {}
    for module in counted["modules"]:
        row = packages.setdefault(package_of(module), [0, 0.0, 0.0])
        row[0] += 1
        row[1] += own_kib.get(module, 0) / 1024
        row[2] += times_us.get(module, 0) / 1000
    print(f"alertd idle RSS {idle_mib:.1f} MiB (under the hook), {len(counted['modules'])} "
          f"modules loaded; imports added {sum(own_kib.values()) / 1024:.1f} MiB", flush=True)
    print(f"{'package':<28} {'modules':>7} {'RSS MiB':>8} {'import ms':>10}")
    for name, (count, mib, ms) in sorted(packages.items(), key=lambda item: -item[1][1])[:top]:
        print(f"{name:<28} {count:7.0f} {mib:8.2f} {ms:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds to wait after the ready line before measuring")
    parser.add_argument("--imports", action="store_true",
                        help="print what each package's imports add to idle RSS")
    parser.add_argument("--top", type=int, default=25, help="packages shown by --imports")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-counted", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare()
        return
    if args.serve_counted:
        serve_counted(*args.serve_counted)
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.imports:
            show_imports(tmp, args.settle, args.top)
            return
        print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
              f"{time.strftime('%Y-%m-%d %H:%M')}", flush=True)
        alertd = [sys.executable, "-m", "daemon", "run", "--config",
                  str(write_config(tmp / "state"))]
        measure("alertd, first start (migrates)", alertd, tmp / "first.log", ALERTD_READY,
                args.settle)
        ours = measure("alertd, restart (schema current)", alertd, tmp / "restart.log",
                       ALERTD_READY, args.settle, then_used=True)
        bare = measure("bare aiohttp + aiosmtpd + scheduler",
                       [sys.executable, __file__, "--serve-bare"], tmp / "bare.log",
                       BARE_READY, args.settle)
        print(f"ratio alertd/bare: {ours / bare:.0%}", flush=True)


if __name__ == "__main__":
    main()
