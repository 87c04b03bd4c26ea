"""Set-up shared by the benchmarks: an alertd context on a private state directory."""

from __future__ import annotations

from pathlib import Path

from daemon.config import load_config
from daemon.service.wiring import Services, build_services
from daemon.store.database import Database

TOKEN = "bench-token-0123456789"


async def alertd_context(state_dir: Path, extra_toml: str = "", pool_size: int = 5
                         ) -> Services:
    """Config (defaults + `extra_toml`), migrated database and the wired services."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "alertd.toml"
    path.write_text(f'[daemon]\nstate_dir = "{state_dir}"\n[api]\ntokens = ["{TOKEN}"]\n'
                    + extra_toml)
    config = load_config(path, environ={})
    db = Database(config.database.url, pool_size=pool_size)
    await db.upgrade()
    return build_services(config, db)
