"""`worker check` and `worker`: exit codes, clear errors, and where settings come from."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.helpers import run_module
from worker.local_redis import free_port


@pytest.fixture
def worker_env(redis_url: str) -> dict[str, str]:
    return {"COROQ_REDIS_URL": redis_url, "COROQ_TASKS": "tests.tasks"}


def assert_one_clear_error(stderr: str, setting: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert setting in lines[0]
    assert "Traceback" not in stderr


def test_worker_check_passes_and_lists_the_registered_tasks(worker_env: dict[str, str]) -> None:
    result = run_module("worker", "check", env=worker_env)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("tests.add", "tests.nap", "echo"):
        assert name in result.stdout


def test_worker_check_exits_1_when_redis_is_unreachable(worker_env: dict[str, str]) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    result = run_module("worker", "check", env={**worker_env, "COROQ_REDIS_URL": unreachable})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_worker_check_exits_1_when_a_task_module_cannot_be_imported(
    worker_env: dict[str, str],
) -> None:
    result = run_module("worker", "check", env={**worker_env, "COROQ_TASKS": "tests.no_such"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "tests.no_such" in result.stdout


@pytest.mark.parametrize("command", [["check"], []], ids=["check", "daemon"])
def test_bad_setting_exits_2_with_one_line_naming_it(
    worker_env: dict[str, str], command: list[str]
) -> None:
    result = run_module("worker", *command, env={**worker_env, "COROQ_CONCURRENCY": "-1"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_clear_error(result.stderr, "concurrency")


def test_bad_flag_value_exits_2_with_one_line_naming_it(worker_env: dict[str, str]) -> None:
    result = run_module("worker", "--concurrency", "0", env=worker_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_clear_error(result.stderr, "concurrency")


def test_missing_config_file_exits_2_with_one_line_naming_it(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.toml"
    result = run_module("worker", "--config", str(missing), env=worker_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_clear_error(result.stderr, str(missing))


@pytest.mark.slow
def test_config_file_is_overridden_by_env_and_env_by_flags(start_worker, tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text("concurrency = 3\n")
    from_file = start_worker("--config", str(config), wait=False)
    from_env = start_worker("--config", str(config), env={"COROQ_CONCURRENCY": "7"}, wait=False)
    from_flag = start_worker(
        "--config", str(config), "--concurrency", "9", env={"COROQ_CONCURRENCY": "7"}, wait=False
    )
    workers = {3: from_file, 7: from_env, 9: from_flag}
    for expected, worker in workers.items():
        worker.wait_started()
        assert worker.events("worker.started")[0]["concurrency"] == expected
    for worker in workers.values():
        worker.signal(signal.SIGTERM)
    for worker in workers.values():
        assert worker.wait(timeout=30) == 0
