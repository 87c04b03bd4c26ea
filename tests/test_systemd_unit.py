"""The systemd unit: `systemd-analyze verify` through systemd/verify.sh, and its timeouts
against alertd's defaults."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.config.runtime_sections import DaemonConfig

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd/alertd.service"


def unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(f"{key}=")]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed on this machine")
def test_systemd_analyze_verify_passes() -> None:
    result = subprocess.run(["bash", str(ROOT / "systemd/verify.sh")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: no errors, no warnings" in result.stdout
    assert "OK: self-test caught it" in result.stdout


def test_unit_is_notify_with_stop_timeout_above_the_drain_deadline() -> None:
    assert unit_values("Type") == ["notify"]
    assert unit_values("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    stop_s = int(unit_values("TimeoutStopSec")[0].removesuffix("s"))
    default_drain_s = DaemonConfig.model_fields["drain_timeout_s"].default
    assert stop_s >= default_drain_s + 10
    assert unit_values("NoNewPrivileges") == ["yes"]
    assert unit_values("ProtectSystem") == ["strict"]
    assert unit_values("CapabilityBoundingSet") == [""]
