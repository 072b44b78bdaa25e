"""The benchmark's smoke form runs here so that it cannot rot: coroq only, W1 (with the BRPOP
floor and the redis-benchmark ceiling), W3 and scale (1 and 2 processes), a few hundred jobs,
one round.

It asserts that the run completes and that its JSON is sane; never a time. It creates no peer
virtual environment (`--systems coroq --no-install`).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from importlib import util
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_compare_quick_coroq_only(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    chart = tmp_path / "compare.png"
    command = [
        sys.executable, str(REPO_ROOT / "bench" / "compare.py"),
        "--quick", "--systems", "coroq", "--workloads", "w1,w3,scale", "--no-install",
        "--json", str(out), "--markdown", str(tmp_path / "compare.md"), "--chart", str(chart),
    ]  # fmt: skip
    venvs = REPO_ROOT / "bench" / ".venvs"
    before = sorted(venvs.iterdir()) if venvs.exists() else []
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=280, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (sorted(venvs.iterdir()) if venvs.exists() else []) == before

    document = json.loads(out.read_text())
    assert document["config"]["quick"] is True
    assert document["config"]["systems"] == ["coroq"]
    assert document["problems"] == []
    assert len(document["rounds"]) == 1

    w1 = document["summary"]["w1"]
    assert positive(w1["coroq"]["jobs_per_s"]["median"])
    assert positive(w1["coroq"]["rss_peak_mb"]["median"])
    assert positive(w1["brpop-loop"]["jobs_per_s"]["median"])
    assert document["ratios_to_coroq"]["w1"]["coroq"]["jobs_per_s"]["median"] == 1.0

    latency = document["summary"]["w3"]["coroq"]
    p50, p99, top = (latency[k]["median"] for k in ("p50_ms", "p99_ms", "max_ms"))
    assert all(positive(v) for v in (p50, p99, top))
    assert p50 <= p99 <= top

    scale = document["summary"]["scale"]
    assert positive(scale["coroq"]["jobs_per_s"]["median"])
    assert positive(scale["coroq-2p"]["jobs_per_s"]["median"])

    goals = {goal["goal"]: goal for goal in document["goals"]}
    assert goals["W3 p50 (ms)"]["measured"] is not None
    assert "W1 throughput" in (tmp_path / "compare.md").read_text()
    assert "coroq" in result.stdout
    if util.find_spec("matplotlib") is not None:
        assert chart.read_bytes().startswith(b"\x89PNG")


def test_handoff_floor_runs_and_reports_a_rate() -> None:
    command = [sys.executable, str(REPO_ROOT / "bench" / "handoff_floor.py")]
    command += ["--jobs", "500", "--rounds", "1"]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hand-off floor"), result.stdout
    assert " jobs/s, " in result.stdout
    assert " us per job " in result.stdout


def test_handoff_floor_reports_the_efficiency_of_sleeping_jobs() -> None:
    """W2's shape on the bare hand-off: the efficiency any worker built this way can reach."""
    command = [sys.executable, str(REPO_ROOT / "bench" / "handoff_floor.py")]
    command += ["--jobs", "200", "--concurrency", "50", "--sleep-ms", "5", "--rounds", "1"]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[-1]
    assert line.startswith("efficiency with 5 ms jobs: "), result.stdout
    efficiency = float(line.split(": ")[1].split()[0])
    # The ideal (4 waves of 5 ms) is a lower bound on the wall, up to the loop's timer
    # granularity (a millisecond with uvloop).
    assert 0 < efficiency < 1.5


def test_cpu_split_reports_where_the_cpu_goes(tmp_path: Path) -> None:
    out = tmp_path / "split.json"
    command = [sys.executable, str(REPO_ROOT / "bench" / "cpu_split.py")]
    command += ["--jobs", "2000", "--rounds", "1", "--processes", "2", "--json", str(out)]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("2 process(es), cpu_affinity auto: "), result.stdout
    median = json.loads(out.read_text())["median"]
    assert positive(median["jobs_per_s"])
    assert positive(median["worker_us_per_job"])
    assert median["redis_us_per_job"] >= 0


def test_ticks_bench_counts_each_tick_once(tmp_path: Path) -> None:
    out = tmp_path / "ticks.json"
    command = [sys.executable, str(REPO_ROOT / "bench" / "ticks.py")]
    command += ["--workers", "2", "--seconds", "4", "--json", str(out)]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())["result"]
    assert figures["ticks"] >= 2
    assert figures["pushed_twice"] == 0
    assert figures["delay_ms_p99"] >= 0
