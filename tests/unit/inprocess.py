"""What the in-process tests of the worker share: settings on the test Redis, the tasks they
run, a tracker those tasks report to, and a blocking client whose calls can be made to fail.

The tasks run on an event loop thread of the test process (never a subprocess), so they
report straight to `TRACKER`; the `tracker` fixture of each test module resets it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
import redis

from producer.keys import QueueKeys
from producer.records import decode_record
from producer.scripts import ScriptCall, SyncScripts
from worker import Backoff, Fail, Retry, current_job, task
from worker.jobs.protocol import WORKER_SCRIPTS, QueueProtocol
from worker.jobs.queues import AsyncQueue, SyncQueue
from worker.jobs.throughput import ThroughputCounter
from worker.registry import TaskRegistry, specs_in_module
from worker.settings import WorkerSettings


class Tracker:
    """What the test tasks did: how many ran at once, and each job's attempts here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.active = 0
        self.most = 0
        self.attempts: dict[str, list[int]] = {}
        self.threads: dict[str, str] = {}
        self.finished: Counter[str] = Counter()
        self.gate = threading.Event()  # `inproc.gated` jobs finish once it is set
        self.running: set[str] = set()
        self.beside: dict[str, set[str]] = {}  # job id -> the jobs that ran while it ran
        self.order: list[tuple[str, str]] = []  # ("enter" or "leave", job id)

    def enter(self) -> None:
        info = current_job()
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)
            self.attempts.setdefault(info.id, []).append(info.attempt)
            self.threads[info.id] = threading.current_thread().name
            for other in self.running:
                self.beside.setdefault(other, set()).add(info.id)
                self.beside.setdefault(info.id, set()).add(other)
            self.running.add(info.id)
            self.order.append(("enter", info.id))

    def leave(self) -> None:
        info = current_job()
        with self._lock:
            self.active -= 1
            self.finished[info.id] += 1
            self.running.discard(info.id)
            self.order.append(("leave", info.id))

    def started(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self.attempts

    def runs(self) -> int:
        with self._lock:
            return sum(len(attempts) for attempts in self.attempts.values())


TRACKER = Tracker()


@task("inproc.work")
async def work(seconds: float = 0.0) -> str:
    TRACKER.enter()
    try:
        await asyncio.sleep(seconds)
    finally:
        TRACKER.leave()
    return current_job().id


@task("inproc.fail", backoff=Backoff(base=10, factor=2, cap=10))
async def fail(message: str = "boom") -> None:
    TRACKER.enter()
    TRACKER.leave()
    raise RuntimeError(message)


@task("inproc.retry_after")
async def retry_after(seconds: float) -> None:
    TRACKER.enter()
    TRACKER.leave()
    raise Retry("later", after=seconds)


@task("inproc.flaky")
async def flaky(succeed_on: int) -> int:
    """Fails until its attempt number reaches `succeed_on`."""
    TRACKER.enter()
    TRACKER.leave()
    attempt = current_job().attempt
    if attempt < succeed_on:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt


@task("inproc.fail_for_good")
async def fail_for_good() -> None:
    raise Fail("never works")


@task("inproc.gated")
async def gated() -> str:
    """Runs until the test opens `TRACKER.gate` (from its own thread)."""
    TRACKER.enter()
    try:
        while not TRACKER.gate.is_set():  # noqa: ASYNC110 - a threading.Event, set elsewhere
            await asyncio.sleep(0.005)
    finally:
        TRACKER.leave()
    return current_job().id


@task("inproc.hang")
async def hang() -> None:
    TRACKER.enter()
    try:
        await asyncio.sleep(3600)
    finally:
        TRACKER.leave()


@task("inproc.sync")
def sync_work() -> dict[str, object]:
    TRACKER.enter()
    TRACKER.leave()
    info = current_job()
    return {"thread": threading.current_thread().name, "id": info.id, "attempt": info.attempt}


@task("inproc.unserialisable")
async def unserialisable() -> object:
    return object()


def registry() -> TaskRegistry:
    """The tasks of this module (and nothing else, not even the built-ins)."""
    return TaskRegistry(specs_in_module(sys.modules[__name__]))


def make_settings(redis_url: str, queues: Sequence[str], **overrides: Any) -> WorkerSettings:
    """Settings on the test Redis and queues, fast timings, no HTTP endpoints."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "queues": list(queues),
        "metrics_port": 0,
        "concurrency": 4,
        "poll_timeout": 1.0,
        "heartbeat_interval": 0.5,
        "heartbeat_ttl": 3.0,
        "shutdown_grace": 5.0,
        "sync_threads": 4,
        "http_max_connections": 4,
        "retry_base": 10.0,
        "retry_cap": 10.0,
        **overrides,
    }
    return WorkerSettings(**values)


def job(task_name: str, job_id: str | None, *args: Any, **fields: Any) -> bytes:
    """A job's bytes as a producer pushes them (no id when `job_id` is None)."""
    data: dict[str, Any] = {"task": task_name, "args": list(args), **fields}
    if job_id is not None:
        data["id"] = job_id
    return orjson.dumps(data)


def push(client: redis.Redis, keys: QueueKeys, *raws: bytes) -> None:
    """Push jobs in the order they should run (the first pushed is taken first)."""
    client.lpush(keys.ready, *raws)


def ready_ids(client: redis.Redis, keys: QueueKeys) -> list[str]:
    """The ids in the ready list, in the order they will be taken."""
    return [orjson.loads(raw)["id"] for raw in reversed(client.lrange(keys.ready, 0, -1))]


def record(client: redis.Redis, keys: QueueKeys, job_id: str) -> dict[str, Any]:
    return decode_record(client.hgetall(keys.job(job_id)))


def dead_entries(client: redis.Redis, keys: QueueKeys) -> list[dict[str, Any]]:
    return [orjson.loads(entry) for entry in client.lrange(keys.dead, 0, -1)]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in logs if line.get("event") == name]


def counted_outcomes(counter: ThroughputCounter, queue: str) -> dict[str, int]:
    """What `counter` counted for `queue`'s throughput history, by outcome, whatever the
    minute (taken: the counter starts again from nothing)."""
    found: dict[str, int] = {}
    for (counted_queue, _, outcome), count in counter.take().items():
        assert counted_queue == queue
        found[outcome] = found.get(outcome, 0) + count
    return found


# -- failures at the seams of the consumer's Redis calls --------------------------------------

# A fault gets the real call (to run it, or not) and the script call when there is one.
Fault = Callable[[Callable[[], Any], ScriptCall | None], Any]


def link_dropped(real: Callable[[], Any], call: ScriptCall | None) -> Any:
    """The connection drops before the command reaches Redis: nothing ran."""
    raise redis.ConnectionError("Connection reset by peer (injected before the command)")


def reply_lost(real: Callable[[], Any], call: ScriptCall | None) -> Any:
    """The command ran in Redis, then the connection dropped before its reply came back."""
    real()
    raise redis.ConnectionError("Connection reset by peer (injected: the reply was lost)")


def server_error(real: Callable[[], Any], call: ScriptCall | None) -> Any:
    """A reply no waiting can cure (the caller's error, not an outage)."""
    raise redis.ResponseError("ERR injected: not an outage")


class SeamQueue(SyncQueue):
    """The real `SyncQueue`, with faults injected at its seams (G17): the script calls by
    script name (take, start, adopt, dead, requeue), and the `pop` and `held` commands.

    Each seam has a list of faults; each call at that seam uses up the next one, and calls
    after the last run normally. `calls` counts the calls at each seam, `seen` keeps the
    script calls made.
    """

    def __init__(
        self, protocol: QueueProtocol, client: redis.Redis, faults: Mapping[str, Sequence[Fault]]
    ) -> None:
        super().__init__(protocol, client)
        self._faults = {seam: list(found) for seam, found in faults.items()}
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.seen: list[ScriptCall] = []

    def add_faults(self, seam: str, *faults: Fault) -> None:
        with self._lock:
            self._faults.setdefault(seam, []).extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def run(self, call: ScriptCall) -> Any:
        with self._lock:
            self.seen.append(call)
        return self._through(call.script, lambda: SyncQueue.run(self, call), call)

    def run_on(self, scripts: SyncScripts, call: ScriptCall) -> Any:
        """A call of the event loop's, on its own client, through the same seams."""
        with self._lock:
            self.seen.append(call)
        return self._through(call.script, lambda: scripts.run(call), call)

    def pop(self, block: float) -> bytes | None:
        result: bytes | None = self._through("pop", lambda: SyncQueue.pop(self, block), None)
        return result

    def held(self) -> list[bytes]:
        result: list[bytes] = self._through("held", lambda: SyncQueue.held(self), None)
        return result

    def _through(self, seam: str, real: Callable[[], Any], call: ScriptCall | None) -> Any:
        with self._lock:
            self.calls[seam] += 1
            pending = self._faults.get(seam)
            fault = pending.pop(0) if pending else None
        return real() if fault is None else fault(real, call)


class SeamAsyncQueue(AsyncQueue):
    """The real `AsyncQueue` of the loop, whose script calls named in `LOOP_SEAMS` go through
    a `SeamQueue` once one is attached (`attach`): its faults apply to them, and its counts
    and `seen` include them. Such a call runs, in a thread, on a blocking client of its own
    (not the consumer's, whose connection must stay the one its pop blocks on), so that a
    fault can run it (or not) before it fails."""

    LOOP_SEAMS = frozenset({"start"})

    seams: SeamQueue | None = None
    _side: SyncScripts | None = None

    def attach(self, seams: SeamQueue, client: redis.Redis) -> None:
        self.seams = seams
        self._side = SyncScripts(client, WORKER_SCRIPTS)

    async def run(self, call: ScriptCall) -> Any:
        seams, side = self.seams, self._side
        if seams is None or side is None or call.script not in self.LOOP_SEAMS:
            return await super().run(call)
        return await asyncio.to_thread(seams.run_on, side, call)


def blocked_in_pop(client: redis.Redis, client_id: int | None) -> bool:
    """Whether the connection `client_id` is blocked in a BLMOVE on the server."""
    if client_id is None:
        return False
    for info in client.client_list():
        if int(info["id"]) == client_id:
            return info.get("cmd") == "blmove" and "b" in info.get("flags", "")
    return False


T = TypeVar("T")


def returns_within(seconds: float, step: Callable[[], T], what: str) -> T:
    """Run `step` on a helper thread and return its result; fail, rather than hang the suite,
    when it has not returned within `seconds`. A step blocked in C code (an event loop's
    close waiting in epoll) cannot be interrupted by pytest-timeout's signal; the helper
    thread is left behind (a daemon) and the test fails naming the step."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = step()
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    helper = threading.Thread(target=run, name=f"test-step-{what}", daemon=True)
    helper.start()
    helper.join(seconds)
    if helper.is_alive():
        raise AssertionError(f"{what} did not return within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    result: T = outcome["result"]
    return result
