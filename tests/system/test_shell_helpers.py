"""Shell completion and the man page (issue 18, item 6), generated from the parser: bash
completes commands, actions and options; zsh accepts its script; man renders the page without
a warning and lists every command.

Without zsh or man the tests that need them skip with the reason, except in CI (CI=true),
where they fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import IN_CI

ROOT = Path(__file__).resolve().parents[2]


def alertd(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} not found: CI must run this test", pytrace=False)
        pytest.skip(f"{name} not found")
    return found


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "alertd.bash"
    path.write_text(alertd("completion", "bash"))
    return path


@pytest.mark.parametrize(("line", "expected"), [
    ("alertd tic", {"tickets"}),
    ("alertd tickets c", {"close"}),
    ("alertd tickets list --st", {"--status"}),
    ("alertd deliveries list --status ", {"received", "processed", "ignored", "rejected",
                                          "failed"}),
    ("alertd completion ", {"bash", "zsh"}),
    ("alertd --to", {"--token-file"}),
])
def test_bash_completes_commands_actions_and_options(bash_script: Path, line: str,
                                                     expected: set[str]) -> None:
    words = line.split(" ")
    script = (f'source "{bash_script}"\n'
              f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
              f"COMP_CWORD={len(words) - 1}\nCOMP_LINE={line!r}\nCOMP_POINT={len(line)}\n"
              "_shtab_alertd\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    done = subprocess.run([tool("bash"), "--norc", "-c", script], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert {word.strip() for word in done.stdout.split()} >= expected


def test_zsh_reads_its_completion_script(tmp_path: Path) -> None:
    path = tmp_path / "_alertd"
    path.write_text(alertd("completion", "zsh"))
    done = subprocess.run([tool("zsh"), "-n", str(path)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert path.read_text().startswith("#compdef alertd")
    assert "tickets" in path.read_text() and "--token-file" in path.read_text()


def test_the_man_page_renders_without_warnings_and_lists_every_command() -> None:
    page = alertd("man")
    done = subprocess.run([tool("man"), "--warnings", "-l", "-"], input=page,
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat"})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    rendered = done.stdout
    assert "ALERTD(1)" in rendered and "alertd - RMM alerts into tickets" in rendered
    for command in ("run", "check-config", "tickets close", "alerts trail", "deliveries replay",
                    "outbox retry", "sync", "rules test", "completion", "man"):
        assert f"COMMAND 'alertd {command}'" in rendered, command
    for variable in ("ALERTD_CONFIG", "ALERTD_URL", "ALERTD_TOKEN_FILE"):
        assert variable in rendered.split("ENVIRONMENT", 1)[1]
