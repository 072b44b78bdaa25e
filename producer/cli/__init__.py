"""`producer`: push jobs and read their records from the command line (docs/reference.md).

Each module adds its commands to the one app: `jobs` (push, status, cancel, stats), `dead`
(the dead list), `queues` (pause and resume), `dashboard` (the web UI).
"""

from __future__ import annotations

from producer.cli import dashboard, dead, jobs, queues
from producer.cli.common import app

__all__ = ["app", "dashboard", "dead", "jobs", "main", "queues"]


def main() -> None:
    app()
