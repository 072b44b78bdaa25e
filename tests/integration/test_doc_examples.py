"""Every example of the pages below runs as written, against the real worker process (only
the Redis URL and the queue are pointed at the test's own)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from producer.keys import QueueKeys
from tests.conftest import REPO_ROOT, WorkerProcess

# Each page, and how many examples that talk to Redis it has at least.
PAGES = {"futures.md": 7, "scheduling.md": 2}
DOC_URL = "redis://127.0.0.1:6379/0"


def examples(*, runnable: bool = True, page: str | None = None) -> list[tuple[str, str]]:
    """(page: the section's title, the code) of each Python block of the pages that talks to
    Redis (those run), or of the others (task code: those must compile)."""
    found = []
    for name in PAGES if page is None else [page]:
        section = ""
        text = (REPO_ROOT / "docs" / name).read_text()
        for part in re.split(r"^(## .*)$", text, flags=re.MULTILINE):
            if part.startswith("## "):
                section = part[3:].strip()
                continue
            for number, code in enumerate(re.findall(r"```python\n(.*?)```", part, re.DOTALL)):
                if (DOC_URL in code) == runnable:
                    found.append((f"{name}: {section} #{number + 1}", code))
    return found


@pytest.mark.parametrize(("page", "least"), PAGES.items())
def test_the_page_has_examples(page: str, least: int) -> None:
    assert len(examples(page=page)) >= least


@pytest.mark.parametrize(
    ("title", "code"), examples(runnable=False), ids=[t for t, _ in examples(runnable=False)]
)
def test_the_task_code_compiles(title: str, code: str) -> None:
    compile(code, title, "exec")


@pytest.mark.parametrize(("title", "code"), examples(), ids=[title for title, _ in examples()])
def test_the_example_runs(
    title: str,
    code: str,
    redis_url: str,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # The page's examples use the built-in tasks and the examples a new install has.
    start_worker("--concurrency", "10", env={"COROQ_TASKS": "tests.tasks,worker.tasks.examples"})
    code = code.replace(f'Producer("{DOC_URL}")', f'Producer("{redis_url}", queue="{keys.queue}")')
    code = code.replace(DOC_URL, redis_url)
    code = code.replace("coroq:{default}:", f"coroq:{{{keys.queue}}}:")
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, f"{title}:\n{result.stdout}\n{result.stderr}"
