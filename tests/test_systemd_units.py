"""The systemd units, checked by systemd itself: `systemd-analyze verify` parses and loads
them, `systemd-analyze security --offline=true` scores their hardening."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.deploy_tools import CONFIG, clean_env, entry_point, run, system_tool
from worker.settings import WorkerSettings

UNITS = {
    "coroq-worker.service": "coroq-worker.service",
    "coroq-worker@.service": "coroq-worker@9192.service",  # the template, as one instance
}
MAX_EXPOSURE = 2.5


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root directory as a host would have it after the install steps of the docs.

    `verify` resolves ExecStart= inside --root, so /opt/coroq/bin/worker is a stub there, and
    the host's own units (sysinit.target, network-online.target, ...) are copied in.
    """
    system_tool("systemd-analyze")
    root = tmp_path_factory.mktemp("root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(CONFIG / name, units / name)
    worker = root / "opt/coroq/bin/worker"
    worker.parent.mkdir(parents=True)
    worker.write_text("#!/bin/sh\nexit 0\n")
    worker.chmod(0o755)
    return root


def directives(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (CONFIG / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def seconds(value: str) -> float:
    parts = re.findall(r"(\d+)\s*(min|s|ms)?", value)
    scale = {"min": 60, "s": 1, "ms": 0.001, "": 1}
    return sum(int(number) * scale[unit] for number, unit in parts)


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_accepts_the_unit(unit_root: Path, unit: str) -> None:
    result = run("systemd-analyze", "verify", f"--root={unit_root}", UNITS[unit])
    assert result.returncode == 0, result.stdout + result.stderr
    # verify only warns about unknown directives and bad values: any output is a failure.
    assert result.stdout + result.stderr == ""


def test_systemd_analyze_verify_notices_a_broken_unit(unit_root: Path, tmp_path: Path) -> None:
    broken_root = tmp_path / "root"
    shutil.copytree(unit_root, broken_root, symlinks=True)
    unit = broken_root / "etc/systemd/system/coroq-worker.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=30s", "WatchdogSec=soon"))
    result = run("systemd-analyze", "verify", f"--root={broken_root}", "coroq-worker.service")
    assert "WatchdogSec" in result.stderr or "soon" in result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_hardening_scores_an_exposure_of_at_most_2_5(unit_root: Path, unit: str) -> None:
    result = run(
        "systemd-analyze", "security", "--offline=true", f"--root={unit_root}",
        "--no-pager", UNITS[unit],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_unit_notifies_restarts_and_outlasts_the_shutdown_grace(unit: str) -> None:
    settings = directives(unit)
    assert settings["Type"] == ["notify"]
    assert seconds(settings["WatchdogSec"][0]) > 0
    assert settings["KillSignal"] == ["SIGTERM"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["EnvironmentFile"][0] == "/etc/coroq/coroq.env"
    grace = float(env_file()["COROQ_SHUTDOWN_GRACE"])
    assert grace == WorkerSettings.model_fields["shutdown_grace"].default
    assert seconds(settings["TimeoutStopSec"][0]) >= grace + 10
    assert settings["DynamicUser"] == ["yes"]


def test_template_instances_take_their_metrics_port_from_the_instance_name() -> None:
    settings = directives("coroq-worker@.service")
    assert any("COROQ_METRICS_PORT=%i" in value for value in settings["Environment"])
    # The shared file must not set the port: EnvironmentFile= would override Environment=.
    assert "COROQ_METRICS_PORT" not in env_file()


def env_file() -> dict[str, str]:
    values = {}
    for line in (CONFIG / "coroq.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def test_worker_entry_point_accepts_the_environment_file(redis_url: str) -> None:
    """ExecStart's `worker`, as `worker check`, with coroq.env (Redis swapped for the test's)."""
    env = clean_env(**{**env_file(), "COROQ_REDIS_URL": redis_url})
    result = run(*entry_point("worker"), "check", env=env, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
