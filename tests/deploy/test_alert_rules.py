"""The alert rules: checked by promtool, on metrics the project exports, the same in k8s."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import ragstream.api.metrics
import ragstream.consumers.metrics  # noqa: F401 (registers the metrics)
from ragstream.monitor.logic import AlertKind

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
PROMETHEUS_RULE = ROOT / "k8s" / "components" / "alerts" / "prometheusrule.yaml"
PROMQL_WORDS = {"max", "by", "delta", "increase", "sum", "rate", "without", "on", "and", "or"}


@pytest.fixture(scope="module")
def promtool() -> str:
    """Built once by deploy/prometheus/promtool.sh (CI's install phase runs it first)."""
    found = subprocess.run(
        ["bash", str(ROOT / "deploy" / "prometheus" / "promtool.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert found.returncode == 0, found.stderr[-2000:]
    return found.stdout.strip().splitlines()[-1]


def _rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules_file_and_the_prometheus_rule(
    promtool: str, tmp_path: Path
) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout, checked.stdout
    spec = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]
    extracted = tmp_path / "from-k8s.yaml"
    extracted.write_text(yaml.safe_dump(spec))
    again = subprocess.run(
        [promtool, "check", "rules", str(extracted)], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout + again.stderr


def test_promtool_refuses_a_broken_expression(promtool: str, tmp_path: Path) -> None:
    """The checker really parses PromQL: the test above could fail."""
    broken = yaml.safe_load(RULES.read_text())
    broken["groups"][0]["rules"][0]["expr"] = "max by (stage) (ragstream_stage_stalled == 1"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True)
    assert checked.returncode != 0


def test_the_prometheus_rule_carries_the_rules_file() -> None:
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_every_alert_is_covered_on_metrics_the_project_exports() -> None:
    exported = set()
    for metric in REGISTRY.collect():
        exported.add(metric.name)
        exported.update(sample.name for sample in metric.samples)
        if metric.type == "counter":
            exported.add(metric.name + "_total")
    rules = _rules(yaml.safe_load(RULES.read_text())["groups"])
    for rule in rules:
        expr = re.sub(r"\{[^}]*\}|\[[^]]*\]|\"[^\"]*\"", "", rule["expr"])
        names = {n for n in re.findall(r"[a-z_][a-z0-9_]*", expr) if n not in PROMQL_WORDS}
        names -= {"stage", "kind", "partition"}
        assert names and names <= exported, (rule["alert"], names - exported)
        for kind in re.findall(r'kind="([a-z_]+)"', rule["expr"]):
            assert kind in {k.value for k in AlertKind}, (rule["alert"], kind)
    assert {r["alert"] for r in rules} == {
        "RagstreamStageStalled",
        "RagstreamConsumerStalled",
        "RagstreamDLQGrowing",
        "RagstreamSLAExceeded",
        "RagstreamImpossibleTimestamp",
        "RagstreamDependencyDown",
    }
