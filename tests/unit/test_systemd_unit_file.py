"""The systemd unit file's settings and timeouts against alertd's defaults (read, not run)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from daemon.config.runtime_sections import DaemonConfig

ROOT = Path(__file__).resolve().parents[2]


UNIT = ROOT / "systemd/alertd.service"


def unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(f"{key}=")]


def test_unit_is_notify_with_stop_timeout_above_the_drain_deadline() -> None:
    assert unit_values("Type") == ["notify"]
    assert unit_values("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    stop_s = int(unit_values("TimeoutStopSec")[0].removesuffix("s"))
    default_drain_s = next(field.default for field in msgspec.structs.fields(DaemonConfig)
                           if field.name == "drain_timeout_s")
    assert stop_s >= default_drain_s + 10
    assert unit_values("NoNewPrivileges") == ["yes"]
    assert unit_values("ProtectSystem") == ["strict"]
    assert unit_values("CapabilityBoundingSet") == [""]


def test_proc_shows_processes_only() -> None:
    assert unit_values("ProcSubset") == ["pid"]


def test_the_notify_reload_drop_in_replaces_the_reload_command() -> None:
    """systemd >= 253: Type=notify-reload sends SIGHUP itself and waits for READY=1; the
    shipped ExecReload= must be emptied or systemd runs both."""
    lines = (ROOT / "systemd/notify-reload.conf").read_text().splitlines()
    settings = [line for line in lines if line and not line.startswith("#")]
    assert settings == ["[Service]", "Type=notify-reload", "ReloadSignal=SIGHUP", "ExecReload="]
