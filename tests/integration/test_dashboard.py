"""The web dashboard (producer/dashboard) served by aiohttp's test server against the real
redis-server, filled by the producer library and by dead-letter entries written as the worker
writes them: every page and every action, and what an action leaves in Redis; the CSRF,
read-only and token rules; hostile data; a page of a list of a million entries at the cost of a
page of ten; Redis going away and coming back; and the `producer dashboard` command's refusals.

Each test runs its scenario with `asyncio.run`; most use a key prefix of their own, so the
overview sees only their own queues and workers.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import orjson
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from producer import Producer
from producer.connection import sync_client
from producer.dashboard import DashboardSettings, SettingsError, create_app
from producer.history import history_field, minute_of
from producer.keys import QueueKeys, workers_key
from tests.conftest import REPO_ROOT, wait_for
from tests.integration.helpers import run_module, wait_for_outcome, worker_id
from worker.jobs.protocol import dead_entry
from worker.local_redis import RedisServerProcess, free_port

T = TypeVar("T")
if TYPE_CHECKING:  # aiohttp's test client takes type parameters from 3.10 on
    Client = TestClient[web.Request, web.Application]
HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
XSS = "<script>alert(1)</script>"
ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"
TOKEN = "a-dashboard-token-long-enough-0123"
# What a list page (queue, dead letters) may weigh whatever its entries hold, and a job page
# whatever its arguments: previews and the job's own text are cut.
LIST_PAGE_BYTES = 200_000
JOB_PAGE_BYTES = 600_000
MILLION = 1_000_000
EN_DASH, NEXT, OLDER = "\u2013", "Next \u203a", "Older \u203a"


# -- helpers ----------------------------------------------------------------------------------


def serve(settings: DashboardSettings, scenario: Callable[[Client], Awaitable[T]]) -> T:
    """Run `scenario` against the dashboard served on a free local port; its Redis client is
    the one `producer dashboard` makes, closed at the end."""
    client = sync_client(settings.redis_url)

    async def run() -> T:
        async with TestClient(TestServer(create_app(settings, client=client))) as http:
            return await scenario(http)

    try:
        return asyncio.run(run())
    finally:
        client.close()


async def page(http: Client, path: str, status: int = 200, **headers: str) -> str:
    """GET a page (as a browser asks for it), check its status, return its text."""
    response = await http.get(path, headers={**HTML, **headers}, allow_redirects=False)
    text = await response.text()
    assert response.status == status, f"GET {path}: {response.status} {text[:500]}"
    return text


async def post(
    http: Client, path: str, data: dict[str, Any] | list[tuple[str, str]], **headers: str
) -> tuple[int, str, str]:
    """POST a form without following the redirect: (status, Location, text)."""
    response = await http.post(path, data=data, headers=headers, allow_redirects=False)
    return response.status, response.headers.get("Location", ""), await response.text()


async def csrf_of(http: Client, path: str) -> str:
    """The CSRF token the forms of this client's session carry."""
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', await page(http, path))
    assert found, f"no CSRF field on {path}"
    return found.group(1)


def linked_jobs(text: str, queue: str) -> list[str]:
    """The job ids a page links to, in page order."""
    pattern = rf'href="/queues/{re.escape(quote(queue, safe=""))}/jobs/([^"?]+)"'
    return [html.unescape(unquote(found)) for found in re.findall(pattern, text)]


def commands_processed(client: redis.Redis) -> int:
    """Every command the server ran so far, but INFO (the measuring itself)."""
    stats = client.info("commandstats")
    return sum(int(value["calls"]) for name, value in stats.items() if name != "cmdstat_info")


def put_dead(
    client: redis.Redis,
    keys: QueueKeys,
    job_id: str,
    *,
    task: str = "mail.send",
    reason: str = "handler_error",
    error: str = "RuntimeError: boom",
    raw: bytes | None = None,
    attempts: int = 3,
) -> bytes:
    """Dead-letter a job as the worker does (dead.lua): the entry at the left of the dead
    list, the record marked dead; returns the job's bytes."""
    job = raw if raw is not None else orjson.dumps({"task": task, "id": job_id, "args": [1]})
    entry = dead_entry(
        job_id=job_id,
        queue=keys.queue,
        task=task,
        reason=reason,
        error=error,
        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: boom",
        attempts=attempts,
        worker_id="web1-4242-9605e7",
        raw=job,
    )
    client.lpush(keys.dead, entry)
    record = {"status": "dead", "reason": reason, "error": error, "attempts": attempts}
    client.hset(keys.job(job_id), mapping={**record, "finished_at": time.time(), "task": task})
    return job


def dead_ids(client: redis.Redis, keys: QueueKeys) -> list[str]:
    return [orjson.loads(entry)["id"] for entry in client.lrange(keys.dead, 0, -1)]


def ready_raw(client: redis.Redis, keys: QueueKeys) -> list[bytes]:
    return list(client.lrange(keys.ready, 0, -1))


def put_worker(client: redis.Redis, keys: QueueKeys, name: str, running: list[bytes]) -> None:
    """A live worker serving the queue, as its heartbeat thread and its takes leave it."""
    now = time.time()
    beat = {
        "host": "web1",
        "pid": 4242,
        "started_at": now - 600,
        "beat_at": now,
        "jobs_per_s": 2.5,
        "metrics_port": None,
    }
    client.set(keys.worker(name), orjson.dumps(beat), px=60_000)
    client.sadd(workers_key(keys.prefix), name)
    if running:
        client.lpush(keys.processing(name), *running)


@pytest.fixture
def prefix() -> str:
    return f"dash{uuid.uuid4().hex[:8]}"


@pytest.fixture
def dash_keys(prefix: str, queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name, prefix)


@pytest.fixture
def settings(redis_url: str, prefix: str) -> DashboardSettings:
    return DashboardSettings(redis_url=redis_url, prefix=prefix)


@pytest.fixture
def dash_producer(redis_url: str, dash_keys: QueueKeys) -> Iterator[Producer]:
    with Producer(redis_url, queue=dash_keys.queue, prefix=dash_keys.prefix) as client:
        yield client


# -- every page -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filled:
    """What `filled` put in the test's queue."""

    queue: str
    waiting: list[str]  # in the order they run
    delayed: str


@pytest.fixture
def filled(redis_client: redis.Redis, dash_keys: QueueKeys, dash_producer: Producer) -> Filled:
    """One of everything in the test's queue: waiting jobs (one with "/" in its id), a delayed
    one, a dead one, a worker running one, a history, a schedule; and a second queue."""
    queue = dash_keys.queue
    waiting = [dash_producer.push("mail.send", n, _id=f"wait-{n}") for n in range(3)]
    waiting.append(dash_producer.push("mail.send", "slash", _id="orders/2024/42"))
    later = dash_producer.push("mail.send", "later", _id="later-1", _delay=3600)
    dash_producer.push("mail.send", "elsewhere", _queue=f"{queue}-2")
    put_dead(redis_client, dash_keys, "dead-1", error="SMTP refused")
    running_job = orjson.dumps({"task": "img.resize", "id": "run-1", "args": ["a.png"]})
    put_worker(redis_client, dash_keys, "web1-4242-abcdef", [running_job])
    minute = minute_of(time.time())
    fields = {history_field(minute, "ok"): 7, history_field(minute, "failed"): 2}
    redis_client.hset(dash_keys.history, mapping=fields)
    last_tick = {"tick": time.time() - 60, "job_id": "tick-1", "pushed": True, "at": time.time()}
    schedule = {
        "nightly-report": time.time() + 3600,
        "spec:nightly-report": orjson.dumps({"task": "report", "when": "cron 0 3 * * * UTC"}),
        "last:nightly-report": orjson.dumps(last_tick),
    }
    redis_client.hset(dash_keys.schedules, mapping=schedule)
    return Filled(queue, waiting, later)


def test_the_overview_workers_and_schedules_pages_show_what_redis_holds(
    settings: DashboardSettings, filled: Filled
) -> None:
    queue = filled.queue

    async def scenario(http: Client) -> None:
        overview = await page(http, "/")
        assert f'data-queue="{queue}-2"' in overview
        row = overview[overview.index(f'data-queue="{queue}"') :]
        for count, value in (("ready", 4), ("delayed", 1), ("running", 1), ("dead", 1)):
            assert re.search(rf'data-count="{count}">(<a [^>]*>)?{value}<', row), count
        assert "7</strong> finished" in overview
        assert "web1-4242-abcdef" in overview

        workers = await page(http, "/workers")
        assert "web1-4242-abcdef" in workers
        assert f'<a href="/queues/{queue}">{queue}</a>' in workers

        schedules = await page(http, "/schedules")
        assert "nightly-report" in schedules
        assert "0 3 * * *" in schedules
        assert "tick-1" in schedules

    serve(settings, scenario)


def test_the_queue_dead_and_job_pages_show_what_redis_holds(
    settings: DashboardSettings, filled: Filled
) -> None:
    queue = filled.queue

    async def scenario(http: Client) -> None:
        ready = await page(http, f"/queues/{queue}")
        assert linked_jobs(ready, queue) == filled.waiting  # the next to run first
        tab = await page(http, f"/queues/{queue}?tab=ready")
        assert linked_jobs(tab, queue) == filled.waiting
        slash = f"/queues/{queue}/jobs/orders%2F2024%2F42"
        assert f'href="{slash}"' in ready
        assert f'action="{slash}/cancel"' in ready
        assert "[&#34;slash&#34;]" in await page(http, slash)  # its arguments
        delayed = await page(http, f"/queues/{queue}?tab=delayed")
        assert linked_jobs(delayed, queue) == [filled.delayed]
        running = await page(http, f"/queues/{queue}?tab=running")
        assert linked_jobs(running, queue) == ["run-1"]
        assert "web1-4242-abcdef" in running

        dead = await page(http, f"/queues/{queue}/dead")
        assert linked_jobs(dead, queue) == ["dead-1"]
        assert "SMTP refused" in dead

        job = await page(http, f"/queues/{queue}/jobs/wait-1")
        assert "mail.send" in job
        assert "[1]" in job  # its arguments, found in the ready list
        dead_job = await page(http, f"/queues/{queue}/jobs/dead-1")
        assert "SMTP refused" in dead_job
        assert "Traceback" in dead_job
        missing = await page(http, f"/queues/{queue}/jobs/never-pushed", 404)
        assert "never-pushed" in missing

    serve(settings, scenario)


def test_the_search_box_goes_to_the_queue_that_has_the_job(
    settings: DashboardSettings, filled: Filled, dash_producer: Producer
) -> None:
    queue = filled.queue

    async def scenario(http: Client) -> None:
        async def found_at(search: str) -> str:
            response = await http.get(search, allow_redirects=False)
            assert response.status == 303, search
            return response.headers["Location"]

        await page(http, "/")
        assert await found_at("/job?id=dead-1") == f"/queues/{queue}/jobs/dead-1"  # its record
        assert await found_at(f"/job?id=wait-0&queue={queue}") == f"/queues/{queue}/jobs/wait-0"
        nowhere = await page(http, "/job?id=wait-0", 404)  # waiting: no record yet
        assert "in any queue" in nowhere
        dash_producer.cancel("orders/2024/42")  # now it has a record to be found by
        slash = await found_at("/job?id=%20orders/2024/42%20")
        assert slash == f"/queues/{queue}/jobs/orders%2F2024%2F42"
        assert "nobody-has-this" in await page(http, "/job?id=nobody-has-this", 404)

        response = await http.get("/login", allow_redirects=False)
        assert response.status == 303  # no token: nothing to sign in to
        assert response.headers["Location"] == "/"
        for static in ("/static/app.js", "/static/style.css"):
            assert (await http.get(static)).status == 200, static

    serve(settings, scenario)


def test_a_failing_job_of_a_real_worker_shows_on_every_page(
    start_worker: Callable[..., Any], redis_url: str, keys: QueueKeys, producer: Producer
) -> None:
    worker = start_worker(env={"COROQ_HEARTBEAT_INTERVAL": "0.5", "COROQ_HEARTBEAT_TTL": "1.5"})
    job_id = producer.push("tests.boom", XSS, _max_attempts=1)
    assert wait_for_outcome(redis.Redis.from_url(redis_url), keys, job_id)["status"] == "dead"
    wid = worker_id(worker)

    async def scenario(http: Client) -> None:
        def failed_counted(text: str) -> bool:
            return '<strong class="bad">1</strong> failed' in text

        deadline = time.monotonic() + 20  # the history is written with the next heartbeat
        overview = await page(http, "/")
        while not failed_counted(overview) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            overview = await page(http, "/")
        assert failed_counted(overview)
        assert wid in overview
        assert wid in await page(http, "/workers")
        dead = await page(http, f"/queues/{keys.queue}/dead")
        assert linked_jobs(dead, keys.queue) == [job_id]
        assert "handler_error" in dead
        job = await page(http, f"/queues/{keys.queue}/jobs/{job_id}")
        assert "RuntimeError" in job
        assert ESCAPED_XSS in job
        assert XSS not in job

    serve(DashboardSettings(redis_url=redis_url, queues=(keys.queue,), refresh=1.0), scenario)


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/queues/bad$name", 404, "invalid queue name 'bad$name'"),
        ("/queues/bad$name/dead", 404, "invalid queue name 'bad$name'"),
        ("/queues/bad$name/jobs/x", 404, "invalid queue name 'bad$name'"),
        ("/queues/" + "q" * 129, 404, "invalid queue name"),
        ("/queues/{queue}?tab=archive", 400, "tab='archive': give ready, delayed or running"),
        ("/queues/{queue}?offset=-1", 400, "offset='-1': give a whole number"),
        ("/queues/{queue}?offset=ten", 400, "offset='ten'"),
        ("/queues/{queue}?offset=9999999999999", 400, "offset="),
        ("/queues/{queue}?tab=delayed&offset=1.5", 400, "offset='1.5'"),
        ("/queues/{queue}/dead?start=-3", 400, "start='-3': give a whole number"),
        ("/queues/{queue}/dead?start=x", 400, "start='x'"),
        ("/job?id=", 400, "give a job id"),
        ("/job?id=" + "i" * 257, 400, "give a job id (1 to 256 characters)"),
        ("/job?id=x&queue=bad$name", 404, "invalid queue name"),
        ("/queues/not-shown", 404, "queue not-shown is not shown by this dashboard"),
    ],
)
def test_a_bad_request_says_what_is_wrong(
    redis_url: str, prefix: str, queue_name: str, path: str, status: int, message: str
) -> None:
    settings = DashboardSettings(redis_url=redis_url, prefix=prefix, queues=(queue_name,))

    async def scenario(http: Client) -> None:
        text = await page(http, path.format(queue=queue_name), status)
        assert message in text

    serve(settings, scenario)


def test_offsets_past_the_end_show_an_empty_page(
    settings: DashboardSettings, dash_keys: QueueKeys, dash_producer: Producer
) -> None:
    dash_producer.push("mail.send", 1)

    async def scenario(http: Client) -> None:
        assert "No job waiting." in await page(http, f"/queues/{dash_keys.queue}?offset=500")
        assert "No dead job." in await page(http, f"/queues/{dash_keys.queue}/dead?start=500")

    serve(settings, scenario)


def test_queue_and_dead_pages_go_page_by_page(
    settings: DashboardSettings,
    redis_client: redis.Redis,
    dash_keys: QueueKeys,
    dash_producer: Producer,
) -> None:
    queue = dash_keys.queue
    pushed = [dash_producer.push("mail.send", n, _id=f"job-{n:03}") for n in range(120)]
    for n in range(120):
        put_dead(redis_client, dash_keys, f"dead-{n:03}")
    newest_first = [f"dead-{n:03}" for n in reversed(range(120))]

    async def scenario(http: Client) -> None:
        first = await page(http, f"/queues/{queue}")
        assert linked_jobs(first, queue) == pushed[:50]
        assert f"1{EN_DASH}50 of 120" in first
        assert 'href="?tab=ready&offset=50"' in first
        assert "Previous" not in first
        third = await page(http, f"/queues/{queue}?offset=100")
        assert linked_jobs(third, queue) == pushed[100:]
        assert NEXT not in third
        assert 'href="?tab=ready&offset=50"' in third  # back one page

        dead = await page(http, f"/queues/{queue}/dead")
        assert linked_jobs(dead, queue) == newest_first[:50]
        assert html.escape("?task=&reason=&q=&start=50") in dead
        second = await page(http, f"/queues/{queue}/dead?start=50")
        assert linked_jobs(second, queue) == newest_first[50:100]
        last = await page(http, f"/queues/{queue}/dead?start=100")
        assert linked_jobs(last, queue) == newest_first[100:]
        assert OLDER not in last

    serve(settings, scenario)


def test_dead_letters_filter_by_task_reason_and_text(
    settings: DashboardSettings, redis_client: redis.Redis, dash_keys: QueueKeys
) -> None:
    queue = dash_keys.queue
    put_dead(redis_client, dash_keys, "m1", task="mail.send", error="SMTP 550 mailbox full")
    put_dead(redis_client, dash_keys, "m2", task="mail.send", reason="timeout", error="slow")
    put_dead(redis_client, dash_keys, "i1", task="img.resize", error="PIL: bad header")
    put_dead(redis_client, dash_keys, "i2", task="img.resize", reason="timeout", error="took 30 s")
    customer = orjson.dumps({"task": "img.resize", "id": "i3", "args": ["customer-4711.png"]})
    put_dead(redis_client, dash_keys, "i3", task="img.resize", raw=customer)

    async def scenario(http: Client) -> None:
        async def shown(query: str) -> list[str]:
            return linked_jobs(await page(http, f"/queues/{queue}/dead?{query}"), queue)

        everything = await page(http, f"/queues/{queue}/dead")
        assert linked_jobs(everything, queue) == ["i3", "i2", "i1", "m2", "m1"]
        for offered in ("img.resize", "mail.send", "timeout", "handler_error"):
            assert re.search(rf"<option[^>]*>{offered}</option>", everything), offered
        assert await shown("task=mail.send") == ["m2", "m1"]
        assert await shown("reason=timeout") == ["i2", "m2"]
        assert await shown("task=img.resize&reason=timeout") == ["i2"]
        assert await shown("q=smtp") == ["m1"]  # in the error, any case
        assert await shown("q=CUSTOMER-4711") == ["i3"]  # in the arguments
        assert await shown("q=i1") == ["i1"]  # the id
        assert await shown("task=mail.send&q=pil") == []
        none = await page(http, f"/queues/{queue}/dead?task=no.such.task")
        assert "No dead job matches" in none
        assert re.search(r"<option selected>no.such.task</option>", none)  # still shown

    serve(settings, scenario)


# -- actions ----------------------------------------------------------------------------------


def test_pause_and_resume_a_queue(
    settings: DashboardSettings,
    redis_client: redis.Redis,
    dash_keys: QueueKeys,
    dash_producer: Producer,
) -> None:
    queue = dash_keys.queue
    dash_producer.push("mail.send", 1)

    async def scenario(http: Client) -> None:
        token = await csrf_of(http, f"/queues/{queue}")
        assert f'action="/queues/{queue}/pause"' in await page(http, f"/queues/{queue}")
        status, location, _ = await post(http, f"/queues/{queue}/pause", {"csrf": token})
        assert (status, location) == (303, f"/queues/{queue}")
        assert redis_client.exists(dash_keys.paused)
        paused = await page(http, f"/queues/{queue}")
        assert '<span class="badge warn">paused</span>' in paused
        assert f'action="/queues/{queue}/resume"' in paused
        assert '<span class="badge warn">paused</span>' in await page(http, "/")

        status, location, _ = await post(http, f"/queues/{queue}/resume", {"csrf": token})
        assert (status, location) == (303, f"/queues/{queue}")
        assert not redis_client.exists(dash_keys.paused)
        assert '<span class="badge warn">paused</span>' not in await page(http, f"/queues/{queue}")
        assert redis_client.llen(dash_keys.ready) == 1

    serve(settings, scenario)


def test_cancel_a_waiting_job_removes_it_from_the_ready_list_only(
    settings: DashboardSettings,
    redis_client: redis.Redis,
    dash_keys: QueueKeys,
    dash_producer: Producer,
) -> None:
    queue = dash_keys.queue
    first, second, third = (dash_producer.push("mail.send", n) for n in range(3))
    later = dash_producer.push("mail.send", "later", _delay=3600)
    put_dead(redis_client, dash_keys, "dead-1")

    async def scenario(http: Client) -> None:
        listing = await page(http, f"/queues/{queue}")
        assert f'action="/queues/{queue}/jobs/{second}/cancel"' in listing
        token = await csrf_of(http, f"/queues/{queue}")
        back = f"/queues/{queue}?tab=ready"
        form = {"csrf": token, "back": back}
        status, location, _ = await post(http, f"/queues/{queue}/jobs/{second}/cancel", form)
        assert status == 303
        assert location.startswith(f"{back}&notice=")
        assert "cancelled+before+it+started" in location
        shown = await page(http, location)
        assert f"{second}: cancelled before it started" in shown
        assert linked_jobs(shown, queue) == [first, third]

        status, location, _ = await post(
            http, f"/queues/{queue}/jobs/{later}/cancel", {"csrf": token}
        )
        assert status == 303
        assert location.startswith(f"/queues/{queue}/jobs/{later}?notice=")

    serve(settings, scenario)
    waiting = [orjson.loads(raw)["id"] for raw in reversed(ready_raw(redis_client, dash_keys))]
    assert waiting == [first, third]
    assert redis_client.zcard(dash_keys.delayed) == 0
    assert redis_client.hget(dash_keys.job(second), "status") == b"cancelled"
    assert redis_client.hget(dash_keys.job(later), "status") == b"cancelled"
    assert dead_ids(redis_client, dash_keys) == ["dead-1"]


def test_retry_and_delete_one_dead_job(
    settings: DashboardSettings, redis_client: redis.Redis, dash_keys: QueueKeys
) -> None:
    queue = dash_keys.queue
    jobs = {name: put_dead(redis_client, dash_keys, name) for name in ("a", "b", "c", "d")}

    async def scenario(http: Client) -> None:
        dead_job = await page(http, f"/queues/{queue}/jobs/b")
        assert f'action="/queues/{queue}/jobs/b/retry"' in dead_job
        assert f'action="/queues/{queue}/jobs/b/delete"' in dead_job
        token = await csrf_of(http, f"/queues/{queue}/jobs/b")
        status, location, _ = await post(http, f"/queues/{queue}/jobs/b/retry", {"csrf": token})
        assert status == 303
        assert location.startswith(f"/queues/{queue}/jobs/b?notice=sent+back")
        assert ready_raw(redis_client, dash_keys) == [jobs["b"]]
        assert dead_ids(redis_client, dash_keys) == ["d", "c", "a"]
        assert redis_client.hget(dash_keys.job("b"), "status") == b"queued"

        status, location, _ = await post(http, f"/queues/{queue}/jobs/c/delete", {"csrf": token})
        assert status == 303
        assert "notice=deleted" in location
        assert dead_ids(redis_client, dash_keys) == ["d", "a"]
        assert not redis_client.exists(dash_keys.job("c"))
        assert ready_raw(redis_client, dash_keys) == [jobs["b"]]

        status, location, _ = await post(http, f"/queues/{queue}/jobs/c/retry", {"csrf": token})
        assert status == 303
        assert "not+in+the+dead+list+any+more" in location  # gone already: nothing happens
        assert dead_ids(redis_client, dash_keys) == ["d", "a"]

        status, _, _ = await post(http, f"/queues/{queue}/jobs/a/explode", {"csrf": token})
        assert status in (404, 405)  # no such action

    serve(settings, scenario)
    assert redis_client.hget(dash_keys.job("a"), "status") == b"dead"
    assert redis_client.hget(dash_keys.job("d"), "status") == b"dead"


def test_retry_and_delete_selected_and_every_matching_dead_job(
    settings: DashboardSettings, redis_client: redis.Redis, dash_keys: QueueKeys
) -> None:
    queue = dash_keys.queue
    jobs: dict[str, bytes] = {}
    for n in range(6):
        jobs[f"mail-{n}"] = put_dead(redis_client, dash_keys, f"mail-{n}", task="mail.send")
        reason = "timeout" if n % 2 else "handler_error"
        jobs[f"img-{n}"] = put_dead(
            redis_client, dash_keys, f"img-{n}", task="img.resize", reason=reason
        )
    other = QueueKeys(f"{queue}-other", dash_keys.prefix)
    put_dead(redis_client, other, "mail-0", task="mail.send")

    async def scenario(http: Client) -> None:
        dead = await page(http, f"/queues/{queue}/dead")
        assert f'formaction="/queues/{queue}/dead/retry"' in dead
        assert 'name="id" value="mail-3"' in dead
        token = await csrf_of(http, f"/queues/{queue}/dead")
        selected = [("csrf", token), ("id", "mail-1"), ("id", "img-2")]
        status, location, _ = await post(http, f"/queues/{queue}/dead/retry", selected)
        assert status == 303
        assert location.startswith(f"/queues/{queue}/dead?")
        assert "notice=2+sent+back" in location
        assert sorted(ready_raw(redis_client, dash_keys)) == sorted([jobs["mail-1"], jobs["img-2"]])

        selected = [("csrf", token), ("id", "mail-2"), ("id", "mail-4")]
        status, location, _ = await post(http, f"/queues/{queue}/dead/delete", selected)
        assert status == 303
        assert "notice=2+deleted" in location
        assert not redis_client.exists(dash_keys.job("mail-2"))

        left = dead_ids(redis_client, dash_keys)
        assert sorted(left) == sorted(
            ["mail-0", "mail-3", "mail-5", "img-0", "img-1", "img-3", "img-4", "img-5"]
        )

        every_timeout = {"csrf": token, "every": "1", "task": "img.resize", "reason": "timeout"}
        status, location, _ = await post(http, f"/queues/{queue}/dead/retry", every_timeout)
        assert status == 303
        assert "notice=3+sent+back" in location
        assert "task=img.resize" in location  # back to the filtered page
        assert "reason=timeout" in location
        assert sorted(dead_ids(redis_client, dash_keys)) == sorted(
            ["mail-0", "mail-3", "mail-5", "img-0", "img-4"]
        )

        every_mail = {"csrf": token, "every": "1", "task": "mail.send", "reason": "", "q": ""}
        status, location, _ = await post(http, f"/queues/{queue}/dead/delete", every_mail)
        assert status == 303
        assert "notice=3+deleted" in location
        assert sorted(dead_ids(redis_client, dash_keys)) == ["img-0", "img-4"]

        status, _, text = await post(http, f"/queues/{queue}/dead/retry", {"csrf": token})
        assert status == 400
        assert "select jobs first" in text
        status, _, text = await post(
            http, f"/queues/{queue}/dead/explode", {"csrf": token, "id": "img-0"}
        )
        assert status == 404
        assert "no action 'explode' on dead jobs" in text

    serve(settings, scenario)
    assert redis_client.llen(dash_keys.ready) == 5  # 2 selected + 3 matching
    assert dead_ids(redis_client, other) == ["mail-0"]  # another queue: untouched
    assert redis_client.hget(other.job("mail-0"), "status") == b"dead"


# -- CSRF, read-only, token -------------------------------------------------------------------


def test_a_post_without_this_sessions_csrf_token_or_from_another_site_is_refused(
    settings: DashboardSettings,
    redis_client: redis.Redis,
    dash_keys: QueueKeys,
    dash_producer: Producer,
) -> None:
    queue = dash_keys.queue
    dash_producer.push("mail.send", 1)
    put_dead(redis_client, dash_keys, "dead-1")
    pause, retry = f"/queues/{queue}/pause", f"/queues/{queue}/jobs/dead-1/retry"

    def unchanged() -> None:
        assert not redis_client.exists(dash_keys.paused)
        assert dead_ids(redis_client, dash_keys) == ["dead-1"]
        assert redis_client.llen(dash_keys.ready) == 1

    async def scenario(http: Client) -> None:
        other_session_token = await csrf_of(http, f"/queues/{queue}")
        http.session.cookie_jar.clear()
        token = await csrf_of(http, f"/queues/{queue}")
        assert token != other_session_token
        refused: list[tuple[dict[str, str], dict[str, str], str]] = [
            ({}, {}, "CSRF token is missing"),
            ({"csrf": "0" * 64}, {}, "CSRF token is missing or stale"),
            ({"csrf": other_session_token}, {}, "CSRF token is missing or stale"),
            ({"csrf": token}, {"Origin": "https://evil.example"}, "https://evil.example"),
        ]
        for form, headers, message in refused:
            for path in (pause, retry):
                status, _, text = await post(http, path, form, **headers)
                assert status == 403, (path, form, headers)
                assert message in text
                unchanged()
        host = urlsplit(str(http.make_url("/"))).netloc
        status, _, _ = await post(http, pause, {"csrf": token}, Origin=f"http://{host}")
        assert status == 303
        assert redis_client.exists(dash_keys.paused)
        status, _, _ = await post(http, retry, {"csrf": token})
        assert status == 303
        assert dead_ids(redis_client, dash_keys) == []

    serve(settings, scenario)


def test_every_page_sends_the_headers_that_keep_foreign_script_out(
    settings: DashboardSettings,
) -> None:
    async def scenario(http: Client) -> None:
        response = await http.get("/")
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        session = response.cookies["coroq_session"]
        assert session["httponly"]
        assert session["samesite"] == "Strict"

    serve(settings, scenario)


def test_read_only_shows_no_action_and_refuses_every_post(
    redis_url: str,
    prefix: str,
    redis_client: redis.Redis,
    dash_keys: QueueKeys,
    dash_producer: Producer,
) -> None:
    queue = dash_keys.queue
    waiting = dash_producer.push("mail.send", 1)
    put_dead(redis_client, dash_keys, "dead-1")
    put_dead(redis_client, dash_keys, "dead-2")
    running = orjson.dumps({"task": "img.resize", "id": "run-1", "args": []})
    put_worker(redis_client, dash_keys, "web1-4242-abcdef", [running])
    redis_client.hset(dash_keys.job("run-1"), mapping={"status": "running", "attempts": 1})
    settings = DashboardSettings(redis_url=redis_url, prefix=prefix, read_only=True)
    pages = [
        "/",
        "/workers",
        "/schedules",
        f"/queues/{queue}",
        f"/queues/{queue}?tab=delayed",
        f"/queues/{queue}?tab=running",
        f"/queues/{queue}/dead",
        f"/queues/{queue}/jobs/{waiting}",
        f"/queues/{queue}/jobs/dead-1",
        f"/queues/{queue}/jobs/run-1",
    ]
    actions: list[tuple[str, list[tuple[str, str]]]] = [
        (f"/queues/{queue}/pause", []),
        (f"/queues/{queue}/resume", []),
        (f"/queues/{queue}/jobs/{waiting}/cancel", []),
        (f"/queues/{queue}/jobs/run-1/cancel", []),
        (f"/queues/{queue}/jobs/dead-1/retry", []),
        (f"/queues/{queue}/jobs/dead-1/delete", []),
        (f"/queues/{queue}/dead/retry", [("id", "dead-1"), ("id", "dead-2")]),
        (f"/queues/{queue}/dead/delete", [("id", "dead-1")]),
        (f"/queues/{queue}/dead/retry", [("every", "1")]),
        (f"/queues/{queue}/dead/delete", [("every", "1")]),
    ]

    async def scenario(http: Client) -> None:
        for path in pages:
            text = await page(http, path)
            assert 'method="post"' not in text, path
            assert "formaction" not in text, path
            assert re.search(r'class="badge[^"]*">read-only<', text), path
        assert 'name="csrf"' not in await page(http, f"/queues/{queue}/dead")
        for path, form in actions:  # refused before any CSRF token is looked at
            status, _, text = await post(http, path, [("csrf", "0" * 64), *form])
            assert status == 403, path
            assert text == "this dashboard is read-only (--read-only)"

    serve(settings, scenario)
    assert not redis_client.exists(dash_keys.paused)
    assert redis_client.llen(dash_keys.ready) == 1
    assert dead_ids(redis_client, dash_keys) == ["dead-2", "dead-1"]
    assert redis_client.hget(dash_keys.job("run-1"), "cancel_requested") is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "dashboard.example.com"])
def test_an_address_other_machines_reach_needs_a_token(redis_url: str, host: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(f"--host {host} is reachable")):
        DashboardSettings(redis_url=redis_url, host=host)
    assert DashboardSettings(redis_url=redis_url, host=host, token=TOKEN).host == host


@pytest.fixture
def token_settings(redis_url: str, prefix: str) -> DashboardSettings:
    return DashboardSettings(redis_url=redis_url, prefix=prefix, host="0.0.0.0", token=TOKEN)


def test_with_a_token_a_page_sends_a_browser_to_sign_in_and_a_program_a_401(
    token_settings: DashboardSettings, dash_keys: QueueKeys, dash_producer: Producer
) -> None:
    queue = dash_keys.queue
    job_id = dash_producer.push("mail.send", 1)

    async def scenario(http: Client) -> None:
        for path in ("/", f"/queues/{queue}?tab=ready", f"/queues/{queue}/jobs/{job_id}"):
            response = await http.get(path, headers=HTML, allow_redirects=False)
            assert response.status == 303, path
            login = urlsplit(response.headers["Location"])
            assert (login.path, parse_qs(login.query)) == ("/login", {"next": [path]})
            response = await http.get(path, headers=JSON, allow_redirects=False)
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "needs its token" in await response.text()
        wrong = {**JSON, "Authorization": "Bearer wrong-token-000000000"}
        assert (await http.get("/", headers=wrong)).status == 401
        status, _, _ = await post(http, f"/queues/{queue}/pause", {}, **wrong)
        assert status == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        response = await http.get(f"/queues/{queue}", headers=right)
        assert response.status == 200
        assert job_id in await response.text()
        assert (await http.get("/static/app.js")).status == 200  # no token for static files

    serve(token_settings, scenario)


def test_the_right_token_gives_a_cookie_and_no_page_or_cookie_holds_the_token(
    token_settings: DashboardSettings, dash_keys: QueueKeys, dash_producer: Producer
) -> None:
    queue = dash_keys.queue
    dash_producer.push("mail.send", 1)
    seen: list[str] = []  # every body, Location and cookie the dashboard sent

    async def send(http: Client, method: str, path: str, **options: Any) -> tuple[int, str]:
        response = await http.request(method, path, allow_redirects=False, **options)
        text = await response.text()
        seen.extend([text, response.headers.get("Location", "")])
        seen.extend(response.headers.getall("Set-Cookie", []))
        return response.status, response.headers.get("Location", text)

    async def scenario(http: Client) -> None:
        status, login_page = await send(http, "GET", "/login?next=%2Fworkers", headers=HTML)
        assert status == 200
        assert 'name="next" value="/workers"' in login_page
        csrf_field = re.search(r'name="csrf" value="([0-9a-f]{64})"', login_page)
        assert csrf_field
        csrf = csrf_field.group(1)
        status, _ = await send(http, "POST", "/login", data={"token": TOKEN, "next": "/"})
        assert status == 403  # the login form needs its CSRF token too
        status, wrong = await send(http, "POST", "/login", data={"csrf": csrf, "token": "no" * 9})
        assert status == 401
        assert "That is not the token" in wrong
        assert "coroq_auth" not in {cookie.key for cookie in http.session.cookie_jar}

        form = {"csrf": csrf, "token": TOKEN, "next": "//evil.example/"}
        assert await send(http, "POST", "/login", data=form) == (303, "/")  # never elsewhere
        http.session.cookie_jar.clear()
        status, login_page = await send(http, "GET", "/login", headers=HTML)
        csrf_field = re.search(r'name="csrf" value="([0-9a-f]{64})"', login_page)
        assert csrf_field
        form = {"csrf": csrf_field.group(1), "token": TOKEN, "next": "/workers"}
        response = await http.post("/login", data=form, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/workers"
        seen.extend(response.headers.getall("Set-Cookie", []))
        auth = response.cookies["coroq_auth"]
        assert auth["httponly"]
        assert auth["samesite"] == "Strict"

        for path in ("/", "/workers", "/schedules", f"/queues/{queue}", f"/queues/{queue}/dead"):
            status, _ = await send(http, "GET", path, headers=HTML)  # the cookie, now
            assert status == 200, path
        seen.extend(cookie.value for cookie in http.session.cookie_jar)

    serve(token_settings, scenario)
    assert len(seen) > 20
    assert not [found for found in seen if TOKEN in found]


# -- hostile data -----------------------------------------------------------------------------


def test_a_hostile_argument_is_escaped_wherever_it_shows(
    settings: DashboardSettings,
    redis_client: redis.Redis,
    dash_keys: QueueKeys,
    dash_producer: Producer,
) -> None:
    queue = dash_keys.queue
    hostile_id = 'x"><img src=x onerror=alert(2)>'
    waiting = dash_producer.push("mail.send", XSS, _id="waiting-xss")
    dash_producer.push("mail.send", XSS, _id=hostile_id)
    dash_producer.push("mail.send", XSS, _id="later-xss", _delay=3600)
    raw = orjson.dumps({"task": "mail.send", "id": "dead-xss", "args": [XSS]})
    put_dead(redis_client, dash_keys, "dead-xss", error=f"ValueError: {XSS}", raw=raw)
    put_dead(redis_client, dash_keys, hostile_id, task=XSS, reason=XSS, error=XSS)

    async def scenario(http: Client) -> None:
        pages = [
            (f"/queues/{queue}", True),
            (f"/queues/{queue}?tab=delayed", True),
            (f"/queues/{queue}/jobs/{waiting}", True),
            (f"/queues/{queue}/jobs/{quote(hostile_id, safe='')}", True),
            (f"/queues/{queue}/dead", True),
            (f"/queues/{queue}/dead?q={quote(XSS)}", True),
            (f"/queues/{queue}/jobs/dead-xss", True),
            (f"/queues/{queue}/dead?task={quote(XSS)}&reason={quote(hostile_id)}", True),
            (f"/queues/{queue}/jobs/{quote(XSS, safe='')}", False),  # no such job: its id
            ("/?notice=" + quote(XSS), False),
        ]
        response = await http.get(f"/job?id={quote(XSS)}&queue={queue}", allow_redirects=False)
        assert unquote(response.headers["Location"]) == unquote(pages[-2][0])
        for path, shows_argument in pages:
            text = await page(http, path, 404 if path == pages[-2][0] else 200)
            assert "<script>alert" not in text, path
            assert "<img src=x" not in text, path
            assert "onerror=alert(2)>" not in text, path
            if shows_argument:
                assert ESCAPED_XSS in text, path
        assert linked_jobs(await page(http, f"/queues/{queue}"), queue)[1] == hostile_id

    serve(settings, scenario)


def test_hostile_and_huge_entries_leave_every_page_up_and_small(
    settings: DashboardSettings, redis_client: redis.Redis, dash_keys: QueueKeys
) -> None:
    queue = dash_keys.queue
    huge = orjson.dumps({"task": "mail.send", "id": "huge", "args": ["A" * 5_000_000]})
    deep = b'{"task":"deep.task","id":"deep","args":' + b"[" * 1000 + b"]" * 1000 + b"}"
    not_utf8 = b'{"task":"mail.send","id":"bytes","args":["\xff\xfe caf\xe9"]}'
    redis_client.lpush(dash_keys.ready, huge, deep, not_utf8, b"\x00\xff not json at all")
    put_dead(redis_client, dash_keys, "huge", raw=huge)
    put_dead(redis_client, dash_keys, "deep", raw=deep)
    put_dead(redis_client, dash_keys, "bytes", raw=not_utf8)
    redis_client.lpush(dash_keys.dead, b"not json at all <b>", b"[1, 2]", b"\xff\xfe")
    broken = {"id": "broken", "task": "mail.send", "reason": "handler_error", "attempts": "many"}
    broken |= {"failed_at": "yesterday", "raw_base64": "this is !!! not base64"}
    redis_client.lpush(dash_keys.dead, orjson.dumps(broken))
    redis_client.hset(dash_keys.job("broken"), mapping={"status": "dead", "attempts": "many"})
    # Records written by hand, or by a newer version: fields that do not decode.
    redis_client.hset(
        dash_keys.job("odd"),
        mapping={"status": "running", "attempts": "x", "progress": "half", "started_at": "soon"},
    )
    redis_client.hset(dash_keys.job("no-reason"), mapping={"status": "retrying", "error": "oops"})
    redis_client.hset(dash_keys.job("bad-result"), mapping={"status": "succeeded", "result": "{"})

    async def scenario(http: Client) -> None:
        list_pages = [
            f"/queues/{queue}",
            f"/queues/{queue}/dead",
            f"/queues/{queue}/dead?q=AAAA",
            f"/queues/{queue}/dead?task=mail.send",
            "/",
        ]
        for path in list_pages:
            text = await page(http, path)
            assert len(text.encode()) < LIST_PAGE_BYTES, (path, len(text))
        ready = await page(http, f"/queues/{queue}")
        assert '<span class="badge warn">not UTF-8</span>' in ready
        dead = await page(http, f"/queues/{queue}/dead")
        assert '<span class="badge warn">not UTF-8</span>' in dead
        assert "unreadable_entry" in dead
        assert ">many</td>" in dead
        for job_id in ("huge", "deep", "bytes", "broken", "odd", "no-reason", "bad-result"):
            text = await page(http, f"/queues/{queue}/jobs/{job_id}")
            assert len(text.encode()) < JOB_PAGE_BYTES, (job_id, len(text))
        huge_page = await page(http, f"/queues/{queue}/jobs/huge")
        assert "more characters not shown" in huge_page
        assert f"{len(huge)} bytes" in huge_page  # the size of the whole
        assert "not valid UTF-8" in await page(http, f"/queues/{queue}/jobs/bytes")
        assert "oops" in await page(http, f"/queues/{queue}/jobs/no-reason")
        assert "deep.task" in await page(http, f"/queues/{queue}/jobs/deep")

    serve(settings, scenario)


# -- a page's cost does not grow with the list ------------------------------------------------


@pytest.fixture(scope="module")
def million_redis() -> Iterator[tuple[RedisServerProcess, str]]:
    """A private redis-server holding queue `huge` with a million ready jobs and a million
    dead letters, and queue `small` with ten of each, under a prefix of their own."""
    prefix = "million"
    fill = r"""
    local kind, first, last, batch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), {}
    for i = first, last do
      if kind == 'ready' then
        batch[#batch + 1] = '{"task":"bulk.noop","id":"bulk-' .. i .. '","args":[' .. i .. ']}'
      else
        batch[#batch + 1] = '{"id":"dead-' .. i .. '","queue":"q","task":"bulk.fail",'
          .. '"reason":"handler_error","error":"RuntimeError: boom ' .. i .. '",'
          .. '"traceback":"","attempts":3,"failed_at":1796000000.5,"worker":"w-1",'
          .. '"raw":"{\\"task\\":\\"bulk.fail\\",\\"id\\":\\"dead-' .. i
          .. '\\",\\"args\\":[' .. i .. ']}"}'
      end
      if #batch == 5000 or i == last then
        redis.call('LPUSH', KEYS[1], unpack(batch))
        batch = {}
      end
    end
    return redis.call('LLEN', KEYS[1])
    """
    with RedisServerProcess() as server:
        # Filled 100,000 entries a call: one call of a million took longer than a socket read
        # may wait on a loaded machine.
        client = redis.Redis.from_url(server.url, socket_timeout=60)
        for queue, count in (("huge", MILLION), ("small", 10)):
            keys = QueueKeys(queue, prefix)
            for first in range(1, count + 1, 100_000):
                last = min(count, first + 99_999)
                assert client.eval(fill, 1, keys.ready, "ready", first, last) == last
                assert client.eval(fill, 1, keys.dead, "dead", first, last) == last
        orjson.loads(client.lindex(QueueKeys("huge", prefix).dead, 0))  # valid entries
        client.close()
        yield server, prefix


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/queues/{queue}", "of {total}, the next to run first"),
        ("/queues/{queue}?offset={middle}", "of {total}, the next to run first"),
        ("/queues/{queue}/dead", ">{total}</span>"),
        ("/queues/{queue}/dead?start={middle}", ">{total}</span>"),
    ],
)
def test_a_page_of_a_million_entries_costs_what_a_page_of_ten_does(
    million_redis: tuple[RedisServerProcess, str], path: str, shown: str
) -> None:
    server, prefix = million_redis
    counter = redis.Redis.from_url(server.url)
    settings = DashboardSettings(redis_url=server.url, prefix=prefix, refresh=3600)

    async def scenario(http: Client) -> dict[str, int]:
        await page(http, "/")  # the overview, read once and kept
        cost: dict[str, int] = {}
        for queue, total in (("small", 10), ("huge", MILLION)):
            target = path.format(queue=queue, middle=total // 2)
            await page(http, target)  # connections made, as on any later visit
            before = commands_processed(counter)
            text = await page(http, target)
            cost[queue] = commands_processed(counter) - before
            assert shown.format(total=total) in text
        return cost

    cost = serve(settings, scenario)
    counter.close()
    assert cost["huge"] == cost["small"]
    assert 0 < cost["huge"] <= 5


# -- Redis going away -------------------------------------------------------------------------


def test_pages_say_redis_is_unreachable_and_work_again_once_it_is_back(
    private_redis: RedisServerProcess, queue_name: str
) -> None:
    url = private_redis.url
    with Producer(url, queue=queue_name) as producer:
        producer.push("mail.send", 1, _id="job-1")
    with redis.Redis.from_url(url) as client:
        put_dead(client, QueueKeys(queue_name), "dead-1")
    settings = DashboardSettings(redis_url=url, refresh=1.0)
    pages = [
        f"/queues/{queue_name}",
        f"/queues/{queue_name}/dead",
        f"/queues/{queue_name}/jobs/job-1",
        "/schedules",
        f"/job?id=job-1&queue={queue_name}",
    ]

    async def scenario(http: Client) -> None:
        for path in ["/", *pages[:4]]:
            await page(http, path)
        token = await csrf_of(http, f"/queues/{queue_name}")
        private_redis.stop()
        for path in pages:
            text = await page(http, path, 503)
            assert f"Redis at {url}" in text, path
        status, _, text = await post(http, f"/queues/{queue_name}/pause", {"csrf": token})
        assert status == 503
        assert f"Redis at {url}" in text
        deadline = time.monotonic() + 30  # the overview is served from memory until it ages
        response = await http.get("/")
        while response.status == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            response = await http.get("/")
        assert response.status == 503
        assert f"Redis at {url}" in await response.text()

        private_redis.start()  # the same port, empty
        for path in ["/", *pages[:2], pages[3]]:
            await page(http, path)
        assert "Job not found" in await page(http, pages[2], 404)  # read again: gone
        status, _, _ = await post(http, f"/queues/{queue_name}/pause", {"csrf": token})
        assert status == 303

    serve(settings, scenario)


# -- the command ------------------------------------------------------------------------------


def test_the_command_refuses_an_open_address_without_a_token(redis_url: str) -> None:
    result = run_module(
        "producer",
        "dashboard",
        "--host",
        "0.0.0.0",
        "--redis-url",
        redis_url,
        env={"COROQ_DASHBOARD_TOKEN": ""},
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--host 0.0.0.0" in lines[0]
    assert "token" in lines[0]
    assert result.stdout == ""


def test_the_command_refuses_a_short_token(redis_url: str) -> None:
    result = run_module(
        "producer", "dashboard", "--redis-url", redis_url, env={"COROQ_DASHBOARD_TOKEN": "short"}
    )
    assert result.returncode == 2
    assert "the token is 5 characters long" in result.stderr


def test_the_command_says_when_its_port_is_taken(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_module(
            "producer",
            "dashboard",
            *("--port", str(port), "--redis-url", redis_url),
            env={"COROQ_DASHBOARD_TOKEN": ""},
            timeout=30,
        )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert f"cannot listen on 127.0.0.1:{port}" in last


def test_the_command_serves_the_dashboard(redis_url: str, prefix: str, tmp_path: Path) -> None:
    port = free_port()
    with Producer(redis_url, queue="served", prefix=prefix) as producer:
        producer.push("mail.send", 1)
    log = (tmp_path / "dashboard.log").open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "producer", "dashboard", "--port", str(port)),
            *("--redis-url", redis_url, "--prefix", prefix, "--read-only"),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def overview() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    return str(answer.read().decode())
            except OSError:
                assert process.poll() is None, (tmp_path / "dashboard.log").read_text()
                return None

        text = wait_for(overview, timeout=30, interval=0.2)
        assert 'data-queue="served"' in text
        assert "read-only" in text
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    banner = (tmp_path / "dashboard.log").read_text()
    assert f"coroq dashboard (read-only) on http://127.0.0.1:{port}/" in banner
