"""`worker --processes N`: children serve the queue, a crashed one is restarted, a signal
stops them all, and none outlives a supervisor that was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest
import redis

from producer import Producer
from producer.envelope import build_envelope
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.integration.helpers import record
from worker.cpu_affinity import format_cpu_list
from worker.process.supervisor import child_arguments

FAST_RECOVERY = {
    "COROQ_HEARTBEAT_INTERVAL": "0.2",
    "COROQ_HEARTBEAT_TTL": "1.0",
    "COROQ_REAPER_INTERVAL": "0.2",
}


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by whatever adopted it, maybe late)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_processes_serve_a_queue_and_a_crashed_one_is_restarted(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    supervisor = start_worker(
        "--processes", "2", "--concurrency", "5", env=FAST_RECOVERY, wait=False
    )
    wait_for(lambda: len(supervisor.events("worker.started")) == 2)
    first_pids = sorted(child.pid for child in children(supervisor.process.pid))
    assert len(first_pids) == 2

    ids = producer.push_many([build_envelope("tests.nap", (0.3,), {}) for _ in range(40)])
    wait_for(lambda: all(record(redis_client, keys, job_id).get("status") for job_id in ids))
    os.kill(first_pids[0], signal.SIGKILL)  # a crash, with jobs in hand

    def all_succeeded() -> bool:
        return all(
            record(redis_client, keys, job_id).get("status") == "succeeded" for job_id in ids
        )

    wait_for(all_succeeded, timeout=60)
    workers = {record(redis_client, keys, job_id)["worker"] for job_id in ids}
    assert len(workers) >= 2  # both processes took jobs
    [exited] = supervisor.events("supervisor.child_exited")
    assert (exited["pid"], exited["exit_code"]) == (first_pids[0], -signal.SIGKILL)
    wait_for(lambda: supervisor.events("supervisor.child_restarted"))
    wait_for(lambda: len(children(supervisor.process.pid)) == 2)

    all_pids = [child.pid for child in children(supervisor.process.pid)]
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert not any(running(pid) for pid in all_pids)


def test_children_stop_when_their_supervisor_is_killed(start_worker) -> None:
    supervisor = start_worker("--processes", "2", wait=False)
    wait_for(lambda: len(supervisor.events("worker.started")) == 2)
    pids = [child.pid for child in children(supervisor.process.pid)]
    supervisor.process.kill()
    supervisor.wait()

    def gone() -> bool:
        return not any(running(pid) for pid in pids)

    wait_for(gone, timeout=30)
    assert len(supervisor.events("worker.stopped")) == 2
    assert {line["reason"] for line in supervisor.events("worker.stopped")} == {"supervisor_gone"}


def test_child_arguments_drop_the_supervisor_flag() -> None:
    assert child_arguments(["--processes", "4", "--tasks", "a", "--processes=2", "--burst"]) == [
        "--tasks",
        "a",
        "--burst",
        "--processes",
        "1",
    ]
    # The supervisor gives each child its own --cpu-affinity.
    argv = ["--cpu-affinity", "0-1", "--processes", "2", "--cpu-affinity=auto", "-q", "x"]
    assert child_arguments(argv) == ["-q", "x", "--processes", "1"]


def thread_masks(pid: int) -> set[frozenset[int]]:
    """The CPU mask of every thread of a process, as the kernel holds them."""
    return {frozenset(os.sched_getaffinity(thread.id)) for thread in psutil.Process(pid).threads()}


def test_each_child_runs_on_the_cpu_the_setting_gives_it(start_worker) -> None:
    available = os.sched_getaffinity(0)
    cpu = min(available)
    supervisor = start_worker("--processes", "2", "--cpu-affinity", str(cpu), wait=False)
    wait_for(lambda: len(supervisor.events("worker.started")) == 2)
    for child in children(supervisor.process.pid):
        assert thread_masks(child.pid) == {frozenset({cpu})}
    assert {line["cpus"] for line in supervisor.events("worker.started")} == {str(cpu)}
    assert os.sched_getaffinity(supervisor.process.pid) == available  # itself left alone
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0


def test_auto_gives_each_child_a_cpu_of_its_own_when_there_is_one_per_cpu(start_worker) -> None:
    available = os.sched_getaffinity(0)
    if len(available) > 8:
        pytest.skip("one process per CPU is too many processes for this test here")
    supervisor = start_worker("--processes", str(len(available)), wait=False)
    wait_for(lambda: len(supervisor.events("worker.started")) == len(available))
    masks = [thread_masks(child.pid) for child in children(supervisor.process.pid)]
    assert sorted(masks, key=lambda mask: min(next(iter(mask)))) == [
        {frozenset({cpu})} for cpu in sorted(available)
    ]
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0


def test_a_single_worker_is_pinned_only_when_told(start_worker) -> None:
    available = os.sched_getaffinity(0)
    left_alone = start_worker()  # auto: the kernel places a single worker
    assert thread_masks(left_alone.process.pid) == {frozenset(available)}
    cpu = max(available)
    pinned = start_worker("--cpu-affinity", str(cpu))
    assert thread_masks(pinned.process.pid) == {frozenset({cpu})}  # every thread
    [started] = pinned.events("worker.started")
    assert started["cpus"] == str(cpu)


def test_a_cpu_the_worker_may_not_use_is_one_clear_line() -> None:
    unusable = max(os.sched_getaffinity(0)) + 1
    for extra in ([], ["--processes", "2"]):
        result = subprocess.run(
            [sys.executable, "-m", "worker", "--cpu-affinity", f"0,{unusable}", *extra],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"worker: error: invalid setting cpu_affinity: CPU {unusable} is not one this "
            f"process may run on ({format_cpu_list(os.sched_getaffinity(0))})"
        )


def test_a_bad_processes_value_is_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--processes", "0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid setting processes" in result.stderr
