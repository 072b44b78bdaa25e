"""Task registration and argument checking (DESIGN §3 "only registered tasks run", §4)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field

from worker import task
from worker.errors import InvalidArguments, TaskRegistrationError, UnknownTask
from worker.registry import ArgumentBinder, TaskOptions, TaskRegistry, TaskSpec


def add(a: int, b: int = 2) -> int:
    return a + b


def anything(value, *rest, **named):  # type: ignore[no-untyped-def]
    return value


def numbers(*values: int, **weights: float) -> None:
    return None


def bounded(count: Annotated[int, Field(ge=1, le=10)], name: str = "x") -> None:
    return None


def keyword_only(*, flag: bool) -> None:
    return None


def bind(function: Any, positional: list[Any], keywords: dict[str, Any]) -> dict[str, Any]:
    return dict(ArgumentBinder(function).bind(positional, keywords).arguments)


@pytest.fixture
def task_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Write a uniquely named module under tmp_path and return a function making more."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"coroq_test_tasks_{uuid.uuid4().hex[:10]}"
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        return name

    return write


def test_the_task_decorator_marks_the_function_with_its_options() -> None:
    @task("email.send", timeout=30, max_attempts=5, concurrency=10)
    async def send(to: str) -> None:
        return None

    assert send.__coroq_task__ == TaskOptions("email.send", 30, 5, 10)  # type: ignore[attr-defined]
    assert asyncio.iscoroutinefunction(send)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("", {}),
        ("has space", {}),
        ("x" * 201, {}),
        ("ok", {"timeout": 0}),
        ("ok", {"timeout": -1}),
        ("ok", {"max_attempts": 0}),
        ("ok", {"concurrency": 0}),
    ],
)
def test_the_task_decorator_refuses_bad_names_and_options(
    name: str, options: dict[str, Any]
) -> None:
    with pytest.raises(TaskRegistrationError):
        task(name, **options)


def test_the_builtin_tasks_are_registered() -> None:
    registry = TaskRegistry.from_modules([])
    assert {"echo", "sleep", "http.request"} <= set(registry.names())
    spec = registry.get("http.request")
    assert spec.is_async
    assert spec.timeout == 60


def test_builtins_can_be_left_out() -> None:
    assert len(TaskRegistry.from_modules([], builtins=False)) == 0


def test_an_unknown_task_name_is_an_unknown_task_error() -> None:
    with pytest.raises(UnknownTask) as caught:
        TaskRegistry.from_modules([]).get("nope")
    assert caught.value.reason == "unknown_task"
    assert "nope" in str(caught.value)


def test_tasks_are_loaded_from_the_named_modules(task_module: Any) -> None:
    module = task_module(
        "from worker import task\n"
        "@task('mine.add', max_attempts=2)\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
    )
    registry = TaskRegistry.from_modules([module])
    spec = registry.get("mine.add")
    assert not spec.is_async
    assert spec.max_attempts == 2
    assert "echo" in registry.names()


def test_a_module_that_does_not_exist_is_named_in_the_error() -> None:
    with pytest.raises(TaskRegistrationError, match="no_such_module_xyz"):
        TaskRegistry.from_modules(["no_such_module_xyz"])


def test_a_module_that_fails_to_import_is_named_in_the_error(task_module: Any) -> None:
    module = task_module("raise RuntimeError('broken at import')\n")
    with pytest.raises(TaskRegistrationError) as caught:
        TaskRegistry.from_modules([module])
    assert module in str(caught.value)
    assert "broken at import" in str(caught.value)


def test_two_functions_with_one_task_name_in_a_module_are_an_error(task_module: Any) -> None:
    module = task_module(
        "from worker import task\n"
        "@task('dup')\n"
        "async def first() -> None: ...\n"
        "@task('dup')\n"
        "async def second() -> None: ...\n"
    )
    with pytest.raises(TaskRegistrationError, match="declared twice"):
        TaskRegistry.from_modules([module])


def test_two_modules_declaring_one_task_name_are_an_error(task_module: Any) -> None:
    source = "from worker import task\n@task('shared.name')\nasync def f() -> None: ...\n"
    first, second = task_module(source), task_module(source)
    with pytest.raises(TaskRegistrationError) as caught:
        TaskRegistry.from_modules([first, second])
    assert first in str(caught.value)
    assert second in str(caught.value)


def test_a_module_redeclaring_a_builtin_name_is_an_error(task_module: Any) -> None:
    module = task_module("from worker import task\n@task('echo')\nasync def e() -> None: ...\n")
    with pytest.raises(TaskRegistrationError, match="echo"):
        TaskRegistry.from_modules([module])


def test_a_task_imported_into_another_module_is_not_a_second_declaration(
    task_module: Any,
) -> None:
    first = task_module("from worker import task\n@task('once')\nasync def f() -> None: ...\n")
    second = task_module(f"from {first} import f\n")
    assert "once" in TaskRegistry.from_modules([first, second]).names()


def test_a_task_whose_type_hints_cannot_be_resolved_is_a_registration_error() -> None:
    def broken(x: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(TaskRegistrationError, match="type hints"):
        TaskSpec.from_function(broken, TaskOptions("broken"))


def test_arguments_are_coerced_to_the_type_hints() -> None:
    assert bind(add, ["3", "4"], {}) == {"a": 3, "b": 4}
    assert bind(add, [], {"a": "5"}) == {"a": 5}


@pytest.mark.parametrize(
    ("positional", "keywords"),
    [([], {}), ([1, 2, 3], {}), ([1], {"c": 2}), ([1], {"a": 1})],
)
def test_the_wrong_arity_is_invalid_arguments(
    positional: list[Any], keywords: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArguments) as caught:
        bind(add, positional, keywords)
    assert caught.value.reason == "invalid_arguments"


def test_keyword_only_parameters_refuse_positional_arguments() -> None:
    with pytest.raises(InvalidArguments):
        bind(keyword_only, [True], {})
    assert bind(keyword_only, [], {"flag": "true"}) == {"flag": True}


def test_a_wrong_type_is_invalid_arguments_naming_the_argument() -> None:
    with pytest.raises(InvalidArguments, match="argument 'b'"):
        bind(add, [1, "two"], {})


def test_var_positional_and_var_keyword_items_are_checked_one_by_one() -> None:
    assert bind(numbers, ["1", 2], {"w": "0.5"}) == {"values": (1, 2), "weights": {"w": 0.5}}
    with pytest.raises(InvalidArguments, match="argument 'values'"):
        bind(numbers, [1, "x"], {})
    with pytest.raises(InvalidArguments, match="argument 'weights'"):
        bind(numbers, [], {"w": "heavy"})


def test_field_constraints_are_enforced() -> None:
    assert bind(bounded, [10], {}) == {"count": 10}
    with pytest.raises(InvalidArguments, match="argument 'count'"):
        bind(bounded, [11], {})


def test_the_builtin_sleep_rejects_negative_seconds() -> None:
    spec = TaskRegistry.from_modules([]).get("sleep")
    assert dict(spec.binder.bind([0.5], {}).arguments) == {"seconds": 0.5}
    with pytest.raises(InvalidArguments, match="argument 'seconds'"):
        spec.binder.bind([-1], {})


def test_the_builtin_http_request_checks_its_url_and_method() -> None:
    binder = TaskRegistry.from_modules([]).get("http.request").binder
    binder.bind([], {"url": "https://example.com", "method": "POST"})
    with pytest.raises(InvalidArguments, match="argument 'url'"):
        binder.bind(["file:///etc/passwd"], {})
    with pytest.raises(InvalidArguments, match="argument 'method'"):
        binder.bind(["https://example.com", "TRACE"], {})


def test_unannotated_parameters_accept_anything() -> None:
    value = {"nested": [1, None, "x"]}
    assert bind(anything, [value, "a", 3], {"k": object}) == {
        "value": value,
        "rest": ("a", 3),
        "named": {"k": object},
    }
