"""The run of the unit and integration tests on the lowest release of every runtime
dependency that pyproject.toml allows (tests/test_lowest_versions.py gives its verdict).

`config/requirements/lowest.txt` pins those releases (with the test tools at their dev.txt
versions); `.ci/lock` writes it beside the newest-release lock the rest of the suite runs on.
So the suite proves both ends of every range users may install. The run builds a fresh
virtualenv from that file and runs the two test folders in it, against their own Redis servers.

It takes minutes, mostly spent building the virtualenv and in tests that wait: so it starts in
a thread of its own as the session begins (tests/conftest.py, when its test is selected), beside
the other tests, and its test, moved to the end, waits for it and reads the outcome.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.redis_versions import BINARY_ENV, oldest_supported

LOWEST_VERSIONS_RUN = pytest.StashKey["LowestVersionsRun"]()
LOWEST_LOCK = REPO_ROOT / "config" / "requirements" / "lowest.txt"
FOLDERS = ["tests/unit", "tests/integration"]
# Deprecation warnings that old releases raise against today's releases of their own
# dependencies (a warning for users, an error under the suite's filterwarnings = error).
# Each is named exactly (-W takes the message literally), so any other warning still fails.
QUIET_ON_OLD_RELEASES = [
    # typer < 0.25 imports it from click; click 8.2+ warns.
    "-W", "ignore:'click.utils.get_binary_stream' is deprecated:DeprecationWarning",
    "-W", "ignore:'click.utils.get_text_stream' is deprecated:DeprecationWarning",
]  # fmt: skip


def run(
    command: list[str | Path],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, check=False, env=env, cwd=cwd, timeout=timeout
    )


# The two folders run as this many pytest processes side by side (each with its own Redis).
# The run goes on beside the rest of the suite, which keeps the machine's cores busy enough:
# one process, so that it slows the others least, and ends well before them.
SHARDS = 1


def shards_of(folders: list[str], count: int) -> list[list[str]]:
    """The test files of `folders`, dealt round-robin into `count` lists, each sorted."""
    files = sorted(
        str(path.relative_to(REPO_ROOT))
        for folder in folders
        for path in (REPO_ROOT / folder).glob("test_*.py")
    )
    return [files[start::count] for start in range(count)]


def pinned(lock: Path, name: str) -> str:
    for line in lock.read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==")[1].split()[0]
    raise AssertionError(f"{name} is not pinned in {lock}")


class LowestVersionsRun:
    """The whole run in a thread; `problems()` waits for it and lists what went wrong."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._problems: list[str] = []
        self._shards: list[subprocess.Popen[str]] = []
        self._thread = threading.Thread(target=self._run, name="lowest-versions", daemon=True)

    def start(self) -> LowestVersionsRun:
        self._thread.start()
        return self

    def problems(self, timeout: float) -> list[str]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            return [f"the run on the lowest releases did not end within {timeout} s"]
        return self._problems

    def stop(self) -> None:
        """End the shards still running (a session cut short must not leave them behind)."""
        for shard in self._shards:
            if shard.poll() is None:
                shard.kill()
                shard.wait()

    def _run(self) -> None:
        try:
            self._problems = self._build_and_test()
        except Exception as exc:  # reported by the test, not lost in a thread
            self._problems = [f"{type(exc).__name__}: {exc}"]

    def _build_and_test(self) -> list[str]:
        venv = self._workdir / "lowest"
        python = venv / "bin" / "python"
        created = run([sys.executable, "-m", "venv", venv])
        if created.returncode != 0:
            return [created.stderr]
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.pop("VIRTUAL_ENV", None)
        # And the oldest Redis coroq supports, where this machine has one.
        oldest = oldest_supported()
        if oldest is not None:
            env[BINARY_ENV] = oldest
        # Measured by the outer run only: coverage's subprocess hook is not passed on.
        env.pop("COVERAGE_PROCESS_CONFIG", None)
        installed = run(
            [python, "-m", "pip", "install", "-q", "--require-hashes", "-r", LOWEST_LOCK], env=env
        )
        if installed.returncode != 0:
            return [installed.stdout + installed.stderr]
        # The lowest setuptools allowed by [build-system] builds the project too.
        project = run(
            [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", "."],
            env=env,
            cwd=REPO_ROOT,
        )
        if project.returncode != 0:
            return [project.stdout + project.stderr]
        versions = run(
            [python, "-c", "import redis, pydantic; print(redis.__version__, pydantic.VERSION)"]
        )
        expected = [pinned(LOWEST_LOCK, "redis"), pinned(LOWEST_LOCK, "pydantic")]
        if versions.stdout.split() != expected:
            return [f"installed {versions.stdout.split()}, not {expected}: {versions.stderr}"]
        return self._test(python, env)

    def _test(self, python: Path, env: dict[str, str]) -> list[str]:
        # --no-cov: lowest.txt pins pytest-cov (addopts names --cov, which pytest would refuse
        # without it), but this inner run of two folders measures nothing: its data files would
        # land beside the outer run's and be combined into its total, and its own total would be
        # held to a floor set for the whole suite.
        # -m "not slow": the tests that mostly wait (ticks, pauses, shares of slots) exercise no
        # more of the dependencies than the fast ones, and would double this run's time.
        pytest_args = [
            "-q", "-p", "no:cacheprovider", "--no-cov", "-m", "not slow", *QUIET_ON_OLD_RELEASES,
        ]  # fmt: skip
        shards = self._shards = [
            subprocess.Popen(
                [python, "-m", "pytest", *pytest_args, *files],
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for files in shards_of(FOLDERS, SHARDS)
        ]
        # Every shard is waited for before any verdict: one left running would be reaped later,
        # in the middle of another test.
        outputs = [shard.communicate(timeout=1500) for shard in shards]
        problems = []
        for shard, (out, err) in zip(shards, outputs, strict=True):
            if shard.returncode != 0:
                summary = "\n".join(out.splitlines()[-40:])
                problems.append(f"on the lowest releases:\n{summary}\n{err[-2000:]}")
        return problems
