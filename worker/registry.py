"""Task registration: the `@task` decorator and the registry built from task modules.

`@task` only marks a function; nothing global is mutated at import. The worker builds a
`TaskRegistry` from the modules named in its `tasks` setting (plus the built-ins), so the set
of runnable tasks is exactly what the configuration says. A payload names a task; it never
names code to import.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from producer.envelope import first_error
from producer.unique_tasks import UniqueTask
from worker.errors import InvalidArguments, TaskRegistrationError, UnknownTask
from worker.limits import LimitError, TaskLimits, check_limit_key, task_limits
from worker.retry import Backoff
from worker.schedules import Schedule, ScheduleError, schedule_of

BUILTIN_TASK_MODULES = ("worker.tasks.builtin",)
_TASK_ATTRIBUTE = "__coroq_task__"
_TASK_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class TaskOptions:
    name: str
    timeout: float | None = None
    max_attempts: int | None = None
    concurrency: int | None = None
    backoff: Backoff | None = None
    schedule: Schedule | None = None
    limits: TaskLimits | None = None
    unique_ttl: float | None = None  # None: not unique; else how long its key outlives it


def task(
    name: str,
    *,
    timeout: float | None = None,
    max_attempts: int | None = None,
    concurrency: int | None = None,
    backoff: Backoff | None = None,
    cron: str | None = None,
    every: float | str | None = None,
    timezone: str | None = None,
    schedule_args: Sequence[Any] | dict[str, Any] | None = None,
    catch_up: bool = False,
    schedule_queue: str | None = None,
    rate_limit: str | None = None,
    global_concurrency: int | None = None,
    limit_key: str | None = None,
    unique: bool = False,
    unique_ttl: float = 0,
) -> Callable[[F], F]:
    """Mark a function (`async def` or `def`) as the task `name`.

    `timeout` (seconds) and `max_attempts` are defaults a job's envelope may override;
    `concurrency` caps how many jobs of this task run at once in one worker; `backoff`
    replaces the worker's retry delays (settings retry_base, retry_factor, retry_cap).

    `cron` (in `timezone`, UTC by default) or `every` (seconds, or "30s", "5m") make it
    periodic (docs/scheduling.md#periodic-jobs): each tick pushes one job, with
    `schedule_args`, to `schedule_queue` (the worker's first queue by default); ticks missed
    while no worker ran are skipped, or run once with `catch_up`.

    `rate_limit` ("100/s", "10/m", "1000/h") and `global_concurrency` hold across every
    worker of the queue; with `limit_key`, the name of an argument, they apply to each value
    of that argument on its own (docs/scheduling.md#rate-limits-and-global-concurrency).

    `unique`: while a job of this task with the same arguments is queued, delayed, running or
    retrying, pushing another pushes nothing and returns the first one's id; its key stays
    taken `unique_ttl` seconds after it ends (docs/scheduling.md#unique-jobs).
    """
    if not _TASK_NAME.match(name):
        raise TaskRegistrationError(f"invalid task name {name!r}")
    for option, value in (("timeout", timeout), ("max_attempts", max_attempts)):
        if value is not None and value <= 0:
            raise TaskRegistrationError(f"task {name!r}: {option} must be positive")
    if concurrency is not None and concurrency < 1:
        raise TaskRegistrationError(f"task {name!r}: concurrency must be at least 1")
    try:
        schedule = schedule_of(
            name, name, cron=cron, every=every, timezone=timezone, args=schedule_args,
            catch_up=catch_up, queue=schedule_queue,
        )  # fmt: skip
    except ScheduleError as exc:
        raise TaskRegistrationError(f"task {name!r}: {exc}") from None
    try:
        limits = task_limits(
            rate_limit=rate_limit, global_concurrency=global_concurrency, limit_key=limit_key
        )
    except LimitError as exc:
        raise TaskRegistrationError(f"task {name!r}: {exc}") from None
    if not isinstance(unique, bool):
        raise TaskRegistrationError(f"task {name!r}: unique must be True or False")
    if isinstance(unique_ttl, bool) or not isinstance(unique_ttl, int | float) or unique_ttl < 0:
        raise TaskRegistrationError(f"task {name!r}: unique_ttl must be seconds >= 0")
    if unique_ttl and not unique:
        raise TaskRegistrationError(f"task {name!r}: unique_ttl needs unique=True")
    options = TaskOptions(
        name, timeout, max_attempts, concurrency, backoff, schedule, limits,
        float(unique_ttl) if unique else None,
    )  # fmt: skip

    def mark(function: F) -> F:
        try:
            check_limit_key(limits, inspect.signature(function))
        except LimitError as exc:
            raise TaskRegistrationError(f"task {name!r}: {exc}") from None
        setattr(function, _TASK_ATTRIBUTE, options)
        return function

    return mark


class ArgumentBinder:
    """Checks a job's arguments against a function's signature and type hints."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.signature = inspect.signature(function)
        try:
            hints = typing.get_type_hints(function, include_extras=True)
        except Exception as exc:
            raise TaskRegistrationError(
                f"cannot resolve the type hints of {function.__qualname__}: {exc}"
            ) from exc
        self._adapters: dict[str, TypeAdapter[Any]] = {
            name: TypeAdapter(hints[name]) for name in self.signature.parameters if name in hints
        }

    def bind(self, positional: list[Any], keywords: dict[str, Any]) -> inspect.BoundArguments:
        try:
            bound = self.signature.bind(*positional, **keywords)
        except TypeError as exc:
            raise InvalidArguments(str(exc)) from None
        for name, value in bound.arguments.items():
            adapter = self._adapters.get(name)
            if adapter is not None:
                bound.arguments[name] = self._validate(name, adapter, value)
        return bound

    def _validate(self, name: str, adapter: TypeAdapter[Any], value: Any) -> Any:
        kind = self.signature.parameters[name].kind
        try:
            if kind is inspect.Parameter.VAR_POSITIONAL:
                return tuple(adapter.validate_python(item) for item in value)
            if kind is inspect.Parameter.VAR_KEYWORD:
                return {key: adapter.validate_python(item) for key, item in value.items()}
            return adapter.validate_python(value)
        except ValidationError as exc:
            _, message = first_error(exc)
            raise InvalidArguments(f"argument {name!r}: {message}") from None


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A registered task."""

    name: str
    function: Callable[..., Any]
    is_async: bool
    timeout: float | None
    max_attempts: int | None
    concurrency: int | None
    binder: ArgumentBinder = field(repr=False)
    backoff: Backoff | None = None
    schedule: Schedule | None = None
    limits: TaskLimits | None = None
    unique_ttl: float | None = None  # None: not unique

    @classmethod
    def from_function(cls, function: Callable[..., Any], options: TaskOptions) -> TaskSpec:
        return cls(
            name=options.name,
            function=function,
            is_async=inspect.iscoroutinefunction(function),
            timeout=options.timeout,
            max_attempts=options.max_attempts,
            concurrency=options.concurrency,
            binder=ArgumentBinder(function),
            backoff=options.backoff,
            schedule=options.schedule,
            limits=options.limits,
            unique_ttl=options.unique_ttl,
        )


class TaskRegistry:
    """The tasks one worker can run, by name."""

    def __init__(self, specs: Iterable[TaskSpec] = ()) -> None:
        self._specs: dict[str, TaskSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: TaskSpec) -> None:
        existing = self._specs.get(spec.name)
        if existing is not None and existing.function is not spec.function:
            raise TaskRegistrationError(
                f"task {spec.name!r} is declared twice: by {_where(existing.function)} "
                f"and by {_where(spec.function)}"
            )
        self._specs[spec.name] = spec

    def get(self, name: str) -> TaskSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownTask(name) from None

    def names(self) -> list[str]:
        return sorted(self._specs)

    def unique_tasks(self) -> dict[str, UniqueTask]:
        """The tasks declared `unique=True`, as producers read them (producer/unique_tasks.py)."""
        return {
            spec.name: UniqueTask(spec.unique_ttl, _parameter_names(spec.binder.signature))
            for spec in self._specs.values()
            if spec.unique_ttl is not None
        }

    def schedules(self) -> list[Schedule]:
        """The schedules of the periodic tasks (`@task(cron=...)`, `every=`)."""
        return [spec.schedule for spec in self._specs.values() if spec.schedule is not None]

    def without_schedules(self) -> TaskRegistry:
        """The same tasks, none of them periodic: for a worker whose jobs must be only those
        pushed to it (the in-process worker of tests, `worker.testing`)."""
        return TaskRegistry(replace(spec, schedule=None) for spec in self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    @classmethod
    def from_modules(cls, module_names: Iterable[str], *, builtins: bool = True) -> TaskRegistry:
        registry = cls()
        names = [*BUILTIN_TASK_MODULES, *module_names] if builtins else list(module_names)
        for module_name in dict.fromkeys(names):
            for spec in specs_in_module(_import(module_name)):
                registry.add(spec)
        return registry


def specs_in_module(module: ModuleType) -> list[TaskSpec]:
    specs = []
    for value in vars(module).values():
        options = getattr(value, _TASK_ATTRIBUTE, None)
        if isinstance(options, TaskOptions) and callable(value):
            specs.append(TaskSpec.from_function(value, options))
    return specs


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise TaskRegistrationError(
            f"cannot import task module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _parameter_names(signature: inspect.Signature) -> tuple[str, ...] | None:
    """The names positional arguments take, in order; None when *args takes some."""
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD):
            break
        names.append(parameter.name)
    return tuple(names)


def _where(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"
