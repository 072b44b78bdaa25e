"""The Prometheus scrape config and alert rules, checked and unit-tested by promtool, and
every metric they (and the operations guide) name is one the worker exports."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO_ROOT
from tests.deploy_tools import CONFIG, run, system_tool
from worker.metrics import WorkerMetrics

PROMETHEUS = CONFIG / "prometheus"


def test_promtool_accepts_the_scrape_config_and_its_rule_file() -> None:
    result = run(system_tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_fire_when_they_should_per_promtool_unit_tests() -> None:
    tests = REPO_ROOT / "tests" / "data" / "prometheus" / "alerts_test.yml"
    result = run(system_tool("promtool"), "test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def exported_names() -> set[str]:
    metrics = WorkerMetrics()
    metrics.job_finished("q", "echo", "succeeded", 0.1)
    metrics.set_queue_depths("q", 1, 2, 3, 4, 5)
    metrics.jobs_recovered("q", requeued=1, suspects=2, blamed=1)
    metrics.suspect_trial("q")
    names = set()
    for family in text_string_to_metric_families(metrics.render().decode()):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_coroq_metric_named_in_alerts_and_docs_is_exported() -> None:
    exported = exported_names()
    for path in (PROMETHEUS / "alerts.yml", REPO_ROOT / "docs" / "operations.md"):
        named = set(re.findall(r"\bcoroq_[a-z_]+[a-z]", path.read_text()))
        assert named, path
        assert named <= exported, f"{path.name} names {sorted(named - exported)}"
