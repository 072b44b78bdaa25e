"""The cpu_affinity setting: reading CPU lists, and which CPUs each process gets."""

from __future__ import annotations

import os

import pytest

from worker.cpu_affinity import (
    CpuAffinityError,
    apply,
    child_settings,
    format_cpu_list,
    normalise,
    parse_cpu_list,
)
from worker.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", (0,)), ("0-3,6", (0, 1, 2, 3, 6)), (" 2 , 1-2 ", (1, 2)), ("7-7", (7,))],
)
def test_cpu_lists_are_read_sorted_without_repeats(text: str, cpus: tuple[int, ...]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is not a CPU number or range"),
        ("one", "'one' is not a CPU number or range"),
        ("1-", "'1-' is not a CPU number or range"),
        ("-1", "'-1' is not a CPU number or range"),
        ("3-1", "runs backwards"),
        ("0-100000", "CPU numbers go up to 4095"),
    ],
)
def test_a_bad_cpu_list_says_which_part_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_cpu_list(text)


def test_cpu_lists_are_written_as_ranges() -> None:
    assert format_cpu_list({0, 1, 2, 3, 6, 8, 9}) == "0-3,6,8-9"
    assert format_cpu_list((5,)) == "5"
    assert normalise(" AUTO ") == "auto"
    assert normalise("Off") == "off"
    assert normalise("3,1-2") == "1-3"


def test_auto_gives_each_child_its_own_cpu_only_with_one_process_per_cpu() -> None:
    assert child_settings("auto", 2, {0, 1}) == ["0", "1"]
    assert child_settings("auto", 4, {2, 3, 8, 9}) == ["2", "3", "8", "9"]
    # Fewer or more processes than CPUs: the kernel places them.
    assert child_settings("auto", 2, {0, 1, 2, 3}) == ["off", "off"]
    assert child_settings("auto", 3, {0, 1}) == ["off", "off", "off"]


def test_a_cpu_list_is_shared_out_one_cpu_per_child_in_turn() -> None:
    assert child_settings("1-2", 3, {0, 1, 2, 3}) == ["1", "2", "1"]
    assert child_settings("off", 2, {0, 1}) == ["off", "off"]


def test_a_cpu_this_process_may_not_use_is_refused_by_name() -> None:
    refused = r"CPU 5-6 is not one this process may run on \(0-1\)"
    with pytest.raises(CpuAffinityError, match=refused):
        child_settings("0,5-6", 2, {0, 1})


def test_the_setting_is_validated_with_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COROQ_CPU_AFFINITY", "0-1,x")
    with pytest.raises(SettingsError, match=r"invalid setting cpu_affinity .*'x' is not a CPU"):
        load_settings()
    monkeypatch.setenv("COROQ_CPU_AFFINITY", "1,0")
    assert load_settings().cpu_affinity == "0-1"
    monkeypatch.delenv("COROQ_CPU_AFFINITY")
    assert load_settings().cpu_affinity == "auto"


def test_a_refused_pinning_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int, cpus: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    cpu = min(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    with pytest.raises(CpuAffinityError, match=rf"cannot run on CPU {cpu}: .*not permitted"):
        apply(str(cpu))


def test_off_and_auto_leave_a_single_worker_where_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append(cpus))
    assert apply("off") is None
    assert apply("auto") is None
    assert calls == []
    cpu = min(os.sched_getaffinity(0))
    assert apply(str(cpu)) == (cpu,)
    assert calls == [(cpu,)]
