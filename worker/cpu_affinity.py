"""Which CPUs a worker process runs on: the `cpu_affinity` setting.

A worker process runs Python on one CPU at a time (the GIL), yet its consumer thread and its
event-loop thread pass the GIL to each other all the time. When the kernel runs the two on
different CPUs, every pass wakes the other CPU, which on a virtual machine costs tens of
microseconds; on one CPU it is an ordinary context switch. Keeping a process on one CPU made
a worker drain no-op jobs about a quarter faster on a 2-CPU VM (docs/performance.md).

Values:
- "off": the kernel places every thread.
- "auto" (default): `--processes N` with N equal to the number of CPUs this process may use
  gives child i the i-th of those CPUs alone; otherwise nothing is set. A single worker is
  left alone: it may be one of several on the host, and a fixed guess could put them all on
  one CPU, where the kernel would have spread them.
- a CPU list such as "0-3,6": a single worker runs on those CPUs; child i of
  `--processes N` runs on the (i mod length)-th CPU of the list alone.
"""

from __future__ import annotations

import os

from producer.errors import CoroqError

OFF = "off"
AUTO = "auto"
MAX_CPU = 4095


class CpuAffinityError(CoroqError):
    """A cpu_affinity this machine cannot honour."""


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """ "0-3,6" -> (0, 1, 2, 3, 6): sorted, without repeats. ValueError names the bad part."""
    cpus: set[int] = set()
    for raw_part in text.split(","):
        part = raw_part.strip()
        low, dash, high = part.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise ValueError(f"{part!r} is not a CPU number or range (use e.g. 0-3,6, off or auto)")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"the range {part!r} runs backwards")
        if last > MAX_CPU:
            raise ValueError(f"CPU numbers go up to {MAX_CPU}, not {last}")
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus))


def format_cpu_list(cpus: tuple[int, ...] | set[int]) -> str:
    """(0, 1, 2, 3, 6) -> "0-3,6"."""
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


def normalise(value: str) -> str:
    """The setting's canonical text: off, auto, or a CPU list as format_cpu_list writes it."""
    text = value.strip().lower()
    if text in (OFF, AUTO):
        return text
    return format_cpu_list(parse_cpu_list(text))


def available_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask: a cpuset, taskset); where the
    system has no affinity masks (macOS), every CPU."""
    if not hasattr(os, "sched_getaffinity"):
        return set(range(os.cpu_count() or 1))
    return os.sched_getaffinity(0)


def _usable(setting: str, available: set[int]) -> tuple[int, ...]:
    cpus = parse_cpu_list(setting)
    missing = [cpu for cpu in cpus if cpu not in available]
    if missing:
        raise CpuAffinityError(
            f"invalid setting cpu_affinity: CPU {format_cpu_list(set(missing))} is not one this "
            f"process may run on ({format_cpu_list(available)})"
        )
    return cpus


def child_settings(setting: str, processes: int, available: set[int]) -> list[str]:
    """The cpu_affinity each of `processes` children of a supervisor runs with."""
    if setting == OFF:
        return [OFF] * processes
    if setting == AUTO:
        if processes != len(available):
            return [OFF] * processes
        cpus = tuple(sorted(available))
    else:
        cpus = _usable(setting, available)
    return [str(cpus[index % len(cpus)]) for index in range(processes)]


def apply(setting: str) -> tuple[int, ...] | None:
    """In a worker process, before it starts any thread (threads inherit the mask): run on
    the CPUs the setting names. Returns them, or None when the setting leaves the kernel to
    place the process ("off", or "auto" for a single worker)."""
    if setting in (OFF, AUTO):
        return None
    cpus = _usable(setting, available_cpus())
    if not hasattr(os, "sched_setaffinity"):
        raise CpuAffinityError("invalid setting cpu_affinity: this system cannot pin processes")
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:  # e.g. a seccomp filter that forbids it
        raise CpuAffinityError(
            f"invalid setting cpu_affinity: cannot run on CPU {format_cpu_list(cpus)}: {exc}"
        ) from None
    return cpus
