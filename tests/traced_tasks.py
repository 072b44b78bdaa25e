"""A task module that sets up OpenTelemetry itself, as a user's module may: spans go, one
JSON object a line, to the file named by COROQ_TEST_SPANS (tests/integration/test_tracing.py)."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from worker import task


def _one_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


_spans = open(os.environ["COROQ_TEST_SPANS"], "a", buffering=1)  # noqa: SIM115 - the process's
_provider = TracerProvider(resource=Resource.create({"service.name": "tasks-module"}))
_provider.add_span_processor(
    SimpleSpanProcessor(ConsoleSpanExporter(out=_spans, formatter=_one_line))
)
trace.set_tracer_provider(_provider)
_tracer = trace.get_tracer("tests.traced_tasks")


@task("tests.traced.nested")
async def nested() -> str:
    """Opens a span of its own: it must be a child of the job's span."""
    with _tracer.start_as_current_span("inside the job") as span:
        return trace.format_span_id(span.get_span_context().span_id)
