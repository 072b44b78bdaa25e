"""What the dashboard's queue, dead-letter and job pages read (producer/dashboard/browsing.py),
on fakeredis: pages in running order, filtered dead letters read a bounded number at a time,
and bytes that are not what they should be read without failing."""

from __future__ import annotations

import base64

import fakeredis
import orjson
import pytest

from producer.dashboard import browsing
from producer.dashboard.browsing import DeadFilter, Envelope, safe_record
from producer.dead_letters import DeadJob, parse_entry
from producer.keys import QueueKeys
from worker.jobs.protocol import dead_entry

KEYS = QueueKeys("emails")


def envelope(job_id: str, task: str = "mail.send", *args: object) -> bytes:
    return orjson.dumps({"task": task, "id": job_id, "args": list(args)})


def put_dead(
    client: fakeredis.FakeRedis,
    job_id: str,
    *,
    task: str = "mail.send",
    reason: str = "handler_error",
    error: str = "boom",
    raw: bytes | None = None,
) -> None:
    client.lpush(
        KEYS.dead,
        dead_entry(
            job_id=job_id,
            queue=KEYS.queue,
            task=task,
            reason=reason,
            error=error,
            traceback="",
            attempts=1,
            worker_id="w1",
            raw=raw if raw is not None else envelope(job_id, task),
        ),
    )


def ids_of(page: browsing.Page) -> list[str]:
    return [item.envelope.id for item in page.items]


def dead_ids_of(page: browsing.DeadPage) -> list[str]:
    return [job.id for _, job in page.jobs]


def test_waiting_jobs_come_in_the_order_they_will_run_a_page_at_a_time(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    for name in "abcde":
        fake_redis.lpush(KEYS.ready, envelope(name))  # as producers push
    first = browsing.ready_page(fake_redis, KEYS, offset=0, size=2)
    assert (ids_of(first), first.total) == (["a", "b"], 5)
    assert [item.position for item in first.items] == [0, 1]
    assert ids_of(browsing.ready_page(fake_redis, KEYS, offset=2, size=2)) == ["c", "d"]
    assert ids_of(browsing.ready_page(fake_redis, KEYS, offset=4, size=2)) == ["e"]
    assert ids_of(browsing.ready_page(fake_redis, KEYS, offset=9, size=2)) == []


def test_delayed_jobs_come_soonest_due_first_with_their_due_time(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    fake_redis.zadd(KEYS.delayed, {envelope("late"): 2_000_000, envelope("soon"): 1_000_500})
    page = browsing.delayed_page(fake_redis, KEYS, offset=0)
    assert ids_of(page) == ["soon", "late"]
    assert [item.due_at for item in page.items] == [1000.5, 2000.0]


def test_dead_letters_page_newest_first_and_say_where_the_next_page_starts(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    for n in range(5):
        put_dead(fake_redis, f"d{n}")
    page = browsing.dead_page(fake_redis, KEYS, DeadFilter(), start=0, size=2)
    assert (dead_ids_of(page), page.next_start, page.total) == (["d4", "d3"], 2, 5)
    assert [index for index, _ in page.jobs] == [0, 1]
    last = browsing.dead_page(fake_redis, KEYS, DeadFilter(), start=4, size=2)
    assert (dead_ids_of(last), last.next_start) == (["d0"], None)


def test_a_filtered_page_reads_a_bounded_number_of_entries_and_goes_on_from_there(
    fake_redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browsing, "CHUNK", 3)
    monkeypatch.setattr(browsing, "SCAN_LIMIT", 6)
    put_dead(fake_redis, "wanted-old", task="img.resize")
    for n in range(10):
        put_dead(fake_redis, f"other-{n}")
    put_dead(fake_redis, "wanted-new", task="img.resize")
    where = DeadFilter(task="img.resize")
    first = browsing.dead_page(fake_redis, KEYS, where, start=0, size=5)
    assert dead_ids_of(first) == ["wanted-new"]
    assert (first.scanned, first.next_start) == (6, 6)  # the limit: goes on from entry 6
    second = browsing.dead_page(fake_redis, KEYS, where, start=6, size=5)
    assert dead_ids_of(second) == ["wanted-old"]
    assert second.next_start is None
    assert [index for index, _ in second.jobs] == [11]


def test_a_dead_filter_matches_task_reason_and_text_in_the_error_bytes_or_id() -> None:
    put = dead_entry(
        job_id="order-42",
        queue="emails",
        task="mail.send",
        reason="timeout",
        error="SMTP server slow",
        traceback="",
        attempts=3,
        worker_id="w1",
        raw=envelope("order-42", "mail.send", "customer@example.com"),
    )
    job = parse_entry(put)
    assert DeadFilter().empty
    assert DeadFilter(task="mail.send", reason="timeout").matches(job)
    assert not DeadFilter(task="mail").matches(job)  # a task is matched whole
    assert not DeadFilter(reason="handler_error").matches(job)
    assert DeadFilter(text="smtp").matches(job)
    assert DeadFilter(text="CUSTOMER@").matches(job)
    assert DeadFilter(text="order-42").matches(job)
    assert not DeadFilter(text="nowhere").matches(job)


def test_dead_entries_that_are_not_what_the_worker_writes_read_without_failing() -> None:
    unreadable = parse_entry(b"\xff not json")
    assert unreadable.fields["reason"] == "unreadable_entry"
    assert unreadable.raw == "\ufffd not json".encode()
    assert parse_entry(b"[1, 2]").fields["reason"] == "unreadable_entry"
    not_utf8 = b'{"args":["\xff"]}'
    written = parse_entry(
        dead_entry(
            job_id="b",
            queue="q",
            task=None,
            reason="invalid_json",
            error="",
            traceback="",
            attempts=0,
            worker_id="w",
            raw=not_utf8,
        )
    )
    assert written.raw == not_utf8
    assert not Envelope(written.raw).valid_utf8
    assert DeadJob(b"", {"raw_base64": "abc"}).raw == b"abc"  # not base64: its text
    assert DeadJob(b"", {"raw_base64": 12}).raw == b"12"
    assert DeadJob(b"", {"raw_base64": base64.b64encode(b"ok").decode()}).raw == b"ok"


def test_facets_list_the_tasks_and_reasons_of_the_newest_entries(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    put_dead(fake_redis, "a", task="mail.send", reason="timeout")
    put_dead(fake_redis, "b", task="img.resize")
    fake_redis.lpush(KEYS.dead, b"garbage")
    assert browsing.dead_facets(fake_redis, KEYS) == (
        ["img.resize", "mail.send"],
        ["handler_error", "timeout", "unreadable_entry"],
    )


@pytest.mark.parametrize(
    ("raw", "job_id", "task", "arguments"),
    [
        (envelope("a", "mail.send", "x", 1), "a", "mail.send", '["x",1]'),
        (b'{"task":"t","args":{"k":"v"}}', "", "t", '{"k":"v"}'),
        (b"not json", "", "", "not json"),
        (b"[1,2]", "", "", "[1,2]"),
        (b'{"task":5,"id":["x"]}', "['x']", "5", "[]"),
    ],
)
def test_an_envelope_is_read_without_trusting_it(
    raw: bytes, job_id: str, task: str, arguments: str
) -> None:
    read = Envelope(raw)
    assert (read.id, read.task, read.arguments) == (job_id, task, arguments)


def test_arguments_nested_deeper_than_json_writes_show_as_the_bytes() -> None:
    deep = b'{"task":"t","id":"deep","args":' + b"[" * 1000 + b"]" * 1000 + b"}"
    read = Envelope(deep)
    assert read.id == "deep"
    assert read.arguments == deep.decode()


def test_long_ids_and_task_names_are_cut() -> None:
    read = Envelope(orjson.dumps({"task": "t" * 300, "id": "i" * 300}))
    assert read.task == "t" * 200 + "…"
    assert read.id == "i" * 256 + "…"


def test_a_record_field_that_does_not_decode_stays_text_and_the_others_decode() -> None:
    good = {b"status": b"running", b"attempts": b"2", b"progress": b"0.5"}
    assert safe_record(good) == {"status": "running", "attempts": 2, "progress": 0.5}
    odd = {**good, b"attempts": b"many", b"result": b"{", b"started_at": b"soon"}
    assert safe_record(odd) == {
        "status": "running",
        "attempts": "many",
        "progress": 0.5,
        "result": "{",
        "started_at": "soon",
    }


def test_a_job_is_found_where_it_waits_and_unknown_jobs_are_none(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    fake_redis.lpush(KEYS.ready, envelope("waiting", "mail.send", 1))
    fake_redis.zadd(KEYS.delayed, {envelope("later"): 1})
    put_dead(fake_redis, "dead-1", error="refused")
    fake_redis.hset(KEYS.job("dead-1"), mapping={"status": "dead", "attempts": 3})
    waiting = browsing.read_job(fake_redis, KEYS, "waiting")
    assert waiting is not None
    assert waiting.record == {}
    assert waiting.envelope is not None
    assert waiting.envelope.arguments == "[1]"
    later = browsing.read_job(fake_redis, KEYS, "later")
    assert later is not None
    assert later.envelope is not None
    dead = browsing.read_job(fake_redis, KEYS, "dead-1")
    assert dead is not None
    assert dead.dead is not None
    assert dead.dead.fields["error"] == "refused"
    assert browsing.read_job(fake_redis, KEYS, "nobody") is None


def test_a_jobs_bytes_are_looked_for_once_while_it_waits_and_again_once_it_left(
    fake_redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    searches: list[str] = []
    real_search = browsing._find_envelope

    def counted(*args: object) -> Envelope | None:
        searches.append("search")
        return real_search(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(browsing, "_find_envelope", counted)
    found = browsing.FoundEnvelopes()
    fake_redis.lpush(KEYS.ready, envelope("waiting", "mail.send", 1))
    for _ in range(3):  # a page refreshing itself
        view = browsing.read_job(fake_redis, KEYS, "waiting", found)
        assert view is not None
        assert view.envelope is not None
    assert len(searches) == 1
    fake_redis.delete(KEYS.ready)  # taken (no record yet) or gone with a flushed Redis
    assert browsing.read_job(fake_redis, KEYS, "waiting", found) is None
    assert len(searches) == 2
    assert browsing.read_job(fake_redis, KEYS, "waiting", found) is None  # a miss, remembered
    assert len(searches) == 2
