"""`alertd run` as a real process for the tests: private config and state, fake systemd."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import textwrap
from pathlib import Path

from sqlalchemy import func, select

from daemon.store.database import Database
from daemon.store.models import Delivery

ROOT = Path(__file__).resolve().parent.parent


class Daemon:
    """`alertd run` in a subprocess with a private state dir and a fake systemd socket."""

    def __init__(self, tmp_path: Path, config_text: str = "", watchdog_usec: int | None = None,
                 state_dir: Path | None = None):
        tmp_path.mkdir(exist_ok=True)
        self.tmp_path = tmp_path
        self.state_dir = state_dir or tmp_path / "state"
        self.config_path = tmp_path / "alertd.toml"
        self.write_config(config_text)
        self.notify_path = tmp_path / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.setblocking(False)
        self.watchdog_usec = watchdog_usec
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self.port = 0
        self.smtp_port = 0
        self._reader: asyncio.Task[None] | None = None

    def write_config(self, extra: str) -> None:
        self.config_path.write_text(
            f'[daemon]\nstate_dir = "{self.state_dir}"\ndrain_timeout_s = 5\n'
            f'[http]\nlisten = "127.0.0.1:0"\n[smtp]\nlisten = "127.0.0.1:0"\n'
            + textwrap.dedent(extra))

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "run", "--config", str(self.config_path),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read_log())
        await self.wait_log(r"alertd ready: http=127\.0\.0\.1:(\d+)", timeout=30)
        match = re.search(r"alertd ready: http=127\.0\.0\.1:(\d+) smtp=(?:127\.0\.0\.1:)?(\w+)",
                          "\n".join(self.log))
        assert match
        self.port = int(match.group(1))
        self.smtp_port = int(match.group(2)) if match.group(2).isdigit() else 0

    async def _read_log(self) -> None:
        assert self.process and self.process.stdout
        async for line in self.process.stdout:
            self.log.append(line.decode(errors="replace").rstrip())

    async def wait_log(self, pattern: str, timeout: float = 10) -> None:
        async def poll() -> None:
            while not any(re.search(pattern, line) for line in self.log):
                if self.process and self.process.returncode is not None:
                    raise AssertionError("daemon exited:\n" + "\n".join(self.log))
                await asyncio.sleep(0.05)
        await asyncio.wait_for(poll(), timeout)

    def notifications(self) -> list[str]:
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(self.notify.recv(4096).decode())
        return messages

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def generated_token(self) -> str:
        return (self.state_dir / "api-token").read_text().strip()

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process
        if self.process.returncode is None:
            self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), 30)
        if self._reader:
            await self._reader
        return code

    def close(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.kill()
        self.notify.close()


async def received_left(db: Database, wait_s: float) -> int:
    """Wait (bounded) for startup recovery to process what a crash left `received`; return
    how many are still left."""
    query = select(func.count()).select_from(Delivery).where(Delivery.status == "received")
    deadline = asyncio.get_running_loop().time() + wait_s
    while (left := await db.read(lambda s: s.scalar(query) or 0)) and \
            asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    return left
