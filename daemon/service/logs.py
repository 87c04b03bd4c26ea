"""Logging to stdout for journald: plain text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# A 20-line formatter instead of a dependency: the JSON shape is ours to keep stable.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    # Neither format shows the caller's file and line, the thread or the process: skip
    # collecting them for every record (the logging HOWTO's "Optimization"). The intake logs
    # a line per input, and the caller lookup walked the stack for each one.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        # No timestamp: journald adds its own; run by hand, `--log-format json` has one.
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every SMTP command at INFO under "mail.log".
    for noisy in ("aiohttp.access", "alembic", "apscheduler.executors.default",
                  "apscheduler.scheduler", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
