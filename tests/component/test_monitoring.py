"""The monitoring bundle (issue 18, item 5): the alerting rules pass `promtool check rules`
and their own `promtool test rules`, and every alertd metric the rules and the Grafana
dashboard use is one a real scrape of alertd declares, so a renamed metric cannot leave a
rule that never fires.

Without promtool (Debian's `prometheus` package) the promtool tests skip with the reason,
except in CI (CI=true), where they fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.api_client import Api
from tests.browser import IN_CI
from tests.component.test_metrics import raise_alert

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "alertd.rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
# Metric names in PromQL: alertd's own and the process collector's.
METRIC = re.compile(r"\b((?:alertd|process)_[a-z_]+)\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool not found (Debian package prometheus)"
        if IN_CI:
            pytest.fail(f"{reason}: CI must check the rules", pytrace=False)
        pytest.skip(reason)
    return found


def rule_expressions() -> list[str]:
    document = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"]
            for target in panel.get("targets", [])]


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


async def test_the_rules_and_the_dashboard_use_only_metrics_alertd_exports(app: Api) -> None:
    await raise_alert(app, "monitoring-1")
    response = await app.client.get("/metrics")
    declared = set()
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", await response.text(), re.MULTILINE):
        name, kind = match.groups()
        declared |= ({f"{name}_bucket", f"{name}_count", f"{name}_sum"}
                     if kind == "histogram" else {name})
    used = {name for expr in rule_expressions() + dashboard_expressions()
            for name in METRIC.findall(expr)}
    assert len(used) > 15  # the expressions were found at all
    assert used - declared == set()
