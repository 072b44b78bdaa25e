"""A worker inside the test process: push jobs, `drain()`, then assert on what they did.

`InProcessWorker(redis_url, queue, tasks=[...])` runs the real worker (consumer thread, event
loop, runner, Lua scripts) on one queue, but only while `drain()` runs: each drain starts a
`Worker`, lets it run every job of the queue until none is left and none is running, stops
it, and returns the records of the jobs that ran. Between drains nothing runs, so what a test
reads then cannot change under it. The pytest plugin (`worker.pytest_plugin`, fixture
`coroq_worker`) builds one per test; docs/testing.md describes both.

Unlike the daemon, it configures no logging, installs no signal handlers and serves no HTTP
endpoints (`metrics_port` 0): it lives inside someone else's process.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterable
from types import ModuleType, TracebackType
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from producer.connection import sync_client
from producer.keys import DEFAULT_PREFIX, QueueKeys
from worker.process.daemon import Worker
from worker.process.sdnotify import SystemdNotifier
from worker.queue_state import QueueInspector, WaitingJob
from worker.registry import TaskRegistry
from worker.settings import WorkerSettings

__all__ = ["DrainTimeout", "InProcessWorker", "WaitingJob"]

# How long a drain waits for its jobs unless told otherwise.
DEFAULT_DRAIN_TIMEOUT = 30.0
# How often a drain looks whether the queue has gone quiet.
LOOK_EVERY = 0.005
# An idle consumer looks at the queue this often: how soon it sees a delayed job that a drain
# made due (a push wakes it at once).
POLL_TIMEOUT = 0.05
# Given to the constructor (the queue's keys depend on them); tasks go through `add_tasks`.
_FIXED_SETTINGS = frozenset({"redis_url", "prefix", "queues", "tasks", "worker_id"})
FAILED_STATUSES = frozenset({"dead", "retrying"})


class DrainTimeout(TimeoutError):
    """A drain ran out of time with jobs left; `waiting` names them (the next to run first)."""

    def __init__(self, message: str, waiting: list[WaitingJob]) -> None:
        super().__init__(message)
        self.waiting = waiting


class _GivenSettingsOnly(WorkerSettings):
    """Settings from the values given here alone: the `COROQ_*` variables and config file of
    the machine running the tests are for its daemons, not for the tests' worker."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class InProcessWorker:
    """Runs the jobs of one queue on demand, in this process (see the module's docstring).

    `tasks`: task modules (names or modules), registered beside the built-in tasks; periodic
    tasks do not tick here. `settings`: worker settings (docs/reference.md#configuration),
    e.g. `default_max_attempts=1`; the machine's `COROQ_*` variables are not read.
    """

    def __init__(
        self,
        redis_url: str,
        queue: str,
        *,
        tasks: Iterable[str | ModuleType] = (),
        prefix: str = DEFAULT_PREFIX,
        **settings: Any,
    ) -> None:
        self.redis_url = redis_url
        self.keys = QueueKeys(queue, prefix)
        self.queue = queue
        self.worker_id = f"test-worker-{uuid.uuid4().hex[:12]}"
        self._tasks: list[str] = []
        self._overrides: dict[str, Any] = {}
        self.settings = self._settings()
        self.registry = TaskRegistry.from_modules([]).without_schedules()
        self.add_tasks(*tasks)
        self.configure(**settings)
        self._inspector = QueueInspector(sync_client(redis_url), self.keys, self.worker_id)
        self._draining = threading.Lock()
        self._failed: dict[str, dict[str, Any]] = {}

    # -- what it runs --------------------------------------------------------------------

    def add_tasks(self, *modules: str | ModuleType) -> None:
        """Register the tasks of more modules (by name, or the modules themselves)."""
        names = [module if isinstance(module, str) else module.__name__ for module in modules]
        registry = TaskRegistry.from_modules([*self._tasks, *names])
        self.registry = registry.without_schedules()
        self._tasks = list(dict.fromkeys([*self._tasks, *names]))

    def configure(self, **settings: Any) -> None:
        """Change worker settings for the drains to come; a bad value raises at once."""
        fixed = sorted(_FIXED_SETTINGS.intersection(settings))
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: set by InProcessWorker itself")
        self.settings = self._settings(**{**self._overrides, **settings})
        self._overrides.update(settings)

    def _settings(self, **overrides: Any) -> WorkerSettings:
        values: dict[str, Any] = {"metrics_port": 0, "poll_timeout": POLL_TIMEOUT, **overrides}
        return _GivenSettingsOnly(
            redis_url=self.redis_url,
            prefix=self.keys.prefix,
            queues=[self.queue],
            worker_id=self.worker_id,
            **values,
        )

    # -- draining ------------------------------------------------------------------------

    def drain(
        self, *, delayed: bool = False, timeout: float = DEFAULT_DRAIN_TIMEOUT
    ) -> dict[str, dict[str, Any]]:
        """Run the queue's jobs until none is left to run now and none is running; return
        `{job_id: record}` (records as `Producer.status` gives them) for the jobs that ran
        during this drain, in the order they last started.

        Jobs waiting in the delayed set (`_delay`, `_at`, retries after a backoff) run once
        due; with `delayed=True` they are made due at once, again and again, until none is
        left (rate limits still hold). After `timeout` seconds it stops the worker (running
        jobs go back to the queue) and raises `DrainTimeout`, naming the jobs left.
        """
        __tracebackhide__ = True  # pytest shows the caller's line, not these
        if not self._draining.acquire(blocking=False):
            raise RuntimeError("this worker is draining already (one drain at a time)")
        try:
            return self._drain(delayed=delayed, timeout=timeout)
        finally:
            self._draining.release()

    async def adrain(
        self,
        *,
        delayed: bool = False,
        # The drain's own limit: on it, the drain stops its worker cleanly, which cancelling
        # the await could not do (the drain runs in a thread).
        timeout: float = DEFAULT_DRAIN_TIMEOUT,  # noqa: ASYNC109
    ) -> dict[str, dict[str, Any]]:
        """`drain` for async tests: it runs in a thread, so the test's event loop (and the
        `AsyncProducer` waits on it) goes on meanwhile."""
        return await asyncio.to_thread(self.drain, delayed=delayed, timeout=timeout)

    def _drain(self, *, delayed: bool, timeout: float) -> dict[str, dict[str, Any]]:
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        since_server, since_local = self._inspector.server_time(), time.time()
        worker = Worker(self.settings, self.registry)
        # Whatever service manager runs the tests is not this worker's.
        worker.notifier = SystemdNotifier(None)
        try:
            worker.start()
        except BaseException:
            if worker.loop_thread.is_alive:  # not closed by `start` itself
                worker.close()
            raise
        quiet = False
        try:
            quiet = self._wait_until_quiet(worker, delayed, deadline)
            error = None if quiet else self._timed_out(timeout)
        finally:
            worker.request_shutdown("drained", immediate=not quiet)
            worker.shutdown()
        if error is not None:
            raise error
        records = self._inspector.records_since(since_server, since_local)
        for job_id, record in records.items():
            if record.get("status") in FAILED_STATUSES:
                self._failed[job_id] = record
            else:
                self._failed.pop(job_id, None)
        return records

    def _wait_until_quiet(self, worker: Worker, delayed: bool, deadline: float) -> bool:
        """Wait until the queue is quiet in Redis and the worker runs nothing; False once
        `deadline` (monotonic) has passed."""
        while True:
            state = self._inspector.state()
            if delayed and state.delayed:
                self._inspector.make_delayed_due()
            elif state.quiet and len(worker.running) == 0:
                # Counted after the state was read: a job the worker still held then had
                # left the processing list, settled, and can add nothing to the queue.
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOOK_EVERY)

    def _timed_out(self, timeout: float) -> DrainTimeout:
        waiting = self._inspector.waiting_jobs()
        state = self._inspector.state()
        lines = [f"drain() gave up after {timeout:g} s; jobs left in queue {self.queue}:"]
        lines += [f"  {job}" for job in waiting]
        notes = {
            "the queue is paused": state.paused,
            f"{state.limited} task limiter(s) hold jobs waiting for a permit": state.limited,
            f"{state.settling} ended job(s) whose dependents are not settled": state.settling,
            f"{state.suspects} job(s) of a lost worker": state.suspects,
        }
        lines += [f"  ({note})" for note, applies in notes.items() if applies]
        if not waiting and len(lines) == 1:
            lines.append("  (none in its lists: a job was still running)")
        return DrainTimeout("\n".join(lines), waiting)

    # -- what the drains saw -------------------------------------------------------------

    @property
    def failed_jobs(self) -> dict[str, dict[str, Any]]:
        """The latest records of the jobs whose latest attempt failed, across the drains so
        far (`dead` or `retrying`, with `error` and `traceback`)."""
        return dict(self._failed)

    def delete_queue(self) -> int:
        """Delete every key of this worker's queue (other queues are left alone)."""
        return self._inspector.delete_queue()

    def close(self) -> None:
        self._inspector.client.close()

    def __enter__(self) -> InProcessWorker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
