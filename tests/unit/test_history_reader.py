"""Reading a queue's throughput history (producer/history.py): one entry per minute, oldest
first, zeros where no job ended, the minute under way last; on fakeredis."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from producer.history import (
    MINUTES_KEPT,
    MinuteCounts,
    history_field,
    history_of,
    minute_of,
    read_history,
)
from producer.keys import QueueKeys

# 12:34:56 on some day; its minute starts 56 s earlier.
NOW = 1_800_000_000.0 + 56
MINUTE = minute_of(NOW)


def test_minute_of_counts_whole_minutes_since_the_epoch() -> None:
    assert minute_of(0.0) == 0
    assert minute_of(59.999) == 0
    assert minute_of(60.0) == 1
    assert MINUTE * 60 == NOW - 56
    assert history_field(MINUTE, "ok") == f"{MINUTE}:ok"


def test_minutes_without_jobs_read_as_zeros_oldest_first_current_last(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    keys = QueueKeys("emails")
    fake_redis.hset(
        keys.history,
        mapping={
            history_field(MINUTE, "ok"): 7,
            history_field(MINUTE, "failed"): 1,
            history_field(MINUTE - 2, "ok"): 3,
            history_field(MINUTE - 59, "failed"): 2,  # the oldest minute of the hour
        },
    )
    history = read_history(fake_redis, [keys], now=NOW)["emails"]
    assert len(history) == 60
    assert [m.minute_start for m in history] == [(MINUTE - 59 + i) * 60.0 for i in range(60)]
    assert history[-1] == MinuteCounts(MINUTE * 60.0, ok=7, failed=1)  # under way
    assert history[-2] == MinuteCounts((MINUTE - 1) * 60.0, ok=0, failed=0)
    assert history[-3] == MinuteCounts((MINUTE - 2) * 60.0, ok=3, failed=0)
    assert history[0] == MinuteCounts((MINUTE - 59) * 60.0, ok=0, failed=2)
    assert sum(m.ok for m in history) == 10


def test_minutes_outside_the_window_and_foreign_fields_are_left_out(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    keys = QueueKeys("emails")
    fake_redis.hset(
        keys.history,
        mapping={
            history_field(MINUTE - 60, "ok"): 100,  # kept in Redis (61 minutes), not asked for
            history_field(MINUTE + 1, "ok"): 100,  # a worker whose clock is ahead
            history_field(MINUTE, "ok"): 1,
            f"{MINUTE}:retried": 100,
            "note": "x",
            f"{MINUTE}:failed": "not a number",
        },
    )
    [only] = [m for m in read_history(fake_redis, [keys], now=NOW)["emails"] if m.ok or m.failed]
    assert only == MinuteCounts(MINUTE * 60.0, ok=1, failed=0)
    last_two = read_history(fake_redis, [keys], now=NOW, minutes=2)["emails"]
    assert [(m.ok, m.failed) for m in last_two] == [(0, 0), (1, 0)]
    whole = read_history(fake_redis, [keys], now=NOW, minutes=MINUTES_KEPT)["emails"]
    assert whole[0] == MinuteCounts((MINUTE - 60) * 60.0, ok=100, failed=0)


def test_every_queue_is_read_in_one_round_trip_even_without_history(
    fake_redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy, quiet = QueueKeys("busy", "app"), QueueKeys("quiet", "app")
    fake_redis.hset(busy.history, history_field(MINUTE, "failed"), 4)
    pipelines = []
    real_pipeline = fake_redis.pipeline

    def counted_pipeline(**options: Any) -> Any:
        pipelines.append(options)
        return real_pipeline(**options)

    monkeypatch.setattr(fake_redis, "pipeline", counted_pipeline)
    found = read_history(fake_redis, [busy, quiet], now=NOW, minutes=3)
    assert pipelines == [{"transaction": False}]  # one round trip, no MULTI
    assert list(found) == ["busy", "quiet"]
    assert [m.failed for m in found["busy"]] == [0, 0, 4]
    assert found["quiet"] == [
        MinuteCounts((MINUTE - 2 + i) * 60.0, ok=0, failed=0) for i in range(3)
    ]
    assert read_history(fake_redis, [], now=NOW) == {}


def test_history_of_reads_decoded_replies_too() -> None:
    fields = {history_field(MINUTE, "ok"): "5"}
    assert history_of(fields, now=NOW, minutes=1) == [MinuteCounts(MINUTE * 60.0, 5, 0)]


@pytest.mark.parametrize("minutes", [0, -1, MINUTES_KEPT + 1])
def test_a_window_the_workers_do_not_keep_is_refused(
    fake_redis: fakeredis.FakeRedis, minutes: int
) -> None:
    with pytest.raises(ValueError, match="minutes"):
        read_history(fake_redis, [QueueKeys("q")], now=NOW, minutes=minutes)
