"""Tracing's parts that need no worker process: what the producer writes into an envelope,
how a `trace` field is judged, and how the OTEL_* variables are read (docs/tracing.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest
import redis
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from producer import AsyncProducer, JobEnvelope, Producer, call
from producer.keys import QueueKeys
from producer.tracing import current_trace_context
from worker.jobs.decode import ReceivedJob, decode_job
from worker.jobs.running import RunningJob
from worker.jobs.slots import Lease, Slots
from worker.registry import TaskRegistry
from worker.settings import WorkerSettings
from worker.tracing import job_tracer
from worker.tracing.provider import TracingMisconfigured, exporters_named
from worker.tracing.spans import JobTracer, carrier_problem, parent_context
from worker.tracing.wanted import traces_asked_for

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def tracer() -> trace.Tracer:
    return TracerProvider().get_tracer("tests.unit")


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def ids_of(span: trace.Span) -> str:
    context = span.get_span_context()
    return f"{trace.format_trace_id(context.trace_id)}-{trace.format_span_id(context.span_id)}"


def waiting_traces(client: redis.Redis, keys: QueueKeys) -> list[object]:
    """The trace and span ids in each waiting job's `trace` field (its other parts, the
    version and flags of `traceparent`, are the propagator's)."""
    found: list[object] = []
    for raw in client.lrange(keys.ready, 0, -1):
        carrier = orjson.loads(raw).get("trace")
        found.append(None if carrier is None else "-".join(carrier["traceparent"].split("-")[1:3]))
    return found


def test_no_current_span_means_no_trace_field(tracer: trace.Tracer) -> None:
    assert current_trace_context() is None
    with tracer.start_as_current_span("request"):
        assert current_trace_context() is not None
    assert current_trace_context() is None


@pytest.mark.real_redis
def test_every_way_of_pushing_carries_the_current_span(
    redis_url: str, client: redis.Redis, keys: QueueKeys, tracer: trace.Tracer
) -> None:
    with (
        Producer(redis_url, queue=keys.queue) as producer,
        tracer.start_as_current_span("r") as span,
    ):
        producer.push("a.task", 1)
        producer.submit("a.task", 2)
        producer.push_many([JobEnvelope(task="a.task"), JobEnvelope(task="a.task")])
        producer.group([call("a.task", 3)], then=call("a.done"))
    assert waiting_traces(client, keys) == [ids_of(span)] * 5


@pytest.mark.real_redis
def test_the_async_producer_carries_the_span_of_the_coroutine_that_pushes(
    redis_url: str, client: redis.Redis, keys: QueueKeys, tracer: trace.Tracer
) -> None:
    async def push_from_two_requests() -> list[str]:
        async with AsyncProducer(redis_url, queue=keys.queue) as producer:

            async def request(name: str) -> str:
                with tracer.start_as_current_span(name) as span:
                    await asyncio.sleep(0.01)  # the other request runs meanwhile
                    await producer.push("a.task", name)
                    return ids_of(span)

            return list(await asyncio.gather(request("first"), request("second")))

    first, second = asyncio.run(push_from_two_requests())
    assert sorted(str(ids) for ids in waiting_traces(client, keys)) == sorted([first, second])


@pytest.mark.real_redis
def test_a_trace_field_given_by_the_caller_is_kept(
    redis_url: str, client: redis.Redis, keys: QueueKeys, tracer: trace.Tracer
) -> None:
    with Producer(redis_url, queue=keys.queue) as producer, tracer.start_as_current_span("r"):
        producer.push_many([JobEnvelope(task="a.task", trace={"traceparent": PARENT})])
    assert waiting_traces(client, keys) == ["0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"]


@pytest.mark.parametrize(
    ("carrier", "problem"),
    [
        ({"traceparent": PARENT}, None),
        ({"traceparent": PARENT, "tracestate": "a=1", "baggage": "k=v"}, None),
        ([PARENT], "not an object but list"),
        (None, "not an object but NoneType"),
        ({"traceparent": ["x"]}, "field 'traceparent' is not a string"),
        ({str(n): "" for n in range(17)}, "more than 16 fields"),
        ({"tracestate": "x" * 8200}, "longer than 8192 characters"),
    ],
)
def test_a_trace_field_is_judged_before_it_is_read(carrier: object, problem: str | None) -> None:
    assert carrier_problem(carrier) == problem


def test_the_parent_is_the_span_the_field_names_or_none() -> None:
    found = trace.get_current_span(parent_context({"trace": {"traceparent": PARENT}}, "j1"))
    assert trace.format_span_id(found.get_span_context().span_id) == "b7ad6b7169203331"
    for extra in (None, {}, {"trace": "junk"}, {"trace": {"traceparent": "00-1-2-3"}}):
        context = parent_context(extra, "j1")
        assert not trace.get_current_span(context).get_span_context().is_valid


@pytest.mark.parametrize(
    ("environment", "asked"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "billing"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_which_variables_ask_for_traces(environment: dict[str, str], asked: bool) -> None:
    assert traces_asked_for(environment) is asked


def test_exporters_are_found_by_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert exporters_named("none") == []
    [console] = exporters_named("console")
    assert isinstance(console, ConsoleSpanExporter)
    kinds = [type(exporter) for exporter in exporters_named("otlp, console")]
    assert kinds == [OTLPSpanExporter, ConsoleSpanExporter]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(TracingMisconfigured, match="opentelemetry-exporter-otlp-proto-grpc"):
        exporters_named("otlp")
    with pytest.raises(TracingMisconfigured, match=r"names 'zipkin'.*installed: console"):
        exporters_named("console,zipkin")


def test_a_worker_traces_nothing_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert job_tracer("w1") is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert job_tracer("w1") is None


class _BrokenTracer:
    def start_span(self, *args: object, **kwargs: object) -> trace.Span:
        raise RuntimeError("a bug of the SDK")


class _BrokenProvider(trace.NoOpTracerProvider):
    def get_tracer(self, *args: object, **kwargs: object) -> trace.Tracer:
        return _BrokenTracer()  # type: ignore[return-value]


def _running_job(envelope: dict[str, object]) -> RunningJob:
    keys = QueueKeys("traced")
    settings = WorkerSettings(redis_url="redis://127.0.0.1:1/0")
    registry = TaskRegistry.from_modules([])
    job = decode_job(orjson.dumps(envelope), keys, registry, settings)
    assert isinstance(job, ReceivedJob)
    return RunningJob(job, Lease(Slots(1)), attempt=1)


def test_a_span_that_cannot_be_made_or_ended_never_fails_the_job() -> None:
    running = _running_job({"task": "echo", "id": "j1", "trace": {"traceparent": PARENT}})
    assert JobTracer(_BrokenProvider(), "w1", owned=False).begin(running) is None

    provider = TracerProvider()
    span = JobTracer(provider, "w1", owned=True).begin(running)
    assert span is not None
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert trace.get_current_span() is span.span
    running.outcome = "succeeded"
    made = span.span
    span.span = _BrokenTracer()  # type: ignore[assignment]  # no set_attribute, no end
    span.end(running)  # logged, not raised
    assert trace.get_current_span() is trace.INVALID_SPAN  # its context was detached
    made.end()
