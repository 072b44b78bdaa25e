"""One span per attempt of a job, continuing the trace its producer was in.

The span (kind CONSUMER, named `process <task>`) follows OpenTelemetry's messaging semantic
conventions where they fit: `messaging.system` is `coroq`, `messaging.destination.name` the
queue, `messaging.message.id` the job id. The conventions name such spans after the
destination; a queue carries many tasks, and the task says what ran, so it names the span.
The time the job waited is an attribute (`coroq.job.wait_ms`, from its push to this attempt's
start) rather than a span of its own: its start would come from the producer's clock, and in
a trace view the wait already shows as the gap between the pushing span and this one.

A `trace` field that is not a small object of strings, or carries no valid `traceparent`, is
ignored (a debug log line says why): the job runs in a new trace, never fails for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from worker.jobs.running import RunningJob

log = structlog.get_logger()

SCOPE = "coroq.worker"
MAX_FIELDS = 16  # traceparent, tracestate, baggage and a few a propagator may add
MAX_CHARACTERS = 8192  # W3C bounds tracestate at 512 and baggage at 8192


@dataclass(slots=True)
class JobSpan:
    span: trace.Span
    token: object  # the attached context's, to detach when the attempt ends

    @property
    def trace_id(self) -> str:
        return trace.format_trace_id(self.span.get_span_context().trace_id)

    @property
    def span_id(self) -> str:
        return trace.format_span_id(self.span.get_span_context().span_id)

    def end(self, running: RunningJob) -> None:
        """Record how the attempt ended, and end the span (on the job's own task). Tracing
        never fails a job: an error here is logged and the job's outcome stands."""
        try:
            self._record(running)
            self.span.end()
        except Exception:  # an SDK's or exporter's bug, not the job's
            log.warning("tracing.span_end_failed", job_id=running.job.id, exc_info=True)
        finally:
            context.detach(self.token)  # type: ignore[arg-type]  # what attach returned

    def _record(self, running: RunningJob) -> None:
        span = self.span
        span.set_attribute("coroq.job.outcome", running.outcome or "unsettled")
        error = running.error
        if error is not None:
            span.set_attribute("error.type", error.reason)
            span.record_exception(error.__cause__ or error)
            span.set_status(Status(StatusCode.ERROR, str(error)))


class JobTracer:
    def __init__(self, provider: trace.TracerProvider, worker_id: str, *, owned: bool) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(SCOPE)
        self._worker_id = worker_id
        self._owned = owned  # made from the environment here: shut down here too

    def begin(self, running: RunningJob) -> JobSpan | None:
        """Start the attempt's span and make it current for the job's task; None when that
        fails (logged): tracing never keeps a job from running."""
        try:
            return self._begin(running)
        except Exception:  # an SDK's bug, not the job's
            log.warning("tracing.span_start_failed", job_id=running.job.id, exc_info=True)
            return None

    def _begin(self, running: RunningJob) -> JobSpan:
        job = running.job
        parent = parent_context(job.envelope.__pydantic_extra__, job.id)
        attributes: dict[str, Any] = {
            "messaging.system": "coroq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": job.queue,
            "messaging.message.id": job.id,
            "messaging.client.id": self._worker_id,
            "coroq.task": job.task,
            "coroq.job.attempt": running.attempt,
        }
        enqueued_at = job.envelope.enqueued_at
        if enqueued_at is not None:
            attributes["coroq.job.wait_ms"] = round(max(0.0, time.time() - enqueued_at) * 1000, 3)
        span = self._tracer.start_span(
            f"process {job.task}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        return JobSpan(span, token)

    def close(self) -> None:
        """Send the spans still buffered; shut the provider down if it was made here."""
        if self._owned:
            self._provider.shutdown()  # type: ignore[attr-defined]  # the SDK's
            return
        flush = getattr(self._provider, "force_flush", None)
        if flush is not None:
            flush()


def parent_context(extra: Mapping[str, Any] | None, job_id: str) -> Context:
    """The context a job's `trace` field carries, or an empty one (a new trace)."""
    carrier = None if extra is None else extra.get("trace")
    if carrier is None:
        return Context()
    problem = carrier_problem(carrier)
    if problem is None:
        try:
            found = propagate.extract(carrier, context=Context())
        except Exception as exc:  # noqa: BLE001 - a propagator's bug must not fail the job
            problem = f"the propagator failed: {type(exc).__name__}: {exc}"
        else:
            if trace.get_current_span(found).get_span_context().is_valid:
                return found
            problem = "no valid traceparent in it"
    log.debug("job.trace_ignored", job_id=job_id, reason=problem)
    return Context()


def carrier_problem(carrier: object) -> str | None:
    """What makes a `trace` field unusable, or None."""
    if not isinstance(carrier, dict):
        return f"not an object but {type(carrier).__name__}"
    if len(carrier) > MAX_FIELDS:
        return f"more than {MAX_FIELDS} fields"
    size = 0
    for name, value in carrier.items():
        if not isinstance(value, str):
            return f"field {name!r} is not a string"
        size += len(name) + len(value)
    if size > MAX_CHARACTERS:
        return f"longer than {MAX_CHARACTERS} characters"
    return None
