"""An OpenTelemetry SDK tracer provider made from the standard OTEL_* variables.

For a worker started without `opentelemetry-instrument` and with no task module that sets up
the SDK: the variables alone are enough. What the SDK reads by itself it keeps reading
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, the
exporters' own `OTEL_EXPORTER_OTLP_*`); here only the exporters named by
`OTEL_TRACES_EXPORTER` are found, among the ones installed packages provide by entry point,
as the SDK's own auto-configuration finds them.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from producer.errors import CoroqError

EXPORTERS_GROUP = "opentelemetry_traces_exporter"
DEFAULT_SERVICE_NAME = "coroq-worker"


class TracingMisconfigured(CoroqError):
    """The OTEL_* variables ask for something no installed package provides."""

    exit_code = 2


def provider_from_environment() -> TracerProvider:
    """A tracer provider exporting to what OTEL_TRACES_EXPORTER names (`otlp` when unset),
    set as the process's global one."""
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER, span limits
    for exporter in exporters_named(os.environ.get("OTEL_TRACES_EXPORTER", "otlp")):
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_*
    trace.set_tracer_provider(provider)
    return provider


def exporters_named(names: str) -> list[SpanExporter]:
    """The exporters of a comma-separated list of names (`none` for none)."""
    found = {point.name: point for point in entry_points(group=EXPORTERS_GROUP)}
    exporters: list[SpanExporter] = []
    for name in (part.strip().lower() for part in names.split(",")):
        if name in ("", "none"):
            continue
        entry_name = _otlp_flavour() if name == "otlp" else name
        point = found.get(entry_name)
        if point is None:
            raise TracingMisconfigured(
                f"OTEL_TRACES_EXPORTER names {name!r}, but no installed package provides "
                f"it (installed: {', '.join(sorted(found)) or 'none'}); "
                f"{_install_hint(entry_name)}"
            )
        exporter_class = point.load()
        exporters.append(exporter_class())
    return exporters


def _otlp_flavour() -> str:
    """`otlp` means OTLP over HTTP unless the protocol variables say gRPC."""
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    return "otlp_proto_grpc" if protocol.strip().lower() == "grpc" else "otlp_proto_http"


def _install_hint(entry_name: str) -> str:
    if entry_name == "otlp_proto_grpc":
        return "install opentelemetry-exporter-otlp-proto-grpc"
    if entry_name == "otlp_proto_http":
        return "install coroq[otel]"
    return "install the package of that exporter, or fix the name"
