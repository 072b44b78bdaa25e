"""The task the benchmark's worker runs: `--tasks bench.tasks` (with the repo on PYTHONPATH)."""

from __future__ import annotations

from worker import task


@task("bench.noop")
async def noop() -> None:
    """Do nothing: what is measured is the queue's own cost per job."""
