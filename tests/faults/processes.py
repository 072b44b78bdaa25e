"""Real worker processes for the fault tests: started, killed, restarted, and read back.

`tests/conftest.py`'s `start_worker` runs one worker per call and re-parses the whole log on
every look; the fault tests run many generations of workers with thousands of log lines
each, so this launcher reads each log incrementally and knows its worker id up front.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import REPO_ROOT
from tests.faults.tasks import LEDGER_URL_ENV

# Small timings so recovery happens within seconds: a killed worker's jobs run again
# heartbeat_ttl + at most reaper_interval after its last beat.
FAST_TIMINGS = {
    "COROQ_HEARTBEAT_INTERVAL": "0.3",
    "COROQ_HEARTBEAT_TTL": "1.5",
    "COROQ_REAPER_INTERVAL": "0.5",
    "COROQ_PROMOTE_INTERVAL": "0.2",
    "COROQ_RETRY_BASE": "0.05",
    "COROQ_RETRY_CAP": "0.5",
    "COROQ_POLL_TIMEOUT": "0.5",
}


def worker_env(
    redis_url: str, queue: str, ledger_url: str, overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a fault-test worker; no COROQ_* setting leaks in from outside."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("COROQ_")}
    return {
        **inherited,
        "PYTHONPATH": str(REPO_ROOT),
        "COROQ_REDIS_URL": redis_url,
        "COROQ_QUEUES": queue,
        "COROQ_TASKS": "tests.faults.tasks",
        "COROQ_LOG_FORMAT": "json",
        "COROQ_METRICS_PORT": "0",
        "COROQ_SHUTDOWN_GRACE": "5",
        **FAST_TIMINGS,
        LEDGER_URL_ENV: ledger_url,
        **(overrides or {}),
    }


class FaultWorker:
    """One `python -m worker` process with its JSON log in a file, read incrementally."""

    def __init__(self, env: dict[str, str], log_path: Path, worker_id: str) -> None:
        self.worker_id = worker_id
        self.log_path = log_path
        self._log_file = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            env={**env, "COROQ_WORKER_ID": worker_id},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self._offset = 0
        self._partial = b""
        self._lines: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def lines(self) -> list[dict[str, Any]]:
        """Every complete log line so far (a line cut short by SIGKILL is skipped)."""
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        self._offset += len(chunk)
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        for line in complete:
            if not line.strip():
                continue
            try:
                parsed = orjson.loads(line)
            except orjson.JSONDecodeError:
                parsed = {"event": "<not json>", "text": line.decode(errors="replace")}
            self._lines.append(parsed if isinstance(parsed, dict) else {"event": "<not json>"})
        return self._lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def log_text(self, last: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-last:])

    def wait_started(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.events("worker.started"):
                return
            if not self.alive():
                raise AssertionError(f"worker exited at start:\n{self.log_text()}")
            time.sleep(0.02)
        raise AssertionError(f"worker did not start within {timeout} s:\n{self.log_text()}")

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would; returns once it is gone."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()
        self._log_file.close()


class WorkerLauncher:
    """Starts workers for one test, each with a fresh id (a restarted process is a new
    worker, as under a supervisor), and kills whatever is left at the end of the test."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str) -> None:
        self.env = env
        self.log_dir = log_dir
        self.name = name
        self.started: list[FaultWorker] = []

    def start(
        self, *, env: dict[str, str] | None = None, worker_id: str | None = None, wait: bool = True
    ) -> FaultWorker:
        number = len(self.started)
        wid = worker_id or f"{self.name}-{number}"
        worker = FaultWorker(
            {**self.env, **(env or {})}, self.log_dir / f"worker-{number}-{wid}.log", wid
        )
        self.started.append(worker)
        if wait:
            worker.wait_started()
        return worker

    def events(self, name: str) -> list[dict[str, Any]]:
        """The events called `name` from every worker this launcher started."""
        return [line for worker in self.started for line in worker.events(name)]

    def close(self) -> None:
        for worker in self.started:
            worker.close()
