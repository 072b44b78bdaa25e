"""A pytest run of part of the suite in a process of its own, started as the session begins
and read by one test at the end (tests/conftest.py): the fault-injection suite mostly waits on
worker processes it starts, kills and restarts, so it goes on beside the other tests rather than
after them, and the whole suite stays within its time on a two-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import REPO_ROOT

# Set in the inner run, so that it runs its tests itself.
INNER_RUN_ENV = "COROQ_TEST_INNER_RUN"


class BackgroundPytest:
    """`python -m pytest ARGS` in a thread; `outcome()` waits for it."""

    def __init__(self, args: list[str]) -> None:
        self._args = args
        self._process: subprocess.Popen[str] | None = None
        self._output = ""
        self._thread = threading.Thread(target=self._run, name="background-pytest", daemon=True)

    def start(self) -> BackgroundPytest:
        self._thread.start()
        return self

    def outcome(self, timeout: float) -> tuple[int | None, str]:
        """(exit code, the end of its output); None when it did not end in time."""
        self._thread.join(timeout)
        code = None if self._process is None else self._process.poll()
        return code, "\n".join(self._output.splitlines()[-120:])

    def stop(self) -> None:
        """End it if it still runs (a session cut short must not leave it behind)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _run(self) -> None:
        env = {**os.environ, INNER_RUN_ENV: "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *self._args],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._output, _ = self._process.communicate()


FAULT_SUITE_RUN = pytest.StashKey[BackgroundPytest]()


def fault_suite_args(node_ids: list[str]) -> list[str]:
    # --no-cov: the outer run measures it (coverage follows every subprocess it starts) and
    # combines its data with the rest; -rfE: its failures in the output the test shows.
    return ["-q", "-p", "no:cacheprovider", "--no-cov", "-rfE", *node_ids]
