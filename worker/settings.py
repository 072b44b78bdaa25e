"""Worker settings: one pydantic-settings model, built once and passed down.

Sources, highest first: values given by the caller (CLI flags), `COROQ_*` environment
variables, the TOML file (`--config` or `COROQ_CONFIG`), then the defaults below.
`config/worker.toml` documents every field.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from redis.connection import parse_url

from producer.connection import DEFAULT_REDIS_URL, redact_url
from producer.errors import CoroqError
from producer.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, validate_queue_name
from producer.redis_urls import (
    CLUSTER_SCHEMES,
    SENTINEL_SCHEMES,
    is_cluster_url,
    is_sentinel_url,
    parse_cluster_url,
    parse_sentinel_url,
)
from worker import cpu_affinity
from worker.schedules import Schedule, ScheduleError, schedule_of

CONFIG_ENV_VAR = "COROQ_CONFIG"
REDIS_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)


class ScheduleTable(BaseModel):
    """One `[schedules.<name>]` table: a task pushed periodically (docs/scheduling.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field(min_length=1)
    cron: str | None = None
    every: float | str | None = None
    timezone: str | None = None
    args: list[Any] | dict[str, Any] | None = None
    catch_up: bool = False
    queue: str | None = None

    def schedule(self, name: str) -> Schedule:
        schedule = schedule_of(
            name, self.task, cron=self.cron, every=self.every, timezone=self.timezone,
            args=self.args, catch_up=self.catch_up, queue=self.queue,
        )  # fmt: skip
        if schedule is None:
            raise ScheduleError("give cron= or every=")
        return schedule


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class WorkerSettings(BaseSettings):
    """Everything a worker process can be told."""

    model_config = SettingsConfigDict(
        env_prefix="COROQ_", extra="forbid", validate_default=True, frozen=True
    )

    redis_url: str = Field(DEFAULT_REDIS_URL, repr=False, description="redis, rediss or unix URL")
    prefix: str = Field(DEFAULT_PREFIX, min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [DEFAULT_QUEUE])
    concurrency: PositiveInt = 100
    processes: Annotated[int, Field(ge=1, le=256)] = 1
    cpu_affinity: str = "auto"
    tasks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console", "auto"] = "auto"
    shutdown_grace: Annotated[float, Field(ge=0)] = 30.0
    result_ttl: PositiveInt = 7 * 24 * 3600
    max_payload_bytes: PositiveInt = 1024 * 1024
    default_timeout: PositiveFloat = 300.0
    default_max_attempts: PositiveInt = 3
    poll_timeout: Annotated[float, Field(gt=0, le=60)] = 10.0
    sync_threads: PositiveInt = 32
    http_max_connections: PositiveInt = 100
    # A lost worker's jobs run again within heartbeat_ttl + reaper_interval (9.5 s), while a
    # live worker whose beats stall for up to heartbeat_ttl - heartbeat_interval (3.5 s) is
    # never taken for dead (docs/reliability.md#recovery-time).
    heartbeat_interval: Annotated[float, Field(gt=0, le=60)] = 3.0
    heartbeat_ttl: Annotated[float, Field(gt=0, le=600)] = 6.5
    reaper_interval: Annotated[float, Field(gt=0, le=600)] = 3.0
    retry_base: PositiveFloat = 1.0
    retry_factor: Annotated[float, Field(ge=1)] = 2.0
    retry_cap: PositiveFloat = 300.0
    loop_lag_threshold: PositiveFloat = 0.5
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9191
    metrics_host: str = Field("0.0.0.0", min_length=1)  # noqa: S104 - scraped from outside
    worker_id: str = Field(default_factory=default_worker_id, pattern=r"^[A-Za-z0-9_.@-]+$")
    schedules: dict[str, ScheduleTable] = Field(default_factory=dict)
    # From `queues = ["critical:6", "default:3"]`: slots shared by weight, not in strict order.
    queue_weights: dict[str, PositiveInt] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _weights_out_of_queue_names(cls, data: Any) -> Any:
        """`critical:6` in `queues`: the queue `critical`, of weight 6 (a name ending in `:`
        and digits is read so); with any weight given, a queue without one weighs 1."""
        if not isinstance(data, dict) or not isinstance(data.get("queues"), str | list):
            return data
        names, weights = [], {}
        for entry in _split_commas(data["queues"]):
            name, colon, weight = str(entry).rpartition(":")
            if colon and name and weight.isdigit():
                names.append(name)
                weights[name] = int(weight)  # 0 is refused by the field's own check
            else:
                names.append(str(entry))
        if weights:
            data = {**data, "queue_weights": {name: weights.get(name, 1) for name in names}}
        return {**data, "queues": names}

    @field_validator("queues", "tasks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("queues")
    @classmethod
    def _valid_queue_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one queue is needed")
        for name in value:
            validate_queue_name(name)
        return list(dict.fromkeys(value))

    @field_validator("schedules")
    @classmethod
    def _valid_schedules(cls, value: dict[str, ScheduleTable]) -> dict[str, ScheduleTable]:
        for name, table in value.items():
            try:
                table.schedule(name)
                if table.queue is not None:
                    validate_queue_name(table.queue)
            except (ScheduleError, CoroqError) as exc:
                raise ValueError(f"schedule {name!r}: {exc}") from None
        return value

    def schedule_list(self) -> list[Schedule]:
        """The `[schedules]` tables as schedules."""
        return [table.schedule(name) for name, table in self.schedules.items()]

    @field_validator("cpu_affinity")
    @classmethod
    def _valid_cpu_affinity(cls, value: str) -> str:
        return cpu_affinity.normalise(value)

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"the URL must start with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}"
            )
        try:
            if is_sentinel_url(value):
                parse_sentinel_url(value)
            elif is_cluster_url(value):
                parse_cluster_url(value)
            else:
                parse_url(value)  # type: ignore[no-untyped-call]  # redis-py's own reading
        except ValueError as exc:
            # Its messages never repeat the URL, so the password stays out of them.
            raise ValueError(f"not a usable Redis URL: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent_timings(self) -> WorkerSettings:
        if self.heartbeat_ttl <= 2 * self.heartbeat_interval:
            raise ValueError(
                "heartbeat_ttl must be more than twice heartbeat_interval, or one late beat "
                "would make a live worker look dead"
            )
        if self.retry_cap < self.retry_base:
            raise ValueError("retry_cap must be at least retry_base")
        stray = sorted(set(self.queue_weights) - set(self.queues))
        if stray:
            raise ValueError(f"queue_weights names queues not in queues: {', '.join(stray)}")
        return self

    @property
    def redacted_redis_url(self) -> str:
        return redact_url(self.redis_url)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


class SettingsError(CoroqError):
    """Settings that cannot be used; the message names the setting and the source."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> WorkerSettings:
    """Build the settings from flags (`overrides`, None meaning "not given"), env and TOML."""
    given = {name: value for name, value in overrides.items() if value is not None}
    path = config_file or _config_from_env()
    if path is not None and not path.is_file():
        raise SettingsError(f"config file not found: {path}")
    settings_cls: type[WorkerSettings] = WorkerSettings
    if path is not None:
        # The TOML path is known only at run time; a subclass carries it to the source.
        config = SettingsConfigDict(**{**WorkerSettings.model_config, "toml_file": path})
        settings_cls = type("WorkerSettings", (WorkerSettings,), {"model_config": config})
    try:
        return settings_cls(**given)
    except ValidationError as exc:
        raise SettingsError(describe_settings_error(exc, path)) from None
    except (OSError, ValueError) as exc:  # an unreadable or malformed TOML file
        raise SettingsError(f"cannot read config file {path}: {exc}") from None


def _config_from_env() -> Path | None:
    value = os.environ.get(CONFIG_ENV_VAR)
    return Path(value) if value else None


def describe_settings_error(error: ValidationError, path: Path | None) -> str:
    lines = []
    for detail in error.errors(include_url=False):
        location, message = detail["loc"], detail["msg"]
        if location[:1] == ("queue_weights",):  # written as `queues = ["name:weight"]`
            queue = location[1] if len(location) > 1 else "?"
            location, message = ("queues",), f"queue {queue!r}: weight: {message}"
        name = ".".join(str(part) for part in location) or "settings"
        env_name = f"COROQ_{name.upper()}"
        where = f" (flag --{name.replace('_', '-')}, env {env_name}"
        where += f", or {path})" if path else ")"
        value = detail.get("input")
        shown = "" if isinstance(value, dict) or name == "redis_url" else f"; got {value!r}"
        lines.append(f"invalid setting {name}{where}: {message}{shown}")
    return "\n".join(lines)
