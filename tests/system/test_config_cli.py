"""`alertd check-config` as a process: every error with file and line, secrets never echoed."""

from __future__ import annotations

import argparse
import json
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


def test_syntax_only_reads_no_secret(write_config: Callable[..., Path], tmp_path: Path) -> None:
    """On a machine without the secrets (CI, a config repository), the file still checks."""
    path = write_config(f"""\
        [api]
        token_file = "{tmp_path / 'absent-token'}"
        [datto]
        api_key = "key"
        api_secret_file = "{tmp_path / 'absent-secret'}"
        webhook_secret_env = "ALERTD_TEST_UNSET_SECRET"
        """)
    full = run_cli("check-config", "--config", str(path), env={"PATH": "/usr/bin"})
    assert full.returncode == 2 and "datto.api_secret_file: cannot read" in full.stderr
    syntax = run_cli("check-config", "--config", str(path), "--syntax-only",
                     env={"PATH": "/usr/bin"})
    assert syntax.returncode == 0, syntax.stderr
    assert "syntax only: no secret was read" in syntax.stdout
    broken = write_config("[http]\nlisten = 8080\n", name="broken.toml")
    still = run_cli("check-config", "--config", str(broken), "--syntax-only")
    assert still.returncode == 2 and f"{broken}:2: http.listen" in still.stderr


def test_check_config_json(write_config: Callable[..., Path]) -> None:
    path = write_config("[http]\nlisten = 8080\n[api]\ncolour = 1\n")
    failed = run_cli("check-config", "--config", str(path), "--json")
    assert failed.returncode == 2 and failed.stderr == ""
    errors = json.loads(failed.stdout)["errors"]
    assert [(e["file"], e["line"], e["key"]) for e in errors] == [
        (str(path), 2, "http.listen"), (str(path), 4, "api.colour")]
    example = Path(__file__).resolve().parents[2] / "alertd.example.toml"
    ok = json.loads(run_cli("check-config", "--config", str(example), "--json").stdout)
    assert ok["ok"] is True and ok["rule_count"] > 0 and ok["secrets_read"] is True


def test_every_command_but_run_takes_json() -> None:
    from daemon.cli.main import build_parser

    def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...]
               ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
        subs = [action for action in parser._actions
                if isinstance(action, argparse._SubParsersAction)]
        if not subs:
            return [(path, parser)]
        return [leaf for name, child in subs[0].choices.items()
                for leaf in leaves(child, (*path, name))]
    found = leaves(build_parser(), ())
    assert len(found) > 25
    without = [" ".join(path) for path, parser in found
               if "--json" not in parser._option_string_actions]
    # The daemon (its log has --log-format json), and the two that print a script and a page.
    assert without == ["run", "completion", "man"]
