"""What a worker process imports to run jobs: the parts it does not use are left out of its
memory (aiohttp until an `http.request` job runs, the dashboard, OpenTelemetry's tracing
unless it traces), checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

NOT_IMPORTED = (
    "aiohttp",
    "jinja2",
    "producer.dashboard",
    "worker.tracing.spans",
    "worker.tracing.provider",
    "opentelemetry.sdk.trace",
    "worker.testing",
)


def test_a_worker_imports_only_what_it_uses() -> None:
    script = (
        "import sys\n"
        "import worker.cli, worker.process.daemon, worker.tasks.builtin\n"
        "from worker.registry import TaskRegistry\n"
        "TaskRegistry.from_modules([])\n"
        f"print(' '.join(m for m in {NOT_IMPORTED!r} if m in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert found.stdout.split() == []


def test_the_worker_command_leaves_rich_out_and_a_task_may_still_import_it() -> None:
    # What `worker` and `python -m worker` import before their command runs.
    script = (
        "import sys\n"
        "from worker.entry_point import import_structlog_without_rich\n"
        "import_structlog_without_rich()\n"
        "import worker.cli, worker.process.daemon, worker.tasks.builtin\n"
        "import structlog.dev\n"
        "print('rich' in sys.modules, 'pygments' in sys.modules)\n"
        "print(structlog.dev.default_exception_formatter is structlog.dev.plain_traceback)\n"
        "import rich.console\n"  # a task of the worker's may use it
        "print('rich' in sys.modules)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert found.stdout.split() == ["False", "False", "True", "True"]
