"""Lint, format and strict typing are part of the suite, so the README's one test command
checks everything CI checks."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_lint_is_clean() -> None:
    result = run_tool("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = run_tool("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean_on_producer_and_worker() -> None:
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
