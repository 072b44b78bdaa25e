"""The consumer thread: takes a slot, then takes jobs from Redis, then hands them to the loop.

One thread per queue, each with its own blocking Redis connection. A slot (the worker's
concurrency cap, `worker.jobs.slots`) is leased before the pop, so no job leaves the ready
list while the worker has no room for it. A job's path here, top to bottom:

1. `_take`: up to one job per free slot in one round trip (due delayed jobs promoted first),
   or, when none waits, a blocking pop of one (`BLMOVE`, a reliable pop into this worker's
   processing list). The pop's timeout is how often the thread checks whether to stop.
2. `_prepare`: decode and validate each job; bad input goes to the dead list, uncounted.
3. `_start_batch`: register the jobs with their leases and hand the batch to the loop
   (`worker.jobs.handoff`), where the runner counts their starts in one round trip
   (`start.lua`, which also tells a job no longer held) and runs each (`worker.jobs.runner`).
   The thread goes back to taking meanwhile. A job that came by a blocking pop (an idle
   worker) has its start counted by this thread instead, on the connection that took it, and
   reaches the loop ready to run. The registry of running jobs releases each lease when the
   job's life here ends.

When a take says suspects wait (jobs that were running on a worker that died), the thread
runs them first, a group at a time, with every slot of the worker held so that nothing runs
beside them (`_run_trial`, docs/reliability.md#blame).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import structlog
from redis.exceptions import NoPermissionError, RedisError

from producer.envelope import new_job_id
from producer.errors import RedisUnavailable
from worker.errors import MalformedJob
from worker.jobs.decode import ReceivedJob, RejectedJob
from worker.jobs.handoff import HandOff, JobPath
from worker.jobs.protocol import Failure, held_job_id
from worker.jobs.queues import SyncQueue, log_recovered
from worker.jobs.running import RunningJob
from worker.jobs.slots import Lease
from worker.redis_health import ReconnectDelay, SyncOutages

log = structlog.get_logger()

# Extra socket time beyond the blocking pop's own timeout before a connection counts as dead.
SOCKET_TIMEOUT_MARGIN = 5.0
# Most jobs taken in one round trip (when that many slots are free and jobs wait).
TAKE_BATCH = 50
# Redis reads a blocking timeout of 0 as "for ever".
MIN_BLOCK = 0.001
# How often a consumer waiting for a free slot checks whether it should stop.
SLOT_WAIT = 0.25
# How often a consumer of a paused queue looks whether it was resumed (docs/scheduling.md).
PAUSED_POLL = 0.5
# How long `wake` keeps trying to end a pop that was sent as the stop was requested.
WAKE_FOR = 2.0
WAKE_AGAIN_AFTER = 0.02


class ConsumerThread(threading.Thread):
    def __init__(
        self, queue: SyncQueue, path: JobPath, outages: SyncOutages, *, poll_timeout: float,
        burst: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(name=f"coroq-consumer-{queue.protocol.keys.queue}", daemon=True)
        self.keys = queue.protocol.keys
        self._queue = queue
        self._path = path
        self._outages = outages
        self._burst = burst
        # In burst mode an empty queue ends the worker, so look again soon.
        self._block_timeout = min(poll_timeout, 0.5) if burst else poll_timeout
        self._client_id: int | None = None  # of our connection, for `wake`
        # False when the Redis user may not run CLIENT ID: the pop then ends by its timeout.
        # (On a Cluster, the pop and CLIENT UNBLOCK go to the queue's node: SyncQueue.)
        self._can_wake = True
        # Jobs in our processing list that no coroutine holds (a lost take reply, a job whose
        # outcome could not be recorded, a previous life of this worker id) go back.
        self._reconcile = threading.Event()
        self._reconcile.set()
        # At the first take, whatever our processing list holds is from an earlier life of
        # this worker id, which died: taken back as a lost worker's jobs are.
        self._first_take = True
        # Suspects wait in the queue (the last take said so): run them first, alone.
        self._suspects = False
        # The last blocking pop timed out: the queue was idle, so the next take only
        # promotes due delayed jobs (the pop that follows takes a job, if one came).
        self._idle = False
        self._look_again = threading.Event()  # `wake` asks for a full look at the queue
        self._paused = False
        self._hand_off = HandOff(queue, path, self._reconcile, f"{new_job_id()[:16]}-")
        self._delay = ReconnectDelay()  # between takes that failed

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._serve()
        finally:
            self._queue.client.close()

    def _serve(self) -> None:
        while (first := self._lease_first_slot()) is not None:
            if self._suspects:
                first.release()
                self._run_trial()
                continue
            # More free slots mean a batch: one round trip takes up to that many jobs.
            more = TAKE_BATCH - 1
            if self._path.order is not None:
                more = self._path.order.allowance(self.keys.queue, more)
            leases = [first, *self._path.slots.spare(more)]
            popped, raws = self._take_or_wait(leases)
            if raws is None:  # Redis failed; waited a backoff delay
                continue
            if not raws:
                if self._burst and not self._path.stop.is_set() and not self._suspects:
                    return  # the queue is empty
                continue
            if self._path.stop.is_set():  # taken by a pop that was under way at the signal
                # Newest first, each to the consuming end: the oldest ends up taken first.
                for raw, lease in reversed(list(zip(raws, leases, strict=True))):
                    self._give_back(raw)
                    lease.release()
                break
            # A job that came to an idle worker: counted here, so it runs as it reaches the
            # loop (docs/performance.md, W3).
            self._start_batch(raws, leases, count_here=popped)
            if popped:
                # Give up the GIL so that the loop thread, woken by the hand-off, starts the
                # job now rather than once this thread blocks in its next round trip.
                time.sleep(0)

    def wake(self, redis_url: str, until_stopped: bool = True) -> None:
        """Cut short a blocking pop under way: for a shutdown, so that it need not wait for
        the pop's timeout; or to have an idle consumer look at its queue again now.

        CLIENT UNBLOCK (from another connection) ends the pop as if it had timed out: no job
        is taken. A pop sent just after the stop was requested may not be blocked yet when
        the first one arrives, so `until_stopped` sends it again until the thread ends, for a
        short while. Where the command is not allowed, the pop ends by its own timeout.
        """
        if not until_stopped:
            self._look_again.set()
        if self._client_id is None:
            return
        try:
            client = self._queue.unblocker(redis_url)
        except RedisError as exc:  # the pop's node could not be named: it ends by its timeout
            log.debug("consumer.wake_failed", queue=self.keys.queue, error=str(exc))
            return
        try:
            deadline = time.monotonic() + WAKE_FOR
            while self.is_alive():
                client_id = self._client_id
                if client_id is None or client.client_unblock(client_id):
                    return
                if not until_stopped or time.monotonic() > deadline:
                    return
                self.join(WAKE_AGAIN_AFTER)
        except RedisError as exc:
            log.debug("consumer.wake_failed", queue=self.keys.queue, error=str(exc))
        finally:
            client.close()

    def _lease_first_slot(self) -> Lease | None:
        """Wait for a free slot while it is safe to take a job; None once stopping."""
        stop = self._path.stop
        order = self._path.order
        while not stop.is_set():
            if order is not None and not order.wait_turn(self.keys.queue):
                continue  # a queue before this one wants the slots
            lease = self._path.slots.lease(SLOT_WAIT)
            if lease is None:
                continue
            if stop.is_set():  # the slot was freed by a job finishing in the drain
                lease.release()
                return None
            if self._path.heartbeat.fresh():
                return lease
            # Our liveness keys may lapse: a job taken now could be recovered elsewhere.
            lease.release()
            stop.wait(0.1)
        return None

    # -- 1. take ---------------------------------------------------------------------------

    def _take_or_wait(self, leases: list[Lease]) -> tuple[bool, list[bytes] | None]:
        """(whether by a blocking pop, the jobs taken); None after a Redis error, which is
        logged and followed by a backoff wait. Leases left over are released: `leases` ends as
        long as what was taken."""
        try:
            taken = self._take(leases)
        except RedisError as exc:
            self._path.slots.release_unused(leases)
            leases.clear()
            self._take_failed(exc)
            return False, None
        self._delay.reset()
        return taken

    def _take_failed(self, exc: RedisError) -> None:
        if not self._outages.failed(exc, where="consumer"):  # e.g. WRONGTYPE at the key
            log.error("consumer.redis_error", queue=self.keys.queue, error=str(exc))
        self._reconcile.set()  # a take whose reply was lost may have moved jobs
        self._client_id = None  # the next connection has another
        self._path.stop.wait(self._delay.next_delay())

    def _take(self, leases: list[Lease]) -> tuple[bool, list[bytes]]:
        self._reconcile_if_needed()
        # After a pop that timed out, a take of none only promotes due delayed jobs; a look at
        # the suspects asked for by `wake` takes the full look.
        full_look = not self._idle or self._look_again.is_set()
        self._look_again.clear()
        taken = self._queue.take(len(leases) if full_look else 0)
        self._outages.succeeded()  # now, not after a blocking pop of many seconds
        self._suspects = taken.suspects > 0
        self._note_pause(taken.paused)
        self._want(bool(taken.jobs))
        if taken.paused:  # nothing taken; look again shortly (no pop: it would take a job)
            self._keep_leases(leases, 0)
            self._path.stop.wait(PAUSED_POLL)
            return False, []
        if self._suspects:  # the take moved nothing: the suspects run first
            self._keep_leases(leases, 0)
            return False, []
        self._keep_leases(leases, len(taken.jobs) or 1)  # a pop takes one job at most
        if taken.jobs:
            return False, taken.jobs
        # Nothing waits: block until a job is pushed, a delayed job falls due, or it is time
        # to check again (stop, and delayed jobs pushed by others meanwhile). The pop may
        # outlast our liveness keys: a worker frozen (SIGSTOP, a VM pause) with a pop still
        # pending in Redis can be handed a job after it was found lost; the reapers watch a
        # lost worker's list for a while after (worker.process.housekeeping), so such a job
        # comes back, and one that reaches us once our keys may have lapsed goes back.
        block = self._block_timeout
        if taken.next_due_ms >= 0:
            block = min(block, max(MIN_BLOCK, taken.next_due_ms / 1000 - time.time()))
        if block < MIN_BLOCK:
            self._keep_leases(leases, 0)
            return False, []
        if self._client_id is None and self._can_wake:
            try:
                self._client_id = int(self._queue.pop_client().client_id())
            except NoPermissionError:  # a user without CLIENT ID: the pop ends by its timeout
                self._can_wake = False
        if self._path.stop.is_set():  # `wake` cannot end a pop that is not blocked yet
            self._keep_leases(leases, 0)
            return False, []
        raw = self._queue.pop(block)
        self._idle = raw is None
        self._want(raw is not None)
        if raw is not None and not self._path.heartbeat.fresh():
            # Found lost meanwhile, maybe: run here, it could be run elsewhere too.
            log.warning("consumer.pop_while_lapsing", queue=self.keys.queue)
            self._give_back(raw)
            raw = None
        self._keep_leases(leases, 0 if raw is None else 1)
        return True, [] if raw is None else [raw]

    def _want(self, wanting: bool) -> None:
        """Tell the other consumers whether this queue has jobs waiting (priorities)."""
        if self._path.order is not None:
            self._path.order.want(self.keys.queue, wanting)

    def _note_pause(self, paused: bool) -> None:
        if paused != self._paused:
            self._paused = paused
            log.info("queue.paused" if paused else "queue.resumed", queue=self.keys.queue)

    def _reconcile_if_needed(self) -> None:
        if not self._reconcile.is_set():
            return
        self._reconcile.clear()
        if self._first_take:
            found = self._queue.recover_own()
            self._first_take = False
            if found.requeued or found.suspects:
                worker_id = self._queue.protocol.worker_id
                log_recovered(self.keys.queue, worker_id, found)
                self._path.metrics.jobs_recovered(
                    self.keys.queue, found.requeued, found.suspects, found.blamed
                )
        else:
            self._return_unknown_jobs()

    # -- suspects: a trial ------------------------------------------------------------------

    def _run_trial(self) -> None:
        """Take a group of suspects and run it with nothing else on this worker: every slot
        is held until the group has ended, so a crash now can only be theirs, and a crash of
        a group of one is that job's alone (docs/reliability.md#blame)."""
        leases = self._path.slots.lease_all(self._path.stop)
        if leases is None:
            return
        if not self._path.heartbeat.fresh():  # gathering took a while: look again first
            self._path.slots.release_unused(leases)
            return
        used = 0
        try:
            try:
                self._reconcile_if_needed()
                taken = self._queue.take(len(leases), trial=True)
            except RedisError as exc:
                self._take_failed(exc)
                return
            self._delay.reset()
            self._suspects = taken.suspects > 0
            used = len(taken.jobs)
            if not used:
                return
            log.warning(
                "job.trial", queue=self.keys.queue, group=used, suspects_left=taken.suspects
            )
            self._path.metrics.suspect_trial(self.keys.queue)
            self._start_batch(taken.jobs, leases[:used], group=used)
            # The slots not used stay ours until the group has ended.
            while not self._path.running.wait_empty(SLOT_WAIT):
                if self._path.stop.is_set():
                    break
        finally:
            self._path.slots.release_unused(leases[used:])

    def _keep_leases(self, leases: list[Lease], count: int) -> None:
        """Release all but the first `count` leases (before a pop that may wait for seconds,
        so that the worker's other queues can use the slots meanwhile)."""
        if len(leases) > count:
            self._path.slots.release_unused(leases[count:])
            del leases[count:]

    # -- 2. prepare, 3. launch ---------------------------------------------------------------

    def _start_batch(
        self, raws: list[bytes], leases: list[Lease], group: int | None = None,
        count_here: bool = False,
    ) -> None:  # fmt: skip
        """Decode the jobs taken together and hand those to run to the loop. `group`: how
        many jobs at most run on the worker beside them, when that is known (a trial).
        `count_here`: count their starts from this thread rather than from the loop."""
        batch: list[RunningJob] = []
        for raw, lease in zip(raws, leases, strict=True):
            job = self._prepare_safely(raw)
            if job is None:
                lease.release()
            else:
                batch.append(self._path.running.add(job, lease))
        if batch:
            if group is None and self._path.slots.capacity == 1:
                group = 1  # this worker runs one job at a time
            self._hand_off.launch(batch, group, count_here)

    def _prepare_safely(self, raw: bytes) -> ReceivedJob | None:
        """The job to run; None when it was dead-lettered (or kept back)."""
        try:
            return self._prepare(raw)
        except RedisUnavailable:
            return None  # stopping during an outage: the job stays in the processing list
        except Exception as exc:
            # A bug, not bad input (bad input is dead-lettered before this). Keep serving,
            # and keep the job visible: it goes to the dead list with the error.
            log.exception("consumer.dispatch_error", queue=self.keys.queue)
            self._dead_letter_after_bug(raw, exc)
            return None

    def _prepare(self, raw: bytes) -> ReceivedJob | None:
        decoded = self._path.decode(raw, self.keys)
        if isinstance(decoded, RejectedJob):
            self._reject(decoded)
            return None
        if decoded.stamped is not None:
            # Give the job its id in the processing list too, so a re-run keeps it.
            self._call(self._queue.protocol.adopt(raw, decoded.stamped), "adopt")
            return decoded.adopted()
        return decoded

    # -- jobs that go back or to the dead list -----------------------------------------------

    def _give_back(self, raw: bytes) -> None:
        """Return a job taken but not started to the consuming end of the ready list."""
        call = self._queue.protocol.requeue(held_job_id(raw), raw, undo_start=False)
        # Stopping during an outage: the job stays in the processing list.
        with contextlib.suppress(RedisUnavailable):
            self._call(call, "requeue")

    def _return_unknown_jobs(self) -> None:
        """Put back jobs in our processing list that no coroutine holds.

        A take whose reply was lost with the connection leaves its jobs there, uncounted; a job
        whose outcome could not be recorded, counted (it ran); so does an earlier process that
        used the same worker id. The requeue script only moves what is still in the list, so a
        job acknowledged meanwhile is left alone.
        """
        for raw in self._queue.held():
            if not self._path.running.holds(raw):
                call = self._queue.protocol.requeue(held_job_id(raw), raw, undo_start=False)
                if self._queue.run(call):
                    log.warning("consumer.job_returned", queue=self.keys.queue)

    def _reject(self, job: RejectedJob) -> None:
        error = job.error
        failure = Failure(error.reason, str(error), "")
        call = self._queue.protocol.dead_letter(
            job.job_id, job.raw, job.task, failure, None, job.links
        )
        written = self._call(call, "dead")
        self._path.metrics.job_finished(self.keys.queue, job.task, "dead", None)
        if written:  # 0: no longer held (recovered meanwhile), it ends elsewhere
            self._path.throughput.failed(self.keys.queue)
        log.error(
            "job.dead",
            job_id=job.job_id,
            task=job.task,
            queue=self.keys.queue,
            attempt=0,
            reason=error.reason,
            error=str(error),
            payload_bytes=len(job.raw),
        )

    def _dead_letter_after_bug(self, raw: bytes, error: Exception) -> None:
        problem = MalformedJob("worker_error", f"the worker could not dispatch it: {error!r}")
        try:
            self._reject(RejectedJob(raw, self.keys, new_job_id(), None, problem))
        except Exception:  # the job stays in the processing list, still visible there
            log.exception("consumer.dead_letter_failed", queue=self.keys.queue)

    def _call(self, call: Any, what: str) -> Any:
        """Run a script, waiting out a Redis outage until the worker stops."""
        return self._outages.call(
            lambda: self._queue.run(call), where=f"consumer.{what}", stop=self._path.stop
        )
