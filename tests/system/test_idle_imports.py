"""`alertd run` on a migrated database, started to ready and stopped, never imports what only
other work needs: alembic (with mako and pygments) only migrates a schema that is behind, the
IMAP reader only runs for `[[imap.accounts]]`, the API's and console's handlers load at their
first request. What the daemon imports it keeps for its whole
life (bench/idle_rss.py measures the memory), so this is checked on the real start path."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from daemon.store.database import Database
from tests.conftest import database_toml

ROOT = Path(__file__).resolve().parents[2]

# Loaded only when their work comes: a migration, an IMAP account, the first API request
# (pydantic's request models, the OpenAPI document), the first console page or a template
# that needs Jinja (the example rules' templates are text and `{{ name }}`).
# And what other commands alone need: the completion and man page generators.
NOT_AT_IDLE = ("alembic", "mako", "pygments", "imapclient", "daemon.mail.imap", "shtab",
               "argparse_manpage", "pydantic", "pydantic_core", "daemon.http.models",
               "daemon.http.openapi", "daemon.http.api", "daemon.console.tickets", "jinja2",
               "markupsafe")
# PostgreSQL's driver side, on the default SQLite.
NOT_AT_IDLE_ON_SQLITE = ("greenlet", "sqlalchemy.ext.asyncio", "sqlalchemy.dialects.postgresql",
                         "asyncpg")

# `alertd run` in a fresh interpreter; the ready line's logger asks the daemon to stop (its
# own SIGTERM handler), and once it has, the modules loaded on the way are printed.
RUN_TO_READY = """
import json, logging, os, signal, sys
from daemon.cli.main import main

class StopWhenReady(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("alertd ready"):
            os.kill(os.getpid(), signal.SIGTERM)

logging.getLogger("daemon.service.run").addHandler(StopWhenReady())
code = main(["run", "--config", sys.argv[1]])
print(json.dumps({"exit": code, "modules": sorted(sys.modules)}))
"""


def test_run_does_not_import_what_idle_does_not_need(
        db: Database, db_url: str, tmp_path: Path, write_config: Callable[[str], Path]) -> None:
    config = write_config(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                          '[http]\nlisten = "127.0.0.1:0"\n[smtp]\nlisten = "127.0.0.1:0"\n'
                          + database_toml(db_url))
    done = subprocess.run([sys.executable, "-c", RUN_TO_READY, str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "alertd ready" in done.stdout, done.stdout
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["exit"] == 0
    loaded = set(result["modules"])
    assert "aiosmtpd.smtp" in loaded and "apscheduler.schedulers.asyncio" in loaded
    unwanted = NOT_AT_IDLE + (NOT_AT_IDLE_ON_SQLITE if db_url.startswith("sqlite") else ())
    assert [m for m in sorted(loaded)
            if any(m == name or m.startswith(f"{name}.") for name in unwanted)] == []
