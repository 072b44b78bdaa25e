"""What the queue, job and dead-letter pages show, read from Redis a page at a time.

Every read is bounded whatever the size of a list: a page of a queue is one LRANGE or ZRANGE
near the end it starts from; a filtered page of dead letters reads at most `SCAN_LIMIT`
entries and says where to go on; a job's arguments are looked for among at most
`SEARCH_LIMIT` entries of the lists it can be in.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis

from producer.dead_letters import CHUNK, DeadJob, parse_entry
from producer.keys import QueueKeys
from producer.records import decode_record

PAGE_SIZE = 50
SCAN_LIMIT = 20_000  # dead-letter entries read for one filtered page, at most
SEARCH_LIMIT = 10_000  # entries of one list looked through for a job's arguments
PREVIEW_CHARS = 300  # of arguments or an error, in a list


@dataclass(frozen=True, slots=True)
class Envelope:
    """A job's bytes as stored, read without trusting them."""

    raw: bytes

    @property
    def fields(self) -> dict[str, Any]:
        try:
            value = orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def id(self) -> str:
        return _short_text(self.fields.get("id"), 256)

    @property
    def task(self) -> str:
        return _short_text(self.fields.get("task"), 200)

    @property
    def arguments(self) -> str:
        """The arguments as JSON text (the whole bytes when they are not an envelope)."""
        fields = self.fields
        if not fields:
            return self.text
        try:
            return orjson.dumps(fields.get("args", [])).decode()
        except orjson.JSONEncodeError:  # nested deeper than orjson writes (it reads deeper)
            return self.text

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    @property
    def valid_utf8(self) -> bool:
        try:
            self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Waiting:
    envelope: Envelope
    position: int  # 0: the next to run
    due_at: float | None = None  # delayed jobs: when they fall due


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[Any, ...]
    total: int
    offset: int


def ready_page(client: redis.Redis, keys: QueueKeys, offset: int, size: int = PAGE_SIZE) -> Page:
    """Waiting jobs in the order they will run (the right end of the list first)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(keys.ready)
    pipe.lrange(keys.ready, -(offset + size), -(offset + 1))
    total, raws = pipe.execute()
    items = tuple(
        Waiting(Envelope(raw), offset + index) for index, raw in enumerate(reversed(raws))
    )
    return Page(items, int(total), offset)


def delayed_page(client: redis.Redis, keys: QueueKeys, offset: int, size: int = PAGE_SIZE) -> Page:
    """Delayed jobs, the soonest due first."""
    pipe = client.pipeline(transaction=False)
    pipe.zcard(keys.delayed)
    pipe.zrange(keys.delayed, offset, offset + size - 1, withscores=True)
    total, entries = pipe.execute()
    items = tuple(
        Waiting(Envelope(raw), offset + index, due_at=score / 1000)
        for index, (raw, score) in enumerate(entries)
    )
    return Page(items, int(total), offset)


@dataclass(frozen=True, slots=True)
class DeadFilter:
    task: str = ""
    reason: str = ""
    text: str = ""  # looked for in the arguments (the job's bytes) and the error, any case

    @property
    def empty(self) -> bool:
        return not (self.task or self.reason or self.text)

    def query(self) -> dict[str, str]:
        """The filter as the dead-letter page's query string takes it."""
        return {"task": self.task, "reason": self.reason, "q": self.text}

    def matches(self, job: DeadJob) -> bool:
        fields = job.fields
        if self.task and str(fields.get("task") or "") != self.task:
            return False
        if self.reason and str(fields.get("reason") or "") != self.reason:
            return False
        if self.text:
            needle = self.text.casefold()
            haystack = f"{fields.get('error', '')}\n{job.raw.decode('utf-8', 'replace')}"
            return needle in haystack.casefold() or needle == job.id.casefold()
        return True


@dataclass(frozen=True, slots=True)
class DeadPage:
    jobs: tuple[tuple[int, DeadJob], ...]  # (index in the list, entry), newest first
    total: int
    start: int  # where this page's reading began
    next_start: int | None  # where the next page begins reading; None at the end
    scanned: int  # entries read for this page


def dead_page(
    client: redis.Redis, keys: QueueKeys, where: DeadFilter, start: int, size: int = PAGE_SIZE
) -> DeadPage:
    """The first `size` entries from index `start` on that match, reading `SCAN_LIMIT` at most."""
    total = int(client.llen(keys.dead))
    found: list[tuple[int, DeadJob]] = []
    index = start
    while index < total and len(found) < size and index - start < SCAN_LIMIT:
        chunk = min(CHUNK if not where.empty else size - len(found), total - index)
        entries = cast("list[bytes]", client.lrange(keys.dead, index, index + chunk - 1))
        if not entries:
            break
        for offset, entry in enumerate(entries):
            job = parse_entry(entry)
            if where.matches(job):
                found.append((index + offset, job))
                if len(found) == size:
                    index += offset + 1
                    break
        else:
            index += len(entries)
    next_start = index if index < total else None
    return DeadPage(tuple(found), total, start, next_start, index - start)


def dead_facets(client: redis.Redis, keys: QueueKeys) -> tuple[list[str], list[str]]:
    """The tasks and reasons among the newest `CHUNK` dead entries, for the filter's lists."""
    tasks, reasons = set(), set()
    for entry in cast("list[bytes]", client.lrange(keys.dead, 0, CHUNK - 1)):
        fields = parse_entry(entry).fields
        tasks.add(_short_text(fields.get("task"), 200))
        reasons.add(_short_text(fields.get("reason"), 100))
    return sorted(tasks - {""}), sorted(reasons - {""})


def find_dead(
    client: redis.Redis, keys: QueueKeys, ids: set[str], limit: int | None = None
) -> Iterator[DeadJob]:
    """The dead entries with these ids, reading from the newest until all are found."""
    left = set(ids)
    index = 0
    while left and (limit is None or index < limit):
        entries = cast("list[bytes]", client.lrange(keys.dead, index, index + CHUNK - 1))
        for entry in entries:
            job = parse_entry(entry)
            if job.id in left:
                left.discard(job.id)
                yield job
        if len(entries) < CHUNK:
            return
        index += CHUNK


def iter_dead(client: redis.Redis, keys: QueueKeys, where: DeadFilter) -> Iterator[DeadJob]:
    """Every matching dead entry, newest first, reading the list a chunk at a time."""
    index = 0
    while True:
        entries = cast("list[bytes]", client.lrange(keys.dead, index, index + CHUNK - 1))
        for entry in entries:
            job = parse_entry(entry)
            if where.matches(job):
                yield job
        if len(entries) < CHUNK:
            return
        index += CHUNK


@dataclass(frozen=True, slots=True)
class JobView:
    queue: str
    job_id: str
    record: dict[str, Any]
    envelope: Envelope | None  # None: not found where the job could be
    dead: DeadJob | None  # its dead-list entry, when it is dead and was found


class FoundEnvelopes:
    """The bytes of the jobs whose pages were opened, so that a page refreshing itself does not
    look through the lists again: a job's bytes do not change once pushed. A job not found is
    looked for again only after `MISS_SECONDS`. Holds `SIZE` jobs at most, the latest."""

    SIZE = 256
    MISS_SECONDS = 60.0

    def __init__(self) -> None:
        self._found: OrderedDict[tuple[str, str], Envelope | float] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, keys: QueueKeys, job_id: str) -> tuple[bool, Envelope | None]:
        """(whether the job was looked for lately, its bytes if they were found)."""
        with self._lock:
            found = self._found.get((keys.queue, job_id))
        if isinstance(found, Envelope):
            return True, found
        return found is not None and time.monotonic() - found < self.MISS_SECONDS, None

    def put(self, keys: QueueKeys, job_id: str, envelope: Envelope | None) -> None:
        with self._lock:
            self._found[keys.queue, job_id] = time.monotonic() if envelope is None else envelope
            self._found.move_to_end((keys.queue, job_id))
            while len(self._found) > self.SIZE:
                self._found.popitem(last=False)


def read_job(
    client: redis.Redis, keys: QueueKeys, job_id: str, found: FoundEnvelopes | None = None
) -> JobView | None:
    """The job's record, and its bytes when found; None when Redis knows nothing of it."""
    record = safe_record(client.hgetall(keys.job(job_id)))
    status = record.get("status")
    dead = next(find_dead(client, keys, {job_id}, SEARCH_LIMIT), None) if status == "dead" else None
    looked, envelope = found.get(keys, job_id) if found is not None else (False, None)
    if envelope is not None and not record and not _still_waiting(client, keys, envelope):
        looked = False  # taken since, or gone with its data (a flushed Redis): look again
    if dead is not None:
        envelope = Envelope(dead.raw)
    elif not looked:
        envelope = _find_envelope(client, keys, job_id, record)
        if found is not None:
            found.put(keys, job_id, envelope)
    if not record and envelope is None:
        return None
    return JobView(keys.queue, job_id, record, envelope, dead)


def _still_waiting(client: redis.Redis, keys: QueueKeys, envelope: Envelope) -> bool:
    """Whether these exact bytes still wait (LPOS and ZSCORE: nothing is sent back)."""
    pipe = client.pipeline(transaction=False)
    pipe.lpos(keys.ready, envelope.raw, rank=-1, maxlen=SEARCH_LIMIT)  # type: ignore[arg-type]
    pipe.zscore(keys.delayed, envelope.raw)
    position, due = pipe.execute()
    return position is not None or due is not None


def safe_record(raw: dict[Any, Any]) -> dict[str, Any]:
    """The record decoded, or field by field as text where a value is not what it should be."""
    try:
        return decode_record(raw)
    except ValueError:  # a field written by hand, or by a newer version
        record: dict[str, Any] = {}
        for key, value in raw.items():
            try:
                record.update(decode_record({key: value}))
            except ValueError:
                record[_short_text(key, 200)] = _short_text(value, None)
        return record


def _find_envelope(
    client: redis.Redis, keys: QueueKeys, job_id: str, record: dict[str, Any]
) -> Envelope | None:
    needle = orjson.dumps(job_id)
    candidates: list[bytes] = []
    worker = record.get("worker")
    if isinstance(worker, str) and record.get("status") == "running":
        candidates += cast("list[bytes]", client.lrange(keys.processing(worker), 0, -1))
    candidates += cast("list[bytes]", client.lrange(keys.ready, -SEARCH_LIMIT, -1))
    candidates += cast("list[bytes]", client.zrange(keys.delayed, 0, SEARCH_LIMIT - 1))
    for raw in candidates:
        if needle in raw and Envelope(raw).id == job_id:
            return Envelope(raw)
    return None


def _short_text(value: object, limit: int | None) -> str:
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text if limit is None or len(text) <= limit else text[:limit] + "…"
