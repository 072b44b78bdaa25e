"""The caller's trace context, carried in a job's envelope (docs/tracing.md).

When the program pushing a job has OpenTelemetry in use and a span is current (a web request
being handled, or a job a worker runs), the job carries that span's context in its envelope's
`trace` field, written by the globally configured propagator: W3C Trace Context
(`traceparent`, `tracestate`) and baggage by default, `OTEL_PROPAGATORS` to change it. The
worker then runs the job in a span of the same trace.

Nothing here imports OpenTelemetry: it is looked at only once the program itself has imported
its trace API, so a producer that does not use it pays one dictionary lookup per job.
"""

from __future__ import annotations

import sys

TRACE_API = "opentelemetry.trace"


def current_trace_context() -> dict[str, str] | None:
    """The current span's context as text fields to send along, or None without one."""
    if TRACE_API not in sys.modules:
        return None
    from opentelemetry import propagate, trace  # noqa: PLC0415 - imported by the program already

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None
