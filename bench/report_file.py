"""The JSON report the smaller benchmarks write (cluster.py, tracing.py): what was asked, the
machine's CPUs and load, the figures, the problems seen and every round."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import orjson


def write_report(
    path: Path,
    args: argparse.Namespace,
    load_at_start: tuple[float, float, float],
    result: dict[str, Any],
    problems: list[str],
    rounds: list[dict[str, Any]],
    **extra: Any,
) -> None:
    report = {
        "args": {name: str(value) for name, value in vars(args).items()},
        **extra,
        "cpus": os.cpu_count(),
        "load_average_start_end": [load_at_start, os.getloadavg()],
        "result": result,
        "problems": problems,
        "per_round": rounds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
