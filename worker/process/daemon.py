"""The worker process: wires the threads together and runs the shutdown sequence.

Threads: one consumer per queue (takes jobs), one event loop (runs them), a thread pool for
`def` tasks, and the main thread, which waits for a signal and then drains. Shutdown is a
sequence of small steps (`stop_consumers`, `wait_for_running`, `cancel_running`, `close`) that
tests can call one by one without sending signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
import structlog

from producer.connection import async_client, sync_client
from producer.keys import QueueKeys
from producer.scripts import PipelinedScripts
from worker.cpu_affinity import available_cpus, format_cpu_list
from worker.jobs.cancels import CancelListener
from worker.jobs.consumer import SOCKET_TIMEOUT_MARGIN, ConsumerThread
from worker.jobs.decode import decode_job
from worker.jobs.handoff import JobPath
from worker.jobs.outcomes import OutcomeStore
from worker.jobs.priorities import QueueOrder
from worker.jobs.protocol import QueueProtocol
from worker.jobs.queues import AsyncQueue, SyncQueue, pipelined_worker_scripts
from worker.jobs.runner import REQUEUE_GIVE_UP_AFTER, JobRunner
from worker.jobs.running import RunningJobs
from worker.jobs.slots import Slots
from worker.jobs.throughput import ThroughputCounter
from worker.metrics import WorkerMetrics, refresh_queue_depths
from worker.permissions import RedisPermissionsMissing, require_permissions
from worker.process.heartbeat import HeartbeatThread
from worker.process.housekeeping import (
    LimitSweeper,
    Reaper,
    UniqueTaskDeclaration,
    cancel_until_done,
    describe_task,
    run_periodically,
    warn_if_redis_may_evict,
)
from worker.process.http_endpoints import HealthServer, PortUnavailable, listen
from worker.process.loop_thread import EventLoopThread, loop_implementation
from worker.process.scheduler import Scheduler, all_schedules
from worker.process.sdnotify import SystemdNotifier
from worker.process.supervisor import supervised, supervisor_gone
from worker.process.watchdog import LoopWatchdog
from worker.redis_health import AsyncOutages, RedisHealth, SyncOutages
from worker.registry import TaskRegistry
from worker.retry import Backoff
from worker.settings import WorkerSettings
from worker.tasks.http_session import SharedHttpSession

if TYPE_CHECKING:  # imported only by a worker that traces its jobs
    from worker.tracing.spans import JobTracer

log = structlog.get_logger()

# How long a start waits for the cancel listener to subscribe before taking jobs anyway.
SUBSCRIBE_WAIT = 2.0

# Allocations between two collections of the youngest generation (Python's default: 700).
GC_YOUNG_THRESHOLD = 20_000
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextlib.contextmanager
def signals_to_the_main_thread() -> Iterator[None]:
    """Block the stop signals while the worker starts its threads: a thread inherits the mask
    of the thread that starts it (the executor's, started later by the loop thread, too), so
    none of them takes a stop signal meant for the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# How long `close` waits for the housekeeping loops to end before it closes their connections.
HOUSEKEEPING_STOP_WITHIN = 5.0


@dataclass(frozen=True, slots=True)
class ShutdownSummary:
    reason: str
    finished_in_grace: bool
    cancelled: int
    duration_s: float
    exit_code: int = 0  # 2: stopped by a setting to fix (Redis refused a command)


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        registry: TaskRegistry,
        *,
        burst: bool = False,
        tracer: JobTracer | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.burst = burst
        self._tracer = tracer  # spans of the jobs, when tracing is in use (docs/tracing.md)
        self.running = RunningJobs()
        self.slots = Slots(settings.concurrency)
        self.slots.on_gather = self._wake_idle_consumers
        self.metrics = WorkerMetrics(known_tasks=registry.names())
        self.metrics.set_in_flight_source(lambda: len(self.running))
        self.metrics.set_loop_lag_source(self._loop_lag)
        self.health = RedisHealth(
            settings.redacted_redis_url, self.metrics.redis_reconnect, self._refused
        )
        self._exit_code = 0
        self.notifier = SystemdNotifier.from_environment()
        self._http_server: HealthServer | None = None
        self.loop_thread = EventLoopThread()
        self._stop_taking = threading.Event()
        self._shutdown_requested = threading.Event()
        self._immediate = threading.Event()
        self._shutdown_reason = "unknown"
        self._executor = ThreadPoolExecutor(settings.sync_threads, thread_name_prefix="coroq-sync")
        self._http = SharedHttpSession(settings.http_max_connections)
        self._redis: redis.asyncio.Redis | None = None
        self._scripts: PipelinedScripts | None = None  # the event loop's, on `_redis`
        self._runner: JobRunner | None = None
        self._consumers: list[ConsumerThread] = []
        self._housekeeping: list[asyncio.Task[None]] = []
        # Jobs that ended here per queue and minute; the heartbeat writes them to Redis.
        self.throughput = ThroughputCounter()
        self.heartbeat = HeartbeatThread(
            settings, self.health, self._finished_jobs, self.running.permits, self.throughput
        )
        self.watchdog: LoopWatchdog | None = None
        self.reaper: Reaper | None = None

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        self.loop_thread.start()
        self._serve_http()  # before the first beat, which says where it serves
        self.heartbeat.start()
        self._redis = async_client(self.settings.redis_url)
        outages = AsyncOutages(self._redis, self.health)
        scripts = self._scripts = pipelined_worker_scripts(self._redis, self.settings.redis_url)
        queues = {
            queue: AsyncQueue(self._protocol(queue), scripts, self._redis)
            for queue in self.settings.queues
        }
        store = OutcomeStore(queues, outages)
        backoff = Backoff(
            self.settings.retry_base, self.settings.retry_factor, self.settings.retry_cap
        )
        self._runner = JobRunner(
            store, self._executor, self._http, backoff, self.metrics, self.throughput, self._tracer
        )
        try:
            keys = [queue.protocol.keys for queue in queues.values()]
            self.loop_thread.run(require_permissions(self._redis, keys), timeout=10)
        except RedisPermissionsMissing:
            self.close()
            raise
        self.loop_thread.run(
            self._start_housekeeping(self._redis, list(queues.values()), outages), timeout=10
        )
        self.watchdog = LoopWatchdog(
            self.loop_thread.loop,
            self._describe_running_job,
            threshold=self.settings.loop_lag_threshold,
            busy=lambda: len(self.running) > 0,
        )
        self.watchdog.start()
        path = self._job_path(self._runner)
        for queue in self.settings.queues:
            consumer = self._consumer(queue, path)
            consumer.start()
            self._consumers.append(consumer)
        log.info(
            "worker.started",
            worker_id=self.settings.worker_id,
            queues=self.settings.queues,
            concurrency=self.settings.concurrency,
            tasks=self.registry.names(),
            redis=self.settings.redacted_redis_url,
            event_loop=loop_implementation(self.loop_thread.loop),
            burst=self.burst,
            recovery_after_s=self.settings.heartbeat_ttl + self.settings.reaper_interval,
            metrics_port=self.heartbeat.metrics_port,
            cpus=format_cpu_list(available_cpus()),
        )
        self.notifier.ready(status=f"serving {', '.join(self.settings.queues)}")

    def _protocol(self, queue: str) -> QueueProtocol:
        keys = QueueKeys(queue, self.settings.prefix)
        settings = self.settings
        return QueueProtocol(
            keys, settings.worker_id, settings.result_ttl, permit_lease=settings.heartbeat_ttl
        )

    def _job_path(self, runner: JobRunner) -> JobPath:
        return JobPath(
            slots=self.slots,
            running=self.running,
            loop=self.loop_thread,
            start_jobs=runner.start,
            launch=runner.launch,
            decode=functools.partial(decode_job, registry=self.registry, settings=self.settings),
            heartbeat=self.heartbeat,
            metrics=self.metrics,
            stop=self._stop_taking,
            order=None
            if len(self.settings.queues) == 1
            else QueueOrder(
                self.settings.queues,
                self.settings.queue_weights,
                self.running.count,
                self.settings.concurrency,
            ),
            throughput=self.throughput,
        )

    def _consumer(self, queue: str, path: JobPath) -> ConsumerThread:
        """A consumer thread with a blocking connection of its own."""
        client = sync_client(
            self.settings.redis_url,
            retries=0,  # failures come back to the consumer, which waits outages out
            socket_timeout=self.settings.poll_timeout + SOCKET_TIMEOUT_MARGIN,
        )
        return ConsumerThread(
            SyncQueue(self._protocol(queue), client),
            path,
            SyncOutages(client, self.health),
            poll_timeout=self.settings.poll_timeout,
            burst=self.burst,
        )

    async def _start_housekeeping(
        self, client: redis.asyncio.Redis, queues: list[AsyncQueue], outages: AsyncOutages
    ) -> None:
        """Start the periodic loops on the event loop; they run until `close`."""
        await warn_if_redis_may_evict(client, outages)
        sweeper = LimitSweeper(client, queues)
        self.reaper = Reaper(
            client,
            queues,
            interval=float(self.settings.reaper_interval),
            metrics=self.metrics,
            on_suspects=self._suspects_found,
            on_recovered=sweeper.sweep_soon,
            # A pop the lost worker left pending ends within poll_timeout of its sending.
            watch_lost_for=self.settings.poll_timeout + 1.0,
        )
        cancels = CancelListener(client, [queue.protocol.keys for queue in queues], self.running)
        self._housekeeping += cancels.tasks()
        # Cancels are heard from the first job on. Bounded: Redis going away now is waited
        # out by the listener, not by the start.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cancels.subscribed.wait(), SUBSCRIBE_WAIT)
        by_queue = {queue.protocol.keys.queue: queue for queue in queues}
        scheduler = Scheduler(
            [
                (schedule, by_queue[schedule.queue or self.settings.queues[0]])
                for schedule in all_schedules(self.settings, self.registry)
            ]
        )
        self._housekeeping.append(asyncio.create_task(scheduler.run(), name="schedules"))
        declaration = UniqueTaskDeclaration(client, queues, self.registry)
        steps = (
            ("reaper", self.reaper.step),
            ("reaper.scan", self.reaper.scan_step),
            ("limits", sweeper.step),
            ("unique_tasks", declaration.step),
        )
        for name, step in steps:
            self._housekeeping.append(
                asyncio.create_task(run_periodically(name, step, outages), name=name)
            )
        interval = self.notifier.watchdog_interval()
        if interval is not None:
            # Pinged from the loop itself: a wedged loop stops the pings, and systemd
            # restarts the service.
            self._housekeeping.append(
                asyncio.create_task(self._ping_watchdog(interval), name="watchdog")
            )

    def _wake_idle_consumers(self) -> None:
        """A consumer gathers every slot for a trial: end the blocking pops of the others,
        which hold a slot each, so that it need not wait for their timeouts."""
        for consumer in self._consumers:
            if consumer is not threading.current_thread():
                consumer.wake(self.settings.redis_url, until_stopped=False)

    def _suspects_found(self, queue: str) -> None:
        """Suspects now wait in `queue`: cut short the blocking pop of its idle consumer, so
        that it runs them now rather than at the pop's timeout (in a thread: it blocks)."""
        for consumer in self._consumers:
            if consumer.keys.queue == queue:
                self.loop_thread.loop.run_in_executor(
                    None, consumer.wake, self.settings.redis_url, False
                )

    async def _ping_watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def _serve_http(self) -> None:
        """Serve /metrics, /healthz and /readyz, before any job is taken: a port that cannot
        be used stops the start with nothing held. A port left at its default that is taken
        (another worker on this host) gives way to the next free one; a port set on purpose
        does not."""
        settings = self.settings
        if not settings.metrics_port:
            return
        self._http_server = HealthServer(
            settings.metrics_host,
            settings.metrics_port,
            self.metrics,
            is_live=self._is_live,
            is_ready=self._is_ready,
            before_scrape=self._read_queue_depths,
        )
        chosen = "metrics_port" in settings.model_fields_set
        try:
            self.loop_thread.run(listen(self._http_server, port_chosen=chosen), timeout=10)
        except PortUnavailable:
            self.close()
            raise
        self.heartbeat.metrics_port = self._http_server.port

    def _is_live(self) -> tuple[bool, str]:
        """The loop answers (this runs on it); every consumer thread is alive."""
        if self._stop_taking.is_set():
            return True, "draining"
        for consumer in self._consumers:
            if not consumer.is_alive():
                return False, f"the consumer thread of queue {consumer.keys.queue} has died"
        return True, "ok"

    def _is_ready(self) -> tuple[bool, str]:
        if self.health.reachable:
            return True, "ok"
        return False, f"Redis at {self.settings.redacted_redis_url} is unreachable"

    async def _read_queue_depths(self) -> None:
        if self._redis is not None:
            queues = [QueueKeys(queue, self.settings.prefix) for queue in self.settings.queues]
            await refresh_queue_depths(self._redis, queues, self.metrics)

    def _finished_jobs(self) -> int:
        return 0 if self._runner is None else self._runner.finished_total

    def _loop_lag(self) -> float:
        return 0.0 if self.watchdog is None else self.watchdog.lag_seconds

    def _describe_running_job(self, running: asyncio.Task[Any] | None) -> dict[str, object] | None:
        job = self.running.job_of(running)
        if job is None:
            return None
        return {"job_id": job.id, "task": job.task, "queue": job.queue}

    # -- run -----------------------------------------------------------------------------

    def run(self) -> ShutdownSummary:
        """Start, serve until a signal (or, in burst mode, an empty queue), then drain."""
        self._install_signal_handlers()
        with signals_to_the_main_thread():
            self.start()
        # Everything made so far (modules, tasks, settings) lives as long as the process:
        # keep the cycle collector from walking it again and again while jobs run, and let
        # it run less often (each job makes a few short-lived objects and almost no cycles).
        # Together: a fifth more jobs per second, a few MB more at most.
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
        self.wait_for_shutdown_request()
        return self.shutdown()

    def wait_for_shutdown_request(self) -> None:
        # Signals wake this wait at once; the period is how soon burst mode sees the queues
        # drained, and a child of the supervisor sees it gone. A plain worker has nothing to
        # look at: waking it each second cost an idle worker a fifth of its CPU time.
        period = 0.2 if self.burst else 1.0 if supervised() else 60.0
        while not self._shutdown_requested.wait(period):
            if supervisor_gone():
                self.request_shutdown("supervisor_gone")
            drained = not any(consumer.is_alive() for consumer in self._consumers)
            if self.burst and drained and self.running.wait_empty(0.2):
                self.request_shutdown("drained")

    def request_shutdown(self, reason: str, *, immediate: bool = False) -> None:
        """Begin a graceful stop; a second request (or `immediate`) cuts the grace short."""
        hurry = immediate or self._shutdown_requested.is_set()
        if hurry and not self._immediate.is_set():
            self._immediate.set()
            log.warning("worker.shutdown_hurried", reason=reason)
        if not self._shutdown_requested.is_set():
            self._shutdown_reason = reason
            self._stop_taking.set()
            self._shutdown_requested.set()
            self.notifier.stopping(status=f"draining {len(self.running)} job(s)")
            log.info(
                "worker.draining",
                reason=reason,
                in_flight=len(self.running),
                grace_s=self.settings.shutdown_grace,
            )

    def _refused(self, error: str) -> None:
        """Redis refused a command to our user: no waiting cures that; stop, exit 2."""
        self._exit_code = 2
        self.request_shutdown("redis_permission_denied")

    def _install_signal_handlers(self) -> None:
        # Python runs signal handlers in the main thread, but the kernel delivers a signal to
        # any thread that does not block it: one that lands on another thread leaves the main
        # thread asleep in its wait (up to a minute). `run` starts every thread with these
        # signals blocked (`signals_to_the_main_thread`), so they reach the main thread.
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.request_shutdown(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # -- shutdown, step by step -------------------------------------------------------------

    def shutdown(self) -> ShutdownSummary:
        started = time.monotonic()
        self._stop_taking.set()
        self.stop_consumers()
        finished = self.wait_for_running(started + self.settings.shutdown_grace)
        cancelled = 0 if finished else self.cancel_running()
        self.close()
        summary = ShutdownSummary(
            reason=self._shutdown_reason,
            finished_in_grace=finished,
            cancelled=cancelled,
            duration_s=round(time.monotonic() - started, 3),
            exit_code=self._exit_code,
        )
        log.info(
            "worker.stopped",
            reason=summary.reason,
            cancelled=summary.cancelled,
            duration_s=summary.duration_s,
        )
        return summary

    def stop_consumers(self) -> None:
        """Stop taking jobs, cutting short the blocking pops under way."""
        self._stop_taking.set()
        for consumer in self._consumers:
            consumer.wake(self.settings.redis_url)
        for consumer in self._consumers:
            consumer.join(self.settings.poll_timeout + SOCKET_TIMEOUT_MARGIN + 1)

    def wait_for_running(self, deadline: float) -> bool:
        """Let running jobs finish until `deadline` (monotonic) or an immediate request."""
        while not self._immediate.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self.running.wait_empty(min(remaining, 0.2)):
                return True
        return len(self.running) == 0

    def cancel_running(self) -> int:
        """Cancel what is still running; each job puts itself back at the front of its queue."""
        count = len(self.running)
        if count:
            self.loop_thread.call_soon(self.running.cancel_all)
            if not self.running.wait_empty(REQUEUE_GIVE_UP_AFTER + 5):
                log.error("worker.jobs_not_released", count=len(self.running))
        return count

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.loop_thread.is_alive:
            try:
                self.loop_thread.run(self._close_on_loop(), timeout=10)
            except Exception as exc:  # noqa: BLE001 - closing must go on to stop the loop
                stuck = isinstance(exc, TimeoutError)
                log.warning(
                    "worker.close_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    loop_stack=self.loop_thread.stack() if stuck else None,
                )
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.loop_thread.stop()
        if self._tracer is not None:
            self._tracer.close()  # the spans still buffered go out before the process ends
        # Jobs still in our processing lists (an outage kept them from going back) are
        # recovered by other workers once the liveness keys lapse; otherwise clear them now.
        self.heartbeat.stop(clear=len(self.running) == 0 and self._nothing_held())

    def _nothing_held(self) -> bool:
        try:
            return self.heartbeat.holds_nothing()
        except redis.RedisError:
            return False

    async def _close_on_loop(self) -> None:
        still_running = await cancel_until_done(self._housekeeping, within=HOUSEKEEPING_STOP_WITHIN)
        if still_running:
            log.warning(
                "worker.housekeeping_not_stopped",
                tasks=[describe_task(task) for task in still_running],
            )
        if self._http_server is not None:
            await self._http_server.stop()
        await self._http.close()
        if self._scripts is not None:
            await self._scripts.aclose()
        if self._redis is not None:
            await self._redis.aclose()
