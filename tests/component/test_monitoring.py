"""The monitoring bundle (issue 18, item 5): every alertd metric the alerting rules and the
Grafana dashboard use is one a real scrape of alertd declares, so a renamed metric cannot
leave a rule that never fires or an empty panel. (promtool checks the rules themselves:
tests/system/test_monitoring_rules.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.api_client import Api
from tests.component.test_metrics import raise_alert

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "alertd.rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
# Metric names in PromQL: alertd's own and the process collector's.
METRIC = re.compile(r"\b((?:alertd|process)_[a-z_]+)\b")


def rule_expressions() -> list[str]:
    document = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"]
            for target in panel.get("targets", [])]


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
