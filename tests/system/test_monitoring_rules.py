"""The monitoring bundle's alerting rules (issue 18, item 5) through promtool: `promtool check
rules` and the rules' own unit tests (`promtool test rules`). The metric names they use are
checked against a scrape in tests/component/test_monitoring.py.

Without promtool (Debian's `prometheus` package) these tests skip with the reason, except in
CI (CI=true), where they fail."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.browser import IN_CI
from tests.component.test_monitoring import MONITORING, RULES, rule_expressions


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool not found (Debian package prometheus)"
        if IN_CI:
            pytest.fail(f"{reason}: CI must check the rules", pytrace=False)
        pytest.skip(reason)
    return found


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in done.stdout


def test_promtool_runs_the_rules_tests() -> None:
    done = subprocess.run([promtool(), "test", "rules", "alertd.rules.test.yml"],
                          cwd=MONITORING, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
