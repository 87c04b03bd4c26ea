"""Starting a benchmark's server process: the daemon or a bare reference (stdlib only, so a
benchmark that measures its own imports can use it)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_server(command: list[str], log_path: Path, ready: str, *, cwd: Path = ROOT,
                 stderr_path: Path | None = None, timeout_s: float = 60
                 ) -> tuple[subprocess.Popen[str], int]:
    """Start a server with its output in a file (as under systemd: the log costs the server a
    write, nothing more; stderr in its own file with `stderr_path`) and wait for its ready
    line, whose first group is the port; returns the process and the port."""
    with contextlib.ExitStack() as files:
        log_file = files.enter_context(log_path.open("w"))
        stderr = files.enter_context(stderr_path.open("w")) if stderr_path else subprocess.STDOUT
        process = subprocess.Popen(command, cwd=cwd, stdout=log_file, stderr=stderr, text=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(ready, log_path.read_text())
        if match:
            return process, int(match.group(1))
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n"
                               + log_path.read_text()[-2000:])
        time.sleep(0.05)
    raise RuntimeError(f"server did not get ready in {timeout_s:.0f} s")


def py_spy(pid: int, out: Path, *options: str) -> subprocess.Popen[bytes]:
    """py-spy (the venv's, else the PATH's) sampling `pid` at 200 Hz into `out` as collapsed
    stacks (flamegraph.pl or speedscope read them); `options` add to `py-spy record`."""
    binary = Path(sys.executable).parent / "py-spy"
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(binary if binary.exists() else "py-spy"), "record", "--pid",
                             str(pid), "--rate", "200", "--format", "raw", "--output",
                             str(out), *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
