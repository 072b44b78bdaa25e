"""The `worker` command's entry point (and `python -m worker`'s): what a worker imports first.

structlog imports rich and pygments whenever rich is installed (for its console exception
format), and rich is installed with coroq (typer requires it): about 5 MB of every worker's
resident memory that a daemon logging JSON never uses. The command imports structlog with rich
hidden, so its console logs print plain Python tracebacks. Only that one import is affected: a
task that imports rich gets it as usual. A program that runs a worker some other way
(`worker.testing`, its own `worker.cli.main()`) imports structlog as it likes.
"""

from __future__ import annotations

import sys


def import_structlog_without_rich() -> None:
    if "structlog" in sys.modules or "rich" in sys.modules:
        return  # too late, or rich is in use already: nothing to save
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog  # noqa: F401, PLC0415 - imported here for its side effect
    finally:
        del sys.modules["rich"]


def main() -> None:
    import_structlog_without_rich()
    from worker.cli import main as run_command  # noqa: PLC0415 - after structlog

    run_command()
