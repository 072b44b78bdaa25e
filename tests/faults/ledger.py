"""The ledger: push jobs with known ids, then account for every one of them.

A fault test pushes N jobs through the `Ledger`, injects its faults, waits, and asks the
ledger for `Figures`: how many jobs ended succeeded or dead (and why), how many were lost
(no final record and nowhere in the queue), and how many extra runs the faults caused,
counted twice over: by the tasks themselves (`tests.faults.tasks` counts every start in the
ledger Redis) and by the worker (each record's `attempts`).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from producer import Producer
from producer.envelope import JobEnvelope, build_envelope
from producer.keys import QueueKeys, workers_key
from producer.records import decode_record
from tests.faults.tasks import done_key, starts_key

FINAL_STATUSES = frozenset({"succeeded", "dead"})
# Appends every test's figures as one JSON line, for docs/reliability.md.
REPORT_ENV = "COROQ_FAULTS_REPORT"


@dataclass
class Figures:
    """What became of a test's jobs; `extra` holds the test's own counts (kills, faults…)."""

    test: str
    jobs: int
    succeeded: int
    dead: dict[str, int]
    lost: int
    unfinished: int
    extra_starts: int
    extra_attempts: int
    double_completions: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "jobs": self.jobs,
            "succeeded": self.succeeded,
            "dead": sum(self.dead.values()),
            "dead_reasons": self.dead,
            "lost": self.lost,
            "unfinished": self.unfinished,
            "duplicates": self.extra_starts,
            "extra_attempts": self.extra_attempts,
            "double_completions": self.double_completions,
            **self.extra,
        }

    def publish(self, record_property: Any) -> None:
        """Print the figures (shown with -s or on failure) and attach them to the report."""
        data = self.as_dict()
        line = json.dumps(data, sort_keys=False)
        print(f"\nFAULT FIGURES {line}")
        record_property("fault_figures", line)
        target = os.environ.get(REPORT_ENV)
        if target:
            with Path(target).open("a", encoding="utf-8") as report:
                report.write(line + "\n")


class Ledger:
    """Jobs with ids we chose, in one queue, and the bookkeeping to account for each."""

    def __init__(
        self,
        queue_client: redis.Redis,
        keys: QueueKeys,
        ledger_client: redis.Redis,
        name: str,
    ) -> None:
        self.queue_client = queue_client
        self.keys = keys
        self.ledger_client = ledger_client
        self.name = name  # the hash keys the tasks count in
        self.ids: list[str] = []
        self._producer = Producer(client=queue_client, queue=keys.queue)

    # -- pushing -----------------------------------------------------------------------

    def envelope(
        self,
        job_id: str,
        task: str,
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> JobEnvelope:
        """A job whose task counts itself under `job_id` (every faults task takes ledger, name)."""
        arguments = {"ledger": self.name, "name": job_id, **kwargs}
        return build_envelope(
            task, (), arguments, job_id=job_id, max_attempts=max_attempts, timeout=timeout
        )

    def push(self, envelopes: Sequence[JobEnvelope], producer: Producer | None = None) -> list[str]:
        """Push through the Producer API; only ids it acknowledged join the ledger."""
        pushed = (producer or self._producer).push_many(envelopes)
        self.ids.extend(pushed)
        return pushed

    def adopt(self, ids: Iterable[str]) -> None:
        """Account for jobs pushed some other way (raw LPUSH, the CLI, the delayed set)."""
        self.ids.extend(ids)

    # -- counting -----------------------------------------------------------------------

    def done_count(self) -> int:
        """How many distinct jobs have finished their handler at least once (cheap: HLEN)."""
        return int(self.ledger_client.hlen(done_key(self.name)))

    def wait_done(self, count: int, timeout: float) -> bool:
        """Wait until `count` distinct jobs have finished their handler; False after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.done_count() >= count:
                return True
            time.sleep(0.01)
        return False

    def starts(self) -> dict[str, int]:
        return _int_hash(self.ledger_client.hgetall(starts_key(self.name)))

    def completions(self) -> dict[str, int]:
        return _int_hash(self.ledger_client.hgetall(done_key(self.name)))

    def records(self, ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        wanted = list(self.ids if ids is None else ids)
        pipe = self.queue_client.pipeline(transaction=False)
        for job_id in wanted:
            pipe.hgetall(self.keys.job(job_id))
        return {
            job_id: decode_record(raw) for job_id, raw in zip(wanted, pipe.execute(), strict=True)
        }

    def final_count(self, ids: Sequence[str] | None = None) -> int:
        wanted = list(self.ids if ids is None else ids)
        pipe = self.queue_client.pipeline(transaction=False)
        for job_id in wanted:
            pipe.hget(self.keys.job(job_id), "status")
        return sum(1 for status in pipe.execute() if status in (b"succeeded", b"dead"))

    def wait_all_final(self, timeout: float, ids: Sequence[str] | None = None) -> bool:
        """Wait until every job has a final record; False (not an error) after `timeout`."""
        wanted = list(self.ids if ids is None else ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.final_count(wanted) == len(wanted):
                return True
            time.sleep(0.1)
        return False

    def queued_ids(self) -> dict[str, Counter[str]]:
        """Ids still in Redis, by place: ready, delayed, processing (all workers)."""
        places: dict[str, Counter[str]] = {
            "ready": Counter(_ids(self.queue_client.lrange(self.keys.ready, 0, -1))),
            "delayed": Counter(_ids(self.queue_client.zrange(self.keys.delayed, 0, -1))),
            "processing": Counter(),
        }
        for key in self.queue_client.scan_iter(match=self.keys.processing_pattern, count=1000):
            places["processing"].update(_ids(self.queue_client.lrange(key, 0, -1)))
        return places

    def figures(self, test: str, ids: Sequence[str] | None = None, **extra: Any) -> Figures:
        """Account for every job: final outcome, lost (nowhere at all), extra runs."""
        wanted = list(self.ids if ids is None else ids)
        records = self.records(wanted)
        starts = self.starts()
        completions = self.completions()
        places = self.queued_ids()
        waiting = set(places["ready"]) | set(places["delayed"]) | set(places["processing"])
        statuses = Counter(record.get("status") for record in records.values())
        dead = Counter(
            str(record.get("reason"))
            for record in records.values()
            if record.get("status") == "dead"
        )
        unfinished = [
            job_id for job_id in wanted if records[job_id].get("status") not in FINAL_STATUSES
        ]
        lost = [job_id for job_id in unfinished if job_id not in waiting]
        if lost:
            extra["lost_ids_sample"] = lost[:5]
        return Figures(
            test=test,
            jobs=len(wanted),
            succeeded=statuses["succeeded"],
            dead=dict(dead),
            lost=len(lost),
            unfinished=len(unfinished),
            extra_starts=sum(max(0, starts.get(job_id, 0) - 1) for job_id in wanted),
            extra_attempts=sum(max(0, records[job_id].get("attempts", 0) - 1) for job_id in wanted),
            double_completions=sum(1 for job_id in wanted if completions.get(job_id, 0) > 1),
            extra=extra,
        )

    def where_unfinished(self) -> dict[str, Any]:
        """Evidence for a failure: each non-empty processing list, whether its owner is still
        listed in the set of workers, and the TTL (ms) left on the owner's heartbeat key."""
        client, keys = self.queue_client, self.keys
        members = {_text(member) for member in client.smembers(workers_key(keys.prefix))}
        prefix = keys.processing("")
        lists = {}
        for key in client.scan_iter(match=keys.processing_pattern, count=1000):
            owner = _text(key)[len(prefix) :]
            lists[owner] = {
                "held": int(client.llen(key)),
                "owner_in_workers_set": owner in members,
                "heartbeat_pttl_ms": int(client.pttl(keys.worker(owner))),
            }
        return {
            "processing": lists,
            "ready": int(client.llen(keys.ready)),
            "delayed": int(client.zcard(keys.delayed)),
        }

    def leftovers(self) -> dict[str, int]:
        """How many entries are left in the queue's lists (all zero after a clean run)."""
        places = self.queued_ids()
        return {place: sum(found.values()) for place, found in places.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _int_hash(raw: dict[Any, Any]) -> dict[str, int]:
    return {
        (key.decode() if isinstance(key, bytes) else str(key)): int(value)
        for key, value in raw.items()
    }


def _ids(payloads: Iterable[bytes]) -> list[str]:
    found = []
    for raw in payloads:
        try:
            job_id = orjson.loads(raw).get("id")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(job_id, str):
            found.append(job_id)
    return found
