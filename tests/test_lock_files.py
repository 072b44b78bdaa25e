"""The lock in config/requirements/ is what the README's commands, CI and the image install.

`.ci/lock` writes it from pyproject.toml; these tests keep the files, the commands that use them
and pyproject.toml's ranges in step, so a lock edited by hand or left behind fails the suite.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO_ROOT

LOCKS = REPO_ROOT / "config" / "requirements"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)")


def pins(name: str) -> dict[str, Version]:
    found = {}
    for line in (LOCKS / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = Version(match.group(2))
    return found


def hashed_blocks(name: str) -> list[str]:
    """Each pinned requirement with its continuation lines."""
    text = (LOCKS / name).read_text()
    return [block for block in re.split(r"\n(?=\S)", text) if PIN.match(block)]


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(spec) for spec in project["dependencies"]]


@pytest.mark.parametrize("lock", ["dev.txt", "demo.txt", "worker.txt", "lowest.txt"])
def test_every_pin_carries_hashes(lock: str) -> None:
    blocks = hashed_blocks(lock)
    assert blocks
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_runtime_locks_name_the_same_releases_as_the_dev_lock() -> None:
    dev = pins("dev.txt")
    for lock in ("demo.txt", "worker.txt"):
        for name, version in pins(lock).items():
            assert dev.get(name) == version, f"{lock}: {name}=={version}, dev.txt: {dev.get(name)}"


def test_the_locks_satisfy_pyproject_ranges_and_lowest_sits_on_the_lower_bounds() -> None:
    newest, lowest = pins("dev.txt"), pins("lowest.txt")
    for requirement in runtime_requirements():
        name = requirement.name.lower()
        assert requirement.specifier.contains(newest[name]), (name, newest[name])
        assert requirement.specifier.contains(lowest[name]), (name, lowest[name])
        (bound,) = (spec.version for spec in requirement.specifier if spec.operator == ">=")
        assert lowest[name] == Version(bound), f"lowest.txt pins {name} {lowest[name]}, not {bound}"
    assert pins("worker.txt").keys() >= {"uvloop", "setuptools"}


def test_the_readme_ci_and_image_install_from_the_lock() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(commands) == 2
    demo, test = commands
    assert "--require-hashes -r config/requirements/demo.txt" in demo
    assert "--require-hashes -r config/requirements/dev.txt" in test
    for command in commands:
        assert "pip install -q --no-deps --no-build-isolation -e ." in command
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == test, "CI must run exactly the README's test command"
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "COPY config/requirements/worker.txt" in dockerfile
    assert "--require-hashes -r requirements.txt" in dockerfile
    assert "--no-deps --no-build-isolation ." in dockerfile


def test_the_build_backend_is_locked_at_a_version_pyproject_accepts() -> None:
    build = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["build-system"]
    (requirement,) = (Requirement(spec) for spec in build["requires"])
    for lock in ("dev.txt", "demo.txt", "worker.txt", "lowest.txt"):
        assert requirement.specifier.contains(pins(lock)[requirement.name]), lock


def test_lock_refresh_script_exists_and_is_documented() -> None:
    script = REPO_ROOT / ".ci" / "lock"
    assert script.stat().st_mode & 0o111, ".ci/lock must be executable"
    assert ".ci/lock" in (REPO_ROOT / "docs" / "development.md").read_text()


def test_mypy_and_redis_are_pinned_exactly_for_the_suite() -> None:
    """The failure that made the lock necessary: an unpinned mypy or redis-py release."""
    dev = pins("dev.txt")
    assert {"mypy", "redis", "ruff", "pytest", "hypothesis", "fakeredis"} <= dev.keys()
