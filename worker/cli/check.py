"""`worker check`: is this worker ready to run? Settings, Redis, tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from producer.connection import sync_client
from worker.errors import TaskRegistrationError
from worker.registry import TaskRegistry
from worker.settings import WorkerSettings

MIN_REDIS_VERSION = (6, 2, 0)  # BLMOVE


@dataclass
class CheckReport:
    lines: list[tuple[bool, str]] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)

    def add(self, ok: bool, text: str) -> None:
        self.lines.append((ok, text))

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.lines)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def check_worker(settings: WorkerSettings) -> CheckReport:
    report = CheckReport()
    report.add(
        True, f"settings: queues={','.join(settings.queues)} concurrency={settings.concurrency}"
    )
    try:
        registry = TaskRegistry.from_modules(settings.tasks)
    except TaskRegistrationError as exc:
        report.add(False, f"tasks: {exc}")
    else:
        report.tasks = registry.names()
        report.add(True, f"tasks: {len(registry)} registered")
    client = sync_client(settings.redis_url, retries=0, socket_timeout=5)
    try:
        info = client.info("server")
        version = str(info.get("redis_version", "0"))
        supported = _version(version) >= MIN_REDIS_VERSION
        report.add(
            supported,
            f"redis: {settings.redacted_redis_url} answers (version {version})"
            + ("" if supported else "; coroq needs Redis 6.2 or later"),
        )
    except redis.RedisError as exc:
        report.add(False, f"redis: {settings.redacted_redis_url} unreachable: {exc}")
    finally:
        client.close()
    return report
