"""Whether the OTEL_* variables ask for traces (read without importing OpenTelemetry)."""

from __future__ import annotations

from collections.abc import Mapping

# Any of these set means traces are wanted; OTEL_TRACES_EXPORTER=none means they are not.
ASKING = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def traces_asked_for(environment: Mapping[str, str]) -> bool:
    exporters = environment.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    return any(environment.get(name, "").strip() for name in ASKING)
