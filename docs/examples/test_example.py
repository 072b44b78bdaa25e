"""The example of docs/testing.md: push, drain, assert; no daemon, no sleeps."""

import pytest
from producer import AsyncProducer, Producer
from worker.testing import InProcessWorker


def test_a_job_runs_and_its_result_is_recorded(
    coroq_producer: Producer, coroq_worker: InProcessWorker
) -> None:
    job_id = coroq_producer.push("orders.total", prices=[10.0, 5.5], discount=0.1)

    records = coroq_worker.drain()

    assert records[job_id]["status"] == "succeeded"
    assert records[job_id]["result"] == 13.95


def test_a_job_that_keeps_failing_ends_dead_after_its_retries(
    coroq_producer: Producer, coroq_worker: InProcessWorker
) -> None:
    job_id = coroq_producer.push("orders.charge", "flaky-7", 12.5)

    records = coroq_worker.drain(delayed=True)  # the retries too, without their backoff

    assert records[job_id]["status"] == "dead"
    assert records[job_id]["attempts"] == 3
    assert "ConnectionError" in records[job_id]["error"]


def test_a_job_pushed_for_later_waits_for_its_time(
    coroq_producer: Producer, coroq_worker: InProcessWorker
) -> None:
    job_id = coroq_producer.push("orders.charge", "A-1", 12.5, _delay=3600)

    assert coroq_worker.drain() == {}  # not due yet: it did not run
    assert coroq_worker.drain(delayed=True)[job_id]["result"] == {"order": "A-1", "charged": 12.5}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # AsyncProducer runs on asyncio


@pytest.mark.anyio
async def test_an_async_test_awaits_its_drain(
    coroq_async_producer: AsyncProducer, coroq_worker: InProcessWorker
) -> None:
    first = await coroq_async_producer.push("orders.total", [1.0, 2.0])
    second = await coroq_async_producer.push("orders.charge", "A-2", 0)

    records = await coroq_worker.adrain()

    assert records[first]["result"] == 3.0
    assert records[second]["status"] == "dead"  # Fail: no retry
    assert records[second]["error"] == "Fail: order A-2: nothing to charge"
