"""Rate limits, global concurrency and per-key limits across worker processes (DESIGN §7,
docs/scheduling.md#rate-limits-and-global-concurrency), against real workers: the limits hold
across processes, a job over a limit waits without an attempt or a slot while other tasks flow
past it, a SIGKILLed worker's permits come back, and a limiter's keys go once nothing waits."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from producer import Producer
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for
from tests.integration.helpers import run_module

# Workers that notice a lost one within about two seconds (the defaults take up to 9.5 s).
QUICK_RECOVERY = {
    "COROQ_HEARTBEAT_INTERVAL": "0.5",
    "COROQ_HEARTBEAT_TTL": "2",
    "COROQ_REAPER_INTERVAL": "0.5",
}


def records(producer: Producer, ids: list[str], timeout: float = 60) -> list[dict[str, Any]]:
    found = producer.wait(ids, timeout=timeout)
    return [found[job_id] for job_id in ids]


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most jobs running at the same time, from their records' start and end."""
    edges = sorted(
        [(float(r["started_at"]), 1) for r in runs] + [(float(r["finished_at"]), -1) for r in runs],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def most_within(times: list[float], window: float) -> int:
    """The most of the sorted `times` inside any `window` seconds."""
    most = first = 0
    for last, at in enumerate(times):
        while at - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def limiter_keys(client: redis.Redis, keys: QueueKeys) -> list[bytes]:
    found: list[bytes] = []
    for kind in ("rate", "permits", "blocked"):
        found += list(client.scan_iter(match=f"{keys.base}:{kind}:*", count=1000))
    if client.exists(keys.limited):
        found.append(keys.limited.encode())
    return found


def test_a_rate_holds_across_workers_evenly_and_other_tasks_flow_past(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    ids = [producer.push("tests.rate_limited", i) for i in range(30)]  # 20/s: 1.5 s of starts
    others = [producer.push("tests.add", i, 1) for i in range(20)]
    for _ in range(3):
        start_worker("--concurrency", "10")
    other_runs = records(producer, others)
    runs = records(producer, ids)
    starts = sorted(float(r["started_at"]) for r in runs)
    # At most 20 starts in any second, whichever worker, and no burst within it: at most 5
    # (and one that was late) in any quarter of a second.
    assert most_within(starts, 1.0) <= 21
    assert most_within(starts, 0.25) <= 6
    assert starts[-1] - starts[0] >= 29 * 0.05 * 0.95
    assert {r["attempts"] for r in runs} == {1}  # waiting counted no attempt
    # The other task's jobs, pushed after them, did not wait behind them.
    assert max(float(r["finished_at"]) for r in other_runs) < starts[-1]


def test_global_concurrency_holds_across_workers(
    producer: Producer,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    workers = [start_worker("--concurrency", "5") for _ in range(3)]
    ids = [producer.push("tests.two_at_a_time", 0.2) for _ in range(12)]
    runs = records(producer, ids)
    assert most_at_once(runs) == 2
    ran_on = {r["worker"] for r in runs}
    assert len(ran_on) >= 2, ran_on  # the limit held across workers, not inside one
    assert len(workers) == 3
    assert {r["attempts"] for r in runs} == {1}
    assert {r["status"] for r in runs} == {"succeeded"}


def test_permits_of_a_sigkilled_worker_come_back_with_its_jobs(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Three workers; the one holding both permits is killed while the others have jobs of
    the task blocked, waiting for them."""
    doomed = start_worker("--concurrency", "4", env=QUICK_RECOVERY)
    held = [producer.push("tests.two_at_a_time", 60) for _ in range(2)]
    wait_for(lambda: redis_client.zcard(keys.permits("tests.two_at_a_time")) == 2, timeout=10)
    for _ in range(2):
        start_worker("--concurrency", "4", env=QUICK_RECOVERY)
    waiting = [producer.push("tests.two_at_a_time", 0.2) for _ in range(6)]
    wait_for(lambda: redis_client.llen(keys.blocked("tests.two_at_a_time")) == 6, timeout=10)
    doomed.signal(signal.SIGKILL)
    doomed.wait()
    # Asked to stop once their worker is gone: they end when it is found lost, unstarted, so
    # only the permits they held stand between the blocked jobs and a start.
    for job_id in held:
        producer.cancel(job_id)
    # Without the permits back the blocked jobs would wait for ever.
    runs = records(producer, waiting, timeout=30)
    assert {r["status"] for r in runs} == {"succeeded"}
    assert most_at_once(runs) <= 2
    assert [producer.status(i)["status"] for i in held] == ["cancelled", "cancelled"]  # type: ignore[index]
    wait_for(lambda: limiter_keys(redis_client, keys) == [], timeout=10)


def test_per_key_limits_keep_one_tenant_from_starving_the_others(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    noisy = [producer.push("tests.per_tenant", "noisy", 0.1) for _ in range(15)]
    quiet = [producer.push("tests.per_tenant", "quiet", 0.1) for _ in range(2)]
    numbers = [producer.push("tests.per_tenant", 7, 0.1)]  # any JSON value is a key
    start_worker("--concurrency", "4")
    noisy_runs, quiet_runs = records(producer, noisy), records(producer, quiet)
    records(producer, numbers)
    assert most_at_once(noisy_runs) == 1  # one at a time per tenant
    assert most_at_once(quiet_runs) == 1
    # The quiet tenant's jobs, pushed behind the noisy backlog, ran beside it, not after it.
    noisy_ends = sorted(float(r["finished_at"]) for r in noisy_runs)
    assert max(float(r["finished_at"]) for r in quiet_runs) < noisy_ends[len(noisy_ends) // 2]
    # Nothing waits or runs: the limiters' keys are gone (the rate keys once their time passed).
    wait_for(lambda: limiter_keys(redis_client, keys) == [], timeout=5)


def test_a_job_over_its_limit_holds_no_slot(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A worker of three slots: the blocked jobs of a limited task (two running, two
    waiting for them) do not keep it from running the others."""
    start_worker("--concurrency", "3")
    slow = [producer.push("tests.two_at_a_time", 1.0) for _ in range(4)]
    wait_for(lambda: redis_client.llen(keys.blocked("tests.two_at_a_time")) == 2, timeout=10)
    quick = [producer.push("tests.add", 1, 2) for _ in range(5)]
    quick_runs = records(producer, quick, timeout=10)
    slow_runs = records(producer, slow)
    assert max(float(r["finished_at"]) for r in quick_runs) < min(
        float(r["finished_at"]) for r in slow_runs
    )


def test_bad_limits_stop_the_worker_with_exit_2(
    redis_url: str, keys: QueueKeys, tmp_path: Path
) -> None:
    env = {"COROQ_REDIS_URL": redis_url, "COROQ_QUEUES": keys.queue, "COROQ_METRICS_PORT": "0"}
    cases = [
        ("rate_limit='100/fortnight'", "rate_limit"),
        ("rate_limit='0/s'", "rate_limit"),
        ("global_concurrency=0", "global_concurrency"),
        ("global_concurrency=2.5", "global_concurrency"),
        ("limit_key='customer'", "limit_key"),  # no limit to apply per key
        ("global_concurrency=1, limit_key='nobody'", "limit_key"),  # not an argument
    ]
    for number, (options, option) in enumerate(cases):
        module = f"bad_limit_tasks_{number}"
        (tmp_path / f"{module}.py").write_text(
            "from worker import task\n\n"
            f"@task('billing.charge', {options})\n"
            "async def charge(customer_id: str) -> None: ...\n"
        )
        started = run_module(
            "worker",
            env={**env, "COROQ_TASKS": module,
                 "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
        )  # fmt: skip
        assert started.returncode == 2, (options, started.stderr)
        assert "billing.charge" in started.stderr, (options, started.stderr)
        assert option in started.stderr, (options, started.stderr)
        assert len(started.stderr.strip().splitlines()) == 1, started.stderr


@pytest.mark.parametrize("rate", ["100/s", "10/m", "1000/h", "5/10s", " 3 / 2m "])
def test_rates_read(rate: str) -> None:
    from worker.limits import parse_rate

    parsed = parse_rate(rate)
    assert parsed.count >= 1
    assert parsed.period > 0
