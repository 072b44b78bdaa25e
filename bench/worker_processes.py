"""Real `python -m worker` processes for the smaller benchmarks (limits, recovery, cluster):
started with JSON logs to a file and no metrics port, stopped with SIGTERM (killed after 30 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def spawn_worker(settings: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A worker with these COROQ_* settings (and PYTHONPATH, when given) over the defaults."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "COROQ_LOG_FORMAT": "json",
        "COROQ_METRICS_PORT": "0",
        **settings,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> list[int]:
    """SIGTERM drains a worker; one still running after 30 s is killed. Returns exit codes."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return [worker.returncode for worker in workers]
