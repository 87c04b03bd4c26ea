"""Benchmark: how long `GET /healthz` waits while alertd parses hostile mail (issue 14, item 3:
parsing one message must never delay it by more than 100 ms).

A real `alertd run` (SQLite, default rules) is probed every 20 ms over a fresh connection,
first idle (the bare reference: the same daemon with nothing to do), then while SMTP clients
send mail built to be expensive to parse: the 60 kB "RE + spaces" subject that froze the
daemon before, a 1 MB subject, 4 MB of unterminated HTML tags, 4 MB of tiny MIME parts,
20,000 header lines, and deeply nested comments in From. Prints the probe latencies of both
phases (p50, p99, max) and the ratio, and how long the mail took to be processed.

    .venv/bin/python bench/hostile_mail_latency.py [--rounds 3]

Measured 2026-12-06 on the 2-core python-svc machine: see docs/design.md ("Hostile mail").
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE_INTERVAL_S = 0.02


def hostile_mails() -> dict[str, bytes]:
    head = b"From: rmm@example.com\r\nTo: alerts@example.com\r\n"
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(100_000))
    return {
        "RE + 60,000 spaces": head + b"Subject: RE" + b" " * 60_000 + b"\r\n\r\nx\r\n",
        "1 MB subject": head + b"Subject: RE: " + b"RE: " * 250_000 + b"\r\n\r\nx\r\n",
        "4 MB unterminated <a": head + b"Content-Type: text/html\r\nSubject: html\r\n\r\n"
                                   + (b"<a " * 300 + b"\r\n") * 4_600,
        "4 MB of MIME parts": head + b"Subject: parts\r\nContent-Type: multipart/mixed; "
                                 b"boundary=b\r\n\r\n" + parts + b"--b--\r\n",
        "20,000 header lines": head + b"".join(b"X-H%d: v\r\n" % n for n in range(20_000))
                               + b"Subject: headers\r\n\r\nx\r\n",
        "nested From comments": b"From: " + b"(" * 5_000 + b"a@b" + b")" * 5_000
                                + b"\r\nTo: alerts@example.com\r\nSubject: c\r\n\r\nx\r\n",
    }


class Prober(threading.Thread):
    """GET /healthz every PROBE_INTERVAL_S on a new connection; each answer's seconds."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.latencies_s: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            connection.close()
            assert response.status == 200, response.status
            self.latencies_s.append(time.perf_counter() - started)
            time.sleep(PROBE_INTERVAL_S)


def probe_while(port: int, work: float | None = None, action: object = None) -> list[float]:
    prober = Prober(port)
    prober.start()
    if callable(action):
        action()
    else:
        time.sleep(work or 3.0)
    prober.stop.set()
    prober.join()
    return prober.latencies_s


def summary(latencies_s: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies_s)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"n={len(ms):4d}  p50 {statistics.median(ms):6.1f} ms  p99 {p99:6.1f} ms  "
            f"max {ms[-1]:6.1f} ms")


def wait_processed(port: int, token: str, count: int, timeout_s: float = 600) -> None:
    """Until `count` deliveries are no longer `received`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/deliveries?status=received&limit=1",
                           headers={"Authorization": f"Bearer {token}"})
        body = connection.getresponse().read()
        connection.close()
        if b'"items": []' in body:
            return
        time.sleep(0.1)
    raise TimeoutError("deliveries still received")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="times each mail is sent")
    args = parser.parse_args()
    token = "bench-token-0123456789"
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "alertd.toml"
        config.write_text(f'[daemon]\nstate_dir = "{tmp}/state"\n[api]\ntokens = ["{token}"]\n'
                          '[http]\nlisten = "127.0.0.1:0"\n[smtp]\nlisten = "127.0.0.1:0"\n'
                          "max_message_bytes = 8388608\n")
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET",)}
        daemon = subprocess.Popen([sys.executable, "-m", "daemon", "run", "--config",
                                   str(config)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            assert daemon.stdout is not None
            for line in daemon.stdout:
                if ready := re.search(r"alertd ready: http=127\.0\.0\.1:(\d+) "
                                      r"smtp=127\.0\.0\.1:(\d+)", line):
                    break
            else:
                raise SystemExit("alertd did not start")
            threading.Thread(target=lambda: [None for _ in daemon.stdout], daemon=True).start()
            http_port, smtp_port = int(ready.group(1)), int(ready.group(2))
            mails = hostile_mails()

            idle = probe_while(http_port, work=5.0)
            sent = 0
            per_kind: dict[str, list[float]] = {}

            def send(mail: bytes) -> None:
                nonlocal sent
                for _ in range(args.rounds):
                    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=120) as smtp:
                        smtp.sendmail("rmm@example.com", ["alerts@example.com"], mail)
                    sent += 1
                wait_processed(http_port, token, sent)

            started = time.perf_counter()
            for kind, mail in mails.items():
                per_kind[kind] = probe_while(http_port, action=lambda mail=mail: send(mail))
            busy_s = time.perf_counter() - started
            loaded = [x for latencies in per_kind.values() for x in latencies]
        finally:
            daemon.terminate()
            daemon.wait(30)
    print(f"alertd {sys.version.split()[0]}, {os.cpu_count()} CPUs; {sent} hostile mails "
          f"({', '.join(mails)}) sent and processed in {busy_s:.1f} s")
    print(f"  /healthz idle (reference): {summary(idle)}")
    for kind, latencies in per_kind.items():
        print(f"  /healthz while {kind:>22}: {summary(latencies)}")
    print(f"  /healthz under hostile mail: {summary(loaded)}")
    print(f"  ratio of max latency, loaded / idle: {max(loaded) / max(idle):.1f}x; "
          f"worst delay {max(loaded) * 1000:.0f} ms (goal: under 100 ms)")


if __name__ == "__main__":
    main()
