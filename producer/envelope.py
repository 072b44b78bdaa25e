"""The job envelope: the JSON object every producer pushes (docs/protocol.md#envelope).

This model is the wire contract. It is deliberately strict about types (a `max_attempts`
of `"3"` or `true` is an error, not a guess) and lenient about the unknown: extra fields are
kept as they are and written back unchanged, so newer producers can talk to older workers.
"""

from __future__ import annotations

import random
import time
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from producer.errors import InvalidJob
from producer.tracing import current_trace_context

MAX_ID_LENGTH = 256
MAX_TASK_NAME_LENGTH = 200

TaskName = Annotated[str, Field(min_length=1, max_length=MAX_TASK_NAME_LENGTH, strict=True)]
JobId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, strict=True)]
UniqueKey = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, strict=True)]
PositiveSeconds = Annotated[StrictInt | StrictFloat, Field(gt=0, allow_inf_nan=False)]
EpochSeconds = Annotated[StrictInt | StrictFloat, Field(ge=0, allow_inf_nan=False)]


class JobEnvelope(BaseModel):
    """One job as it travels through Redis."""

    model_config = ConfigDict(extra="allow", strict=True)

    task: TaskName
    args: list[Any] | dict[str, Any] = Field(default_factory=list)
    id: JobId | None = None
    max_attempts: Annotated[StrictInt, Field(ge=1)] | None = None
    timeout: PositiveSeconds | None = None
    enqueued_at: EpochSeconds | None = None
    group: JobId | None = None  # the group it belongs to (docs/futures.md#groups)
    # Its unique key (docs/scheduling.md#unique-jobs), held from its push until it ends.
    unique: UniqueKey | None = None

    @property
    def positional(self) -> list[Any]:
        return self.args if isinstance(self.args, list) else []

    @property
    def keywords(self) -> dict[str, Any]:
        return self.args if isinstance(self.args, dict) else {}

    def to_json(self) -> bytes:
        # Built by hand rather than with model_dump: `args` came from JSON (or went through
        # it, in `build_envelope`), so it serialises as it is, and a large file pushes twice
        # as fast. An absent and a null optional field mean the same; ours are left out when
        # null (`task` and `args` never are). Unknown fields are written back exactly as they
        # came, nulls included.
        data = {name: value for name, value in self.__dict__.items() if value is not None}
        if self.__pydantic_extra__:
            data.update(self.__pydantic_extra__)
        return compact_json(data)


def compact_json(value: Any) -> bytes:
    """`orjson.dumps(value)`, copied into a bytes object of its own size.

    orjson writes into a buffer of at least a kilobyte, then shrinks it. Thousands of such
    shrunken buffers alive at once (a batch of payloads waiting for its push) fragment the C
    heap, and every further allocation slows down: encoding a 100,000-job file took ten
    times longer than encoding the same jobs one at a time. The copy comes from Python's own
    small-object allocator and the large buffer is freed at once, to be reused by the next call.
    """
    return bytes(memoryview(orjson.dumps(value)))


def new_job_id() -> str:
    """128 random bits as 32 hex digits, like `uuid4().hex`.

    Ids need to be unique, not unguessable, so they come from `random` (seeded from the OS
    at start and again in each forked child) instead of a system call per id: pushing a
    large file spent a third of its time in `os.urandom`.
    """
    return f"{random.getrandbits(128):032x}"


def first_error(error: ValidationError) -> tuple[str | None, str]:
    """The offending field (dotted path) and message of a pydantic validation error."""
    detail = error.errors(include_url=False)[0]
    location = detail["loc"]
    field = str(location[0]) if location else None
    if field == "args" and len(location) <= 2:
        # The union's member names ("list[any]") would only confuse the reader.
        return field, "must be a JSON array (positional) or object (keyword arguments)"
    return field, detail["msg"]


def validate_envelope(
    data: Any, *, source: str = "<api>", index: int | None = None, line: int | None = None
) -> JobEnvelope:
    """Check a decoded JSON value against the envelope; raise `InvalidJob` naming the field."""
    if not isinstance(data, dict):
        raise InvalidJob(
            f"a job must be a JSON object, got {type(data).__name__}",
            source=source,
            index=index,
            line=line,
        )
    try:
        return JobEnvelope.model_validate(data)
    except ValidationError as exc:
        field, message = first_error(exc)
        raise InvalidJob(message, source=source, index=index, field=field, line=line) from None


def stamp(
    envelope: JobEnvelope, trace: dict[str, str] | Literal["current"] | None = "current"
) -> JobEnvelope:
    """Give the envelope an id and an enqueue time when the producer did not set them, and a
    trace context when the job has none: the caller's (producer/tracing.py), or `trace`, when
    a batch looked it up once for all its jobs."""
    # Written to the model's fields directly: both values are valid by construction, and
    # the validating `BaseModel.__setattr__` cost as much as encoding the whole job.
    fields = envelope.__dict__
    if fields["id"] is None:
        fields["id"] = new_job_id()
    if fields["enqueued_at"] is None:
        fields["enqueued_at"] = time.time()
    if trace == "current":
        trace = current_trace_context()
    extra = envelope.__pydantic_extra__
    if trace is not None and extra is not None and "trace" not in extra:
        extra["trace"] = trace
    return envelope


def build_envelope(
    task: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    job_id: str | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    unique: str | None = None,
) -> JobEnvelope:
    """The envelope for `push(task, *args, **kwargs)`; positional or keyword, not both."""
    if args and kwargs:
        raise InvalidJob(
            "give positional or keyword arguments, not both (the envelope's args is "
            "an array or an object)",
            field="args",
        )
    fields: dict[str, Any] = {"task": task, "args": dict(kwargs) if kwargs else list(args)}
    options = (
        ("id", job_id),
        ("max_attempts", max_attempts),
        ("timeout", timeout),
        ("unique", unique),
    )
    for name, value in options:
        if value is not None:
            fields[name] = value
    # Round-trip through JSON so the API accepts exactly what the wire accepts.
    try:
        data = orjson.loads(orjson.dumps(fields))
    except TypeError as exc:
        raise InvalidJob(f"arguments are not JSON-serialisable: {exc}", field="args") from None
    return stamp(validate_envelope(data))
