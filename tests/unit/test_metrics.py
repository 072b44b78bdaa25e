"""WorkerMetrics, read back through Prometheus' own text parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker.metrics import WorkerMetrics


def samples(metrics: WorkerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def test_job_outcomes_are_counted_by_queue_task_and_outcome() -> None:
    metrics = WorkerMetrics(process_metrics=False)
    metrics.job_finished("emails", "email.send", "succeeded", 0.2)
    metrics.job_finished("emails", "email.send", "succeeded", 0.3)
    metrics.job_finished("emails", "email.send", "retried", 1.5)
    metrics.job_finished("emails", "email.send", "dead", None)  # never started: no duration
    labels = {"queue": "emails", "task": "email.send"}
    assert value(metrics, "coroq_jobs_total", **labels, outcome="succeeded") == 2
    assert value(metrics, "coroq_jobs_total", **labels, outcome="retried") == 1
    assert value(metrics, "coroq_jobs_total", **labels, outcome="dead") == 1
    assert value(metrics, "coroq_job_duration_seconds_count", **labels) == 3
    assert value(metrics, "coroq_job_duration_seconds_sum", **labels) == pytest.approx(2.0)
    assert value(metrics, "coroq_job_duration_seconds_bucket", **labels, le="0.25") == 1


def test_unknown_outcomes_are_refused() -> None:
    with pytest.raises(ValueError, match="outcome"):
        WorkerMetrics(process_metrics=False).job_finished("q", "echo", "exploded", 1.0)


def test_tasks_outside_the_registry_share_one_label() -> None:
    metrics = WorkerMetrics(known_tasks=["echo"], process_metrics=False)
    metrics.job_finished("q", "no.such.task", "dead", None)
    metrics.job_finished("q", None, "dead", None)
    metrics.job_finished("q", "echo", "requeued", 4.0)
    assert value(metrics, "coroq_jobs_total", queue="q", task="unknown", outcome="dead") == 2
    assert value(metrics, "coroq_jobs_total", queue="q", task="echo", outcome="requeued") == 1


def test_in_flight_and_loop_lag_are_read_from_their_sources_at_each_scrape() -> None:
    metrics = WorkerMetrics(process_metrics=False)
    in_flight = [3]
    metrics.set_in_flight_source(lambda: in_flight[0])
    metrics.set_loop_lag(0.25)
    assert value(metrics, "coroq_jobs_in_flight") == 3
    assert value(metrics, "coroq_event_loop_lag_seconds") == 0.25
    in_flight[0] = 7
    metrics.set_loop_lag_source(lambda: 1.5)
    assert value(metrics, "coroq_jobs_in_flight") == 7
    assert value(metrics, "coroq_event_loop_lag_seconds") == 1.5


def test_queue_depths_and_reconnects() -> None:
    metrics = WorkerMetrics(process_metrics=False)
    metrics.set_queue_depths("default", ready=5, delayed=2, processing=1, dead=9)
    metrics.redis_reconnect()
    metrics.redis_reconnect()
    for state, expected in {"ready": 5, "delayed": 2, "processing": 1, "dead": 9}.items():
        assert value(metrics, "coroq_queue_depth", queue="default", state=state) == expected
    assert value(metrics, "coroq_redis_reconnects_total") == 2


def test_recoveries_by_verdict_suspect_trials_and_the_suspects_depth() -> None:
    metrics = WorkerMetrics(process_metrics=False)
    metrics.jobs_recovered("q", requeued=2, suspects=5, blamed=1)
    metrics.jobs_recovered("q", requeued=0, suspects=3, blamed=0)
    metrics.suspect_trial("q")
    metrics.set_queue_depths("q", 0, 0, 0, 0, suspects=7)
    recovered = {"requeued": 2, "suspect": 8, "blamed": 1}
    for verdict, expected in recovered.items():
        assert value(metrics, "coroq_jobs_recovered_total", queue="q", verdict=verdict) == expected
    assert value(metrics, "coroq_suspect_trials_total", queue="q") == 1
    assert value(metrics, "coroq_queue_depth", queue="q", state="suspects") == 7


def test_each_instance_has_its_own_registry() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()
    first.redis_reconnect()
    assert value(first, "coroq_redis_reconnects_total") == 1
    assert value(second, "coroq_redis_reconnects_total") == 0
    assert any(name == "process_resident_memory_bytes" for name, _ in samples(first))
