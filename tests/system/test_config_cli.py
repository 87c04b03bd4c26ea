"""`alertd check-config` as a process: every error with file and line, secrets never echoed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_check_config_cli_prints_every_error_and_fails(write_config: Callable[..., Path]) -> None:
    path = write_config("""\
        [http]
        listen = 8080
        [api]
        tokens = ["s3cr3t-token-0123456"]
        colour = "blue"
        """)
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}:2: http.listen: expected a string 'host:port'" in result.stderr
    assert f"{path}:5: api.colour: unknown key" in result.stderr
    assert "2 configuration error(s)" in result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout


def test_check_config_cli_syntax_error(write_config: Callable[..., Path]) -> None:
    path = write_config("[http\nlisten = 1\n")
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}:1: TOML syntax error" in result.stderr


def test_check_config_cli_ok_on_the_shipped_example() -> None:
    example = Path(__file__).resolve().parents[2] / "alertd.example.toml"
    result = run_cli("check-config", "--config", str(example))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
