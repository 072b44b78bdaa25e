"""The dashboard's overview (producer/dashboard/overview.py) on fakeredis: every queue's counts
and the live workers, what a read costs in commands, discovery done once a minute, the cache
that spaces reads by their cost; and the throughput chart drawn from the history."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import fakeredis
import orjson
import pytest

from producer.dashboard import cache as cache_module
from producer.dashboard import overview as overview_module
from producer.dashboard.cache import OverviewCache
from producer.dashboard.chart import HEIGHT, WIDTH, draw
from producer.dashboard.filters import ago, clip, url_part, when
from producer.dashboard.overview import DISCOVER_EVERY, OverviewReader
from producer.dashboard.settings import DEFAULT_REDIS_BUDGET
from producer.history import MinuteCounts, history_field, minute_of
from producer.keys import QueueKeys, workers_key

EMAILS, IMAGES = QueueKeys("emails"), QueueKeys("images")


def beat(now: float) -> bytes:
    return orjson.dumps({"host": "web1", "pid": 7, "started_at": now - 60, "beat_at": now - 1})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The time the reader and the cache see; the test moves it."""
    now = [time.time()]
    for module in (overview_module, cache_module):
        monkeypatch.setattr(module, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def fill(client: fakeredis.FakeRedis, now: float) -> None:
    client.lpush(EMAILS.ready, b"a", b"b", b"c")
    client.zadd(EMAILS.delayed, {b"d": 1})
    client.lpush(EMAILS.dead, b"e")
    client.set(EMAILS.paused, "1")
    client.lpush(IMAGES.ready, b"f")
    client.hset(QueueKeys("records-only").job("x"), "status", "queued")  # no queue key of its own
    client.sadd(workers_key(), "w1", "w-gone")
    client.set(EMAILS.worker("w1"), beat(now))
    client.set(IMAGES.worker("w1"), beat(now))
    client.lpush(EMAILS.processing("w1"), b"running-1", b"running-2")
    client.hset(EMAILS.history, mapping={history_field(minute_of(now), "ok"): 4})
    client.hset(IMAGES.history, mapping={history_field(minute_of(now), "failed"): 1})


def test_the_overview_counts_every_queue_and_lists_the_live_workers(
    fake_redis: fakeredis.FakeRedis, clock: list[float]
) -> None:
    fill(fake_redis, clock[0])
    read = OverviewReader(fake_redis, "coroq").read()
    assert [row.queue for row in read.queues] == ["emails", "images"]
    emails, images = read.queues
    assert (emails.ready, emails.delayed, emails.dead, emails.running) == (3, 1, 1, 2)
    assert (emails.paused, images.paused, images.ready) == (True, False, 1)
    assert (emails.workers, images.workers) == (1, 1)
    assert (emails.finished_last_hour, images.failed_last_hour) == (4, 1)
    (worker,) = read.workers
    assert (worker.worker_id, worker.queues, worker.in_flight) == ("w1", ("emails", "images"), 2)
    assert (read.history[-1].ok, read.history[-1].failed) == (4, 1)
    assert len(read.history) == 60
    assert read.queue("images") is images
    assert read.queue("nowhere") is None


def test_a_read_costs_a_fixed_number_of_commands(
    fake_redis: fakeredis.FakeRedis, clock: list[float]
) -> None:
    fill(fake_redis, clock[0])
    reader = OverviewReader(fake_redis, "coroq")
    first = reader.read()
    per_read = 1 + 6 * 2 + 2 * 2  # SMEMBERS; 6 per queue; GET and LLEN per worker and queue
    scan = 1  # a keyspace this small: one SCAN call, made on every read, finds workers' queues
    assert first.commands == scan + per_read
    clock[0] += 1
    assert reader.read().commands == scan + per_read


def test_a_new_queue_shows_at_once_when_one_scan_covers_the_keyspace(
    fake_redis: fakeredis.FakeRedis, clock: list[float]
) -> None:
    fill(fake_redis, clock[0])
    reader = OverviewReader(fake_redis, "coroq")
    reader.read()
    fake_redis.lpush(QueueKeys("late").ready, b"x")
    clock[0] += 1
    read = reader.read()
    assert [row.queue for row in read.queues] == ["emails", "images", "late"]
    assert read.commands == 1 + 1 + 6 * 3 + 2 * 2  # the SCAN found it, and the workers' queues


def test_a_keyspace_of_several_scans_is_looked_through_once_a_minute(
    fake_redis: fakeredis.FakeRedis, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overview_module, "SCAN_COUNT", 3)
    fill(fake_redis, clock[0])
    reader = OverviewReader(fake_redis, "coroq")
    first = reader.read()
    per_read = 1 + 6 * 2 + 2 * 2
    assert first.commands > per_read + 1  # several SCAN calls
    fake_redis.lpush(QueueKeys("late").ready, b"x")
    fake_redis.sadd(workers_key(), "w2")  # a worker that appears between two looks
    fake_redis.set(IMAGES.worker("w2"), beat(clock[0]))
    clock[0] += DISCOVER_EVERY - 2
    second = reader.read()
    # w2 looked for on each known queue once (EXISTS), then read as w1 is
    assert second.commands == per_read + 2 + 2
    assert [row.queue for row in second.queues] == ["emails", "images"]  # not looked for yet
    assert [worker.worker_id for worker in second.workers] == ["w1", "w2"]
    clock[0] += 1
    assert reader.read().commands == per_read + 2
    clock[0] += 1
    third = reader.read()
    assert [row.queue for row in third.queues] == ["emails", "images", "late"]
    assert third.commands > 1 + 6 * 3 + 2 * 3 + 1


def test_a_queue_a_page_asks_for_is_looked_for_on_each_worker_once(
    fake_redis: fakeredis.FakeRedis, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overview_module, "SCAN_COUNT", 3)  # no SCAN on every read
    fill(fake_redis, clock[0])
    reader = OverviewReader(fake_redis, "coroq")
    reader.read()
    fake_redis.lpush(QueueKeys("late").ready, b"x")
    fake_redis.set(QueueKeys("late").worker("w1"), beat(clock[0]))
    reader.include("late")
    clock[0] += 1
    read = reader.read()
    per_read = 1 + 6 * 3 + 2 * 3
    assert read.commands == per_read + 2  # EXISTS of the heartbeat of w1 and w-gone on it
    assert read.workers[0].queues == ("emails", "images", "late")
    clock[0] += 1
    assert reader.read().commands == per_read


def test_only_the_queues_named_are_read(
    fake_redis: fakeredis.FakeRedis, clock: list[float]
) -> None:
    fill(fake_redis, clock[0])
    read = OverviewReader(fake_redis, "coroq", only=["images"]).read()
    assert [row.queue for row in read.queues] == ["images"]
    assert read.workers[0].queues == ("images",)


def test_the_cache_serves_what_it_has_and_reads_again_in_the_background_once_due(
    fake_redis: fakeredis.FakeRedis, clock: list[float]
) -> None:
    for n in range(20):
        fake_redis.lpush(QueueKeys(f"q{n}").ready, b"x")
    cache = OverviewCache(OverviewReader(fake_redis, "coroq"), 5.0, DEFAULT_REDIS_BUDGET)
    cost = 1 + 1 + 6 * 20  # a SCAN, SMEMBERS, 6 per queue: read every 24.4 s, not 5

    async def reads() -> list[float]:
        taken = [(await cache.get()).taken_at]
        assert cache.interval == cost / DEFAULT_REDIS_BUDGET
        clock[0] += cache.interval - 0.1
        taken.append((await cache.get()).taken_at)
        clock[0] += 0.2
        taken.append((await cache.get()).taken_at)  # due: served at once, read behind it
        await asyncio.sleep(0.2)
        taken.append((await cache.get()).taken_at)
        cache.forget()
        taken.append((await cache.get()).taken_at)
        return taken

    first, kept, due, refreshed, after_action = asyncio.run(reads())
    assert kept == first
    assert due == first
    assert refreshed > first
    assert after_action == refreshed  # the clock did not move: read again all the same
    assert cache.interval == cost / DEFAULT_REDIS_BUDGET


def test_a_budget_given_spaces_the_reads_by_it(
    fake_redis: fakeredis.FakeRedis, clock: list[float]
) -> None:
    for n in range(20):
        fake_redis.lpush(QueueKeys(f"q{n}").ready, b"x")
    cache = OverviewCache(OverviewReader(fake_redis, "coroq"), 5.0, 100.0)
    asyncio.run(cache.get())
    assert cache.interval == 5.0  # 122 commands at 100 a second: the refresh is longer


def test_a_small_overview_is_read_every_refresh(
    fake_redis: fakeredis.FakeRedis, clock: list[float]
) -> None:
    fake_redis.lpush(EMAILS.ready, b"x")
    cache = OverviewCache(OverviewReader(fake_redis, "coroq"), 5.0, DEFAULT_REDIS_BUDGET)
    asyncio.run(cache.get())
    assert cache.interval == 5.0


def test_the_chart_stacks_failed_on_finished_scaled_to_the_busiest_minute() -> None:
    start = 1_800_000_000.0
    history = [MinuteCounts(start, 2, 1), MinuteCounts(start + 60, 0, 0), MinuteCounts(start, 0, 3)]
    chart = draw(history)
    assert (chart.peak, chart.finished, chart.failed) == (3, 2, 4)
    first, idle, failed_only = chart.bars
    assert (first.ok_height, first.failed_height) == (HEIGHT * 2 / 3, HEIGHT / 3)
    assert first.failed_y == 0  # its top touches the top: the busiest minute
    assert idle.ok_height == idle.failed_height == 0
    assert failed_only.failed_height == HEIGHT
    assert first.x < idle.x < failed_only.x < WIDTH
    assert first.label.endswith(": 2 finished, 1 failed")
    empty = draw([])
    assert (empty.bars, empty.peak) == ((), 0)


def test_times_on_the_pages_read_any_value_without_failing() -> None:
    now = 1_800_000_000.0
    assert when(0) == "1970-01-01 00:00:00 UTC"
    assert when("1800000000") == "2027-01-15 08:00:00 UTC"
    assert when("soon") == when(None) == when(True) == "-"
    assert when(1e300) == "1e+300"
    assert ago(now - 5, now) == "5.0 s ago"
    assert ago(now - 125, now) == "2 min ago"
    assert ago(now + 2 * 3600, now) == "in 2.0 h"
    assert ago(now - 3 * 86400, now) == "3.0 d ago"
    assert ago("yesterday", now) == "-"


def test_long_text_is_clipped_and_ids_are_one_path_segment() -> None:
    assert clip("abc", 5) == "abc"
    assert clip("abcdefgh", 5) == "abcde… (3 more characters not shown)"
    assert url_part("orders/2024/42") == "orders%2F2024%2F42"
    assert url_part('<x y="z">') == "%3Cx%20y%3D%22z%22%3E"
