"""Traces of the jobs a worker runs, with OpenTelemetry (docs/tracing.md).

A worker traces its jobs when the OpenTelemetry SDK is in use in its process: set up before
the worker starts (`opentelemetry-instrument worker`, or a task module that configures it), or
asked for by the standard variables (`OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_ENDPOINT`),
from which the worker sets it up itself (`worker.tracing.provider`). Otherwise nothing of
OpenTelemetry is imported, and jobs run as they always did.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import structlog

from worker.tracing.wanted import traces_asked_for

if TYPE_CHECKING:
    from worker.tracing.spans import JobTracer

__all__ = ["job_tracer"]

log = structlog.get_logger()


def job_tracer(worker_id: str) -> JobTracer | None:
    """The tracer of this worker's jobs, or None when tracing is not in use.

    Variables asking for traces without the `otel` extra installed give a warning and no
    traces (they may be set for every program of a host); an exporter name no installed
    package provides raises `TracingMisconfigured`.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    configured = "opentelemetry.trace" in sys.modules and _provider_in_place()
    if not configured and not traces_asked_for(os.environ):
        return None
    try:
        from worker.tracing.spans import JobTracer  # noqa: PLC0415

        if configured:
            from opentelemetry import trace  # noqa: PLC0415

            return JobTracer(trace.get_tracer_provider(), worker_id, owned=False)
        from worker.tracing.provider import provider_from_environment  # noqa: PLC0415
    except ImportError as exc:
        log.warning(
            "tracing.unavailable",
            error=str(exc),
            hint="the OTEL_* variables ask for traces: pip install 'coroq[otel]'",
        )
        return None
    return JobTracer(provider_from_environment(), worker_id, owned=True)


def _provider_in_place() -> bool:
    """Whether the process set a real tracer provider (not OpenTelemetry's stand-ins)."""
    from opentelemetry import trace  # noqa: PLC0415

    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
