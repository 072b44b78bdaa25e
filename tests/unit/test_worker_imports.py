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
