"""OpenTelemetry traces of jobs (docs/tracing.md), across real processes: the test process
pushes inside a span of its own (an SDK tracer provider with an in-memory exporter, as a web
service would), a real worker process exports its spans (by the OTEL_* variables to the
console, or set up by a task module to a file), and the spans read back must form one trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from producer import JobEnvelope, Producer
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.real_redis

VALID_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def request_tracer() -> tuple[trace.Tracer, InMemorySpanExporter]:
    """A tracer of the test process's own, like a web service's (the global provider is left
    alone: the producer reads only the current span and the global propagator)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("tests.request"), exporter


class BurstWorker:
    """`python -m worker --burst` on the test's queue: spans on stdout, JSON logs on stderr."""

    def __init__(self, tmp_path: Path, redis_url: str, queue: str) -> None:
        self.stdout = tmp_path / "worker.out"
        self.stderr = tmp_path / "worker.log"
        self.environment = {
            **os.environ,
            "COROQ_REDIS_URL": redis_url,
            "COROQ_QUEUES": queue,
            "COROQ_TASKS": "tests.tasks",
            "COROQ_LOG_FORMAT": "json",
            "COROQ_METRICS_PORT": "0",
            "PYTHONPATH": str(REPO_ROOT),
        }

    def run(self, **env: str) -> subprocess.CompletedProcess[bytes]:
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            return subprocess.run(
                [sys.executable, "-m", "worker", "--burst"],
                env={**self.environment, **env},
                stdout=out,
                stderr=err,
                cwd=REPO_ROOT,
                timeout=60,
                check=False,
            )

    def console_spans(self) -> list[dict[str, Any]]:
        """The spans ConsoleSpanExporter wrote: indented JSON objects, one after another."""
        text, decoder, spans, at = self.stdout.read_text(), json.JSONDecoder(), [], 0
        while True:
            while at < len(text) and text[at].isspace():
                at += 1
            if at == len(text):
                return spans
            span, at = decoder.raw_decode(text, at)
            spans.append(span)

    def logs(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stderr.read_bytes().splitlines() if line]


@pytest.fixture
def burst_worker(tmp_path: Path, redis_url: str, queue_name: str) -> BurstWorker:
    return BurstWorker(tmp_path, redis_url, queue_name)


CONSOLE = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "billing-worker"}


def job_span(spans: list[dict[str, Any]], job_id: str) -> dict[str, Any]:
    found = [span for span in spans if span["attributes"].get("messaging.message.id") == job_id]
    assert len(found) == 1, spans
    return found[0]


def hex_id(value: int, digits: int) -> str:
    return f"0x{value:0{digits}x}"


def test_a_job_continues_the_trace_of_the_span_that_pushed_it(
    producer: Producer,
    burst_worker: BurstWorker,
    request_tracer: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exported = request_tracer
    with tracer.start_as_current_span("POST /orders") as request:
        job_id = producer.push("tests.logs", text="inside")
    context = request.get_span_context()
    assert burst_worker.run(**CONSOLE).returncode == 0, burst_worker.stderr.read_text()

    span = job_span(burst_worker.console_spans(), job_id)
    assert span["name"] == "process tests.logs"
    assert span["kind"] == "SpanKind.CONSUMER"
    assert span["context"]["trace_id"] == hex_id(context.trace_id, 32)
    assert span["parent_id"] == hex_id(context.span_id, 16)
    assert span["resource"]["attributes"]["service.name"] == "billing-worker"
    attributes = span["attributes"]
    assert attributes["messaging.system"] == "coroq"
    assert attributes["messaging.destination.name"] == producer.queue
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["coroq.task"] == "tests.logs"
    assert attributes["coroq.job.attempt"] == 1
    assert attributes["coroq.job.outcome"] == "succeeded"
    assert attributes["coroq.job.wait_ms"] >= 0
    assert span["status"]["status_code"] == "UNSET"
    assert [s.name for s in exported.get_finished_spans()] == ["POST /orders"]

    # The lines logged inside the job (structlog's and the standard library's) join the trace.
    inside = [line for line in burst_worker.logs() if line.get("job_id") == job_id]
    by_event = {line["event"]: line for line in inside}
    for event in ("tests.structlog_line", "stdlib line inside", "job.started", "job.succeeded"):
        assert by_event[event]["trace_id"] == span["context"]["trace_id"][2:]
        assert by_event[event]["span_id"] == span["context"]["span_id"][2:]


def test_a_job_pushed_outside_any_span_starts_a_trace_of_its_own(
    producer: Producer, burst_worker: BurstWorker
) -> None:
    first = producer.push("tests.add", 1, 2)
    second = producer.push("tests.add", 3, 4)
    assert burst_worker.run(**CONSOLE).returncode == 0, burst_worker.stderr.read_text()
    spans = burst_worker.console_spans()
    roots = [job_span(spans, first), job_span(spans, second)]
    assert [span["parent_id"] for span in roots] == [None, None]
    assert roots[0]["context"]["trace_id"] != roots[1]["context"]["trace_id"]


@pytest.mark.parametrize(
    ("trace_field", "reason"),
    [
        ("00-abc", "not an object but str"),
        ({"traceparent": 5}, "field 'traceparent' is not a string"),
        ({"traceparent": "00-zz-yy-01"}, "no valid traceparent in it"),
        ({"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"}, "no valid traceparent"),
        ({f"k{n}": "v" for n in range(40)}, "more than 16 fields"),
        ({"traceparent": VALID_PARENT, "tracestate": "x" * 9000}, "longer than 8192"),
    ],
)
def test_a_malformed_trace_field_is_ignored_and_the_job_runs(
    producer: Producer, burst_worker: BurstWorker, trace_field: Any, reason: str
) -> None:
    job_id = producer.push_many([JobEnvelope(task="tests.add", args=[1, 1], trace=trace_field)])[0]
    run = burst_worker.run(**CONSOLE, COROQ_LOG_LEVEL="debug")
    assert run.returncode == 0, burst_worker.stderr.read_text()
    assert producer.status(job_id)["status"] == "succeeded"
    assert job_span(burst_worker.console_spans(), job_id)["parent_id"] is None
    ignored = [line for line in burst_worker.logs() if line["event"] == "job.trace_ignored"]
    assert [line["job_id"] for line in ignored] == [job_id]
    assert ignored[0]["reason"].startswith(reason)


def test_a_trace_field_set_by_another_producer_is_continued(
    producer: Producer, burst_worker: BurstWorker
) -> None:
    # What a producer in another language writes (docs/protocol.md#envelope).
    job_id = producer.push_many(
        [JobEnvelope(task="tests.add", args=[2, 2], trace={"traceparent": VALID_PARENT})]
    )[0]
    assert burst_worker.run(**CONSOLE).returncode == 0, burst_worker.stderr.read_text()
    span = job_span(burst_worker.console_spans(), job_id)
    assert span["context"]["trace_id"] == "0x0af7651916cd43dd8448eb211c80319c"
    assert span["parent_id"] == "0xb7ad6b7169203331"


def test_each_attempt_has_a_span_and_a_failure_is_recorded_on_it(
    producer: Producer, burst_worker: BurstWorker
) -> None:
    job_id = producer.push("tests.boom", message="it broke", _max_attempts=1)
    assert burst_worker.run(**CONSOLE).returncode == 0, burst_worker.stderr.read_text()
    span = job_span(burst_worker.console_spans(), job_id)
    assert span["attributes"]["coroq.job.outcome"] == "dead"
    assert span["attributes"]["error.type"] == "handler_error"
    assert span["status"]["status_code"] == "ERROR"
    [event] = [event for event in span["events"] if event["name"] == "exception"]
    assert event["attributes"]["exception.type"] == "RuntimeError"
    assert event["attributes"]["exception.message"] == "it broke"


def test_a_provider_set_up_by_a_task_module_is_used_and_spans_inside_a_job_are_its_children(
    producer: Producer, burst_worker: BurstWorker, tmp_path: Path,
    request_tracer: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:  # fmt: skip
    spans_file = tmp_path / "spans.jsonl"
    tracer, _ = request_tracer
    with tracer.start_as_current_span("cron tick") as tick:
        job_id = producer.push("tests.traced.nested")
    run = burst_worker.run(
        COROQ_TASKS="tests.tasks,tests.traced_tasks", COROQ_TEST_SPANS=str(spans_file)
    )
    assert run.returncode == 0, burst_worker.stderr.read_text()
    spans = [orjson.loads(line) for line in spans_file.read_bytes().splitlines()]
    span = job_span(spans, job_id)
    assert span["resource"]["attributes"]["service.name"] == "tasks-module"
    assert span["context"]["trace_id"] == hex_id(tick.get_span_context().trace_id, 32)
    [inner] = [s for s in spans if s["name"] == "inside the job"]
    assert inner["parent_id"] == span["context"]["span_id"]
    assert producer.status(job_id)["result"] == inner["context"]["span_id"][2:]


def test_without_tracing_asked_for_no_span_is_made_and_logs_carry_no_trace(
    producer: Producer, burst_worker: BurstWorker,
    request_tracer: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:  # fmt: skip
    tracer, _ = request_tracer
    with tracer.start_as_current_span("request"):
        job_id = producer.push("tests.logs", text="plain")
    assert burst_worker.run().returncode == 0, burst_worker.stderr.read_text()
    assert burst_worker.stdout.read_bytes() == b""
    inside = [line for line in burst_worker.logs() if line.get("job_id") == job_id]
    assert inside
    assert not [line for line in inside if "trace_id" in line]


def test_an_exporter_nothing_provides_stops_the_worker_with_one_line(
    producer: Producer, burst_worker: BurstWorker
) -> None:
    producer.push("tests.add", 1, 2)
    run = burst_worker.run(OTEL_TRACES_EXPORTER="zipkin")
    assert run.returncode == 2
    error = burst_worker.stderr.read_text().strip().splitlines()[-1]
    assert "OTEL_TRACES_EXPORTER names 'zipkin'" in error
    assert "console" in error
    assert producer.redis.llen(producer.keys_for(None).ready) == 1  # nothing taken


def test_without_the_extra_the_producer_and_worker_run_untraced(
    producer: Producer, burst_worker: BurstWorker, tmp_path: Path
) -> None:
    # OpenTelemetry made unimportable, as where `coroq[otel]` is not installed; the variables
    # asking for traces give one warning and the jobs run.
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['opentelemetry'] = None\n")
    pythonpath = f"{tmp_path}{os.pathsep}{REPO_ROOT}"
    push = subprocess.run(
        [sys.executable, "-m", "producer", "push", "--queue", producer.queue, "-"],
        input=b'{"task": "tests.add", "args": [5, 6]}', env={**os.environ, "PYTHONPATH": pythonpath,
             "COROQ_REDIS_URL": burst_worker.environment["COROQ_REDIS_URL"]},
        capture_output=True, check=False, cwd=REPO_ROOT,
    )  # fmt: skip
    assert push.returncode == 0, push.stderr
    run = burst_worker.run(PYTHONPATH=pythonpath, **CONSOLE)
    assert run.returncode == 0, burst_worker.stderr.read_text()
    warnings = [line for line in burst_worker.logs() if line["event"] == "tracing.unavailable"]
    assert len(warnings) == 1
    assert "coroq[otel]" in warnings[0]["hint"]
    finished = [line for line in burst_worker.logs() if line["event"] == "job.succeeded"]
    assert len(finished) == 1
    assert "trace_id" not in finished[0]
