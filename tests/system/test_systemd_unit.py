"""The systemd unit: `systemd-analyze verify` through systemd/verify.sh."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed on this machine")
def test_systemd_analyze_verify_passes() -> None:
    result = subprocess.run(["bash", str(ROOT / "systemd/verify.sh")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: no errors, no warnings" in result.stdout
    assert "OK: self-test caught it" in result.stdout
