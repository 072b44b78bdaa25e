"""Turning the bytes taken from a queue into a job the runner can execute, or a rejection.

Decoding happens in the consumer thread, before anything is handed to the event loop, so a
malformed payload never reaches a coroutine and never costs the loop any time.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any

import orjson

from producer.envelope import JobEnvelope, new_job_id, validate_envelope
from producer.errors import InvalidJob
from producer.keys import QueueKeys
from worker.errors import JobError, MalformedJob
from worker.jobs.protocol import NO_LINKS, JobLimits, JobLinks
from worker.registry import TaskRegistry, TaskSpec
from worker.settings import WorkerSettings


@dataclass(frozen=True, slots=True)
class ReceivedJob:
    """A valid job, bound to its task, held in this worker's processing list as `raw`."""

    raw: bytes
    keys: QueueKeys
    envelope: JobEnvelope
    spec: TaskSpec
    arguments: inspect.BoundArguments
    timeout: float
    max_attempts: int
    # The job re-encoded with the id the worker gave it, when its producer gave none;
    # it replaces `raw` in the processing list before the job runs.
    stamped: bytes | None
    links: JobLinks = NO_LINKS  # its group and unique key (from the envelope)

    @property
    def id(self) -> str:
        return str(self.envelope.id)

    @property
    def task(self) -> str:
        return self.spec.name

    @property
    def queue(self) -> str:
        return self.keys.queue

    def adopted(self) -> ReceivedJob:
        """The job once its stamped bytes replaced the original in the processing list."""
        if self.stamped is None:
            return self
        return replace(self, raw=self.stamped, stamped=None)


@dataclass(slots=True)
class RejectedJob:
    """Bytes that cannot be run as a job; they go to the dead list with the reason."""

    raw: bytes
    keys: QueueKeys
    job_id: str
    task: str | None
    error: JobError
    links: JobLinks = NO_LINKS  # its group and unique key, when the bytes name them


def decode_job(
    raw: bytes, keys: QueueKeys, registry: TaskRegistry, settings: WorkerSettings
) -> ReceivedJob | RejectedJob:
    if len(raw) > settings.max_payload_bytes:
        return _rejected(
            raw,
            keys,
            None,
            MalformedJob(
                "payload_too_large",
                f"the payload is {len(raw)} bytes, over max_payload_bytes "
                f"({settings.max_payload_bytes})",
            ),
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _rejected(raw, keys, None, MalformedJob("invalid_json", f"not valid JSON: {exc}"))
    try:
        envelope = validate_envelope(data, source=keys.queue)
    except InvalidJob as exc:
        return _rejected(raw, keys, data, MalformedJob("invalid_envelope", _envelope_problem(exc)))
    try:
        spec = registry.get(envelope.task)
        arguments = spec.binder.bind(envelope.positional, envelope.keywords)
    except JobError as exc:
        return _rejected(raw, keys, data, exc)
    stamped = None
    if envelope.id is None:
        envelope.id = new_job_id()
        try:
            stamped = envelope.to_json()
        except (TypeError, ValueError) as exc:  # orjson writes at most 254 levels of nesting
            return _rejected(
                raw,
                keys,
                data,
                MalformedJob(
                    "invalid_envelope",
                    f"the job has no id and cannot be re-encoded to give it one: {exc}",
                ),
            )
    limits = None
    if spec.limits is not None:
        rate = spec.limits.rate
        limits = JobLimits(
            spec.limits.limiter(spec.name, arguments),
            None if rate is None else (rate.count, rate.period * 1000),
            spec.limits.concurrency,
        )
    return ReceivedJob(
        raw=raw,
        keys=keys,
        envelope=envelope,
        spec=spec,
        arguments=arguments,
        timeout=envelope.timeout or spec.timeout or settings.default_timeout,
        max_attempts=envelope.max_attempts or spec.max_attempts or settings.default_max_attempts,
        stamped=stamped,
        links=NO_LINKS
        if envelope.group is None and envelope.unique is None and limits is None
        else JobLinks(envelope.group, envelope.unique, limits),
    )


def _envelope_problem(error: InvalidJob) -> str:
    if error.field is None:
        return error.problem
    return f"field {error.field!r}: {error.problem}"


def _short_text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 256 else None


def _rejected(raw: bytes, keys: QueueKeys, data: Any, error: JobError) -> RejectedJob:
    """Keep the producer's id, task name and group when they can be read, so the record is
    findable and the group counts the job."""
    job_id = task = None
    links = NO_LINKS
    if isinstance(data, dict):
        job_id = _short_text(data.get("id"))
        links = JobLinks(_short_text(data.get("group")), _short_text(data.get("unique")))
        if isinstance(data.get("task"), str):
            task = data["task"][:200]
    return RejectedJob(raw, keys, job_id or new_job_id(), task, error, links)
