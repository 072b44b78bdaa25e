"""The completion listener of the synchronous `Producer`: `producer.completions`, with its
pub/sub connection read by a daemon thread instead of a task. The same marking, the same
re-reading after every (re)subscription; callers' threads add waits, the thread delivers."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping

import redis
import structlog

from producer.completions import (
    CHUNK,
    CONNECTION_ERRORS,
    FIRST_PAUSE,
    LONGEST_PAUSE,
    SUBSCRIBE_WITHIN,
    WATCH_TTL,
    Deliver,
    Progressed,
    Waiters,
    as_text,
    chunks,
)
from producer.errors import ProducerClosed, RedisUnavailable
from producer.keys import QueueKeys, done_channels_pattern
from producer.scripts import PRODUCER_SCRIPTS, SyncScripts, watch_call

log = structlog.get_logger()

# How often the thread looks whether it should stop while no message comes.
LOOK_EVERY = 0.5


class ThreadCompletionListener:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._scripts = SyncScripts(client, PRODUCER_SCRIPTS)
        self._waiters = Waiters(prefix)
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def watch(
        self,
        keys: QueueKeys,
        deliveries: Mapping[str, Deliver],
        progress: Mapping[str, Progressed] | None = None,
    ) -> None:
        """As `CompletionListener.watch`, from any thread; `RedisUnavailable` when the
        listener could not subscribe within SUBSCRIBE_WITHIN seconds."""
        if self._stop.is_set():
            raise RuntimeError("the producer is closed")
        self._waiters.add(keys, deliveries, progress)
        try:
            self._listen()
            self._mark(keys, list(deliveries))
        except (redis.RedisError, RedisUnavailable) as exc:
            self._waiters.fail(keys.queue, list(deliveries), exc)
            raise

    def forget(self, queue: str, job_id: str, deliver: Deliver) -> None:
        self._waiters.remove(queue, job_id, deliver)

    def _listen(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._keep_listening, name="coroq-listener", daemon=True
                )
                self._thread.start()
        if not self._subscribed.wait(SUBSCRIBE_WITHIN):
            raise RedisUnavailable(
                f"could not subscribe to job completions within {SUBSCRIBE_WITHIN:g} s"
            )

    def _keep_listening(self) -> None:
        pause = FIRST_PAUSE
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.psubscribe(done_channels_pattern(self._waiters.prefix))
                while not self._stop.is_set():
                    announced = self._next_messages(pubsub)
                    if announced is None:
                        pause = FIRST_PAUSE
                        self._read_again()
                    elif announced:
                        self._read_records(announced)
            except CONNECTION_ERRORS as exc:
                log.warning("producer.listener_reconnecting", error=f"{type(exc).__name__}: {exc}")
            except Exception:
                log.exception("producer.listener_failed")
            finally:
                self._subscribed.clear()
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
            self._stop.wait(pause)
            pause = min(LONGEST_PAUSE, pause * 2)

    def _next_messages(self, pubsub: redis.client.PubSub) -> list[tuple[str, str]] | None:
        """The jobs announced by the messages waiting (a burst is read in one go), or None
        right after a (re)subscription: then everything is read again."""
        announced: list[tuple[str, str]] = []
        timeout = LOOK_EVERY
        while len(announced) < CHUNK:
            message = pubsub.get_message(timeout=timeout)
            if message is None:
                break
            timeout = 0.0
            if message["type"] == "psubscribe":
                self._subscribed.set()
                return None
            if message["type"] == "pmessage":
                job = self._waiters.announced(as_text(message["channel"]), as_text(message["data"]))
                if job is not None:
                    announced.append(job)
        return announced

    def _read_records(self, announced: list[tuple[str, str]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for queue, job_id in announced:
            pipe.hgetall(self._waiters.keys(queue).job(job_id))
        for (queue, job_id), raw in zip(announced, pipe.execute(), strict=True):
            self._waiters.finish_if_final(queue, job_id, raw)

    def _read_again(self) -> None:
        for queue, job_ids in self._waiters.by_queue().items():
            try:
                self._mark(self._waiters.keys(queue), job_ids)
            except CONNECTION_ERRORS:
                raise
            except redis.RedisError as exc:
                log.error("producer.watch_failed", queue=queue, error=str(exc))
                self._waiters.fail(queue, job_ids, exc)

    def _mark(self, keys: QueueKeys, job_ids: list[str]) -> None:
        for chunk in chunks(job_ids):
            records = self._scripts.run(watch_call(keys, chunk, ttl=WATCH_TTL))
            for job_id, raw in zip(chunk, records, strict=True):
                if raw:
                    self._waiters.finish_if_final(keys.queue, job_id, raw)

    def close(self) -> None:
        """Stop the thread; whoever still waits gets `ProducerClosed`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(LOOK_EVERY * 4)
        self._waiters.fail_all(ProducerClosed("the producer was closed while waiting"))
