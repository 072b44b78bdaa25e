"""Child processes of the comparison, the marks file the jobs write, and what psutil reads.

Every child starts in a session of its own, so that whatever it forks (an RQ work horse) can be
ended with it: by its process-group id, which is the child's own pid, never by a name.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.peers.peer_common import HEADER, SAMPLE, marks_size

STOP_GRACE_S = 20.0
LOG_TAIL_LINES = 15
MB = 1024 * 1024


class MeasureError(RuntimeError):
    """One measurement could not be taken (a process died, a count was never reached)."""


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    log_path: Path
    spawned_at: float
    exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])


def spawn(args: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path) -> Child:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(args),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(process, log_path, time.time())


def wait_exit(child: Child, timeout: float) -> int | None:
    """The exit code, or None when the process still runs after `timeout` seconds."""
    try:
        child.exit_code = child.process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    return child.exit_code


def _kill_group(child: Child) -> None:
    """SIGKILL what is left of the child's own process group (its session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


def stop(child: Child, grace: float = STOP_GRACE_S) -> int | None:
    """SIGTERM (a graceful stop for every system measured), SIGKILL after `grace` seconds;
    then end anything the child left in its group. Returns the exit code."""
    if child.process.poll() is None:
        child.process.send_signal(signal.SIGTERM)
        if wait_exit(child, grace) is None:
            _kill_group(child)
            child.process.wait()
            child.exit_code = None
            return None
    child.exit_code = child.process.returncode
    _kill_group(child)
    return child.exit_code


@contextmanager
def running(
    args: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path
) -> Iterator[Child]:
    """A child that is always stopped on the way out, errors included."""
    child = spawn(args, env, cwd, log_path)
    try:
        yield child
    finally:
        stop(child)


def run_to_end(
    args: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path, timeout: float
) -> tuple[int, float, str]:
    """Run a command to its end: (exit code, wall seconds, its stdout)."""
    begin = time.perf_counter()
    with log_path.open("ab") as log:
        try:
            result = subprocess.run(
                list(args),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise MeasureError(f"{Path(args[0]).name} did not finish in {timeout:g} s") from exc
    return result.returncode, time.perf_counter() - begin, result.stdout.decode(errors="replace")


# -- the marks file ---------------------------------------------------------------------------


class MarksFile:
    """The file the jobs mark their completion in (layout in `bench/peers/peer_common.py`)."""

    def __init__(self, path: Path, samples: int = 0) -> None:
        self.path = path
        path.write_bytes(bytes(marks_size(samples)))

    def _read(self, size: int) -> bytes:
        with self.path.open("rb") as file, mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ) as view:
            return view[:size]

    def header(self) -> tuple[int, float, float]:
        """(count of marks, first job's start, latest mark), epoch seconds."""
        count, first, last = HEADER.unpack(self._read(HEADER.size))
        return int(count), float(first), float(last)

    @property
    def count(self) -> int:
        return self.header()[0]

    def samples(self, start: int, stop: int) -> list[float]:
        data = self._read(HEADER.size + SAMPLE.size * stop)[HEADER.size :]
        return [SAMPLE.unpack_from(data, SAMPLE.size * i)[0] for i in range(start, stop)]


def wait_count(
    count: Callable[[], int],
    target: int,
    children: Sequence[Child],
    *,
    what: str,
    stall_s: float = 45.0,
    poll_s: float = 0.005,
) -> None:
    """Wait until `count()` reaches `target`. Fails when a child exits first, or when the count
    stays the same for `stall_s` seconds (a worker that stopped taking jobs)."""
    last_count, last_change = -1, time.monotonic()
    while True:
        current = count()
        if current >= target:
            return
        now = time.monotonic()
        if current != last_count:
            last_count, last_change = current, now
        for child in children:
            if child.process.poll() is not None:
                raise MeasureError(
                    f"{what}: the worker exited ({child.process.returncode}) at {current}/{target}"
                    f"\n{child.log_tail()}"
                )
        if now - last_change > stall_s:
            raise MeasureError(f"{what}: stuck at {current}/{target} for {stall_s:g} s")
        time.sleep(poll_s)


# -- psutil: memory and CPU of a process tree -------------------------------------------------


def _tree(pid: int, children: bool = True) -> list[psutil.Process]:
    """A process and (when `children`) its descendants. Finding descendants reads every
    process's /proc entry, which costs real CPU on a small machine, so samplers ask for them
    only for a system that forks."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)] if children else [root]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int, children: bool = True) -> int:
    """Resident memory of a process (and its live descendants), bytes."""
    total = 0
    for process in _tree(pid, children):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _runtime_ns(pid: int) -> int | None:
    """CPU time of every thread of a process, in ns, from /proc/PID/task/*/schedstat (the
    scheduler's own clock: ns resolution, where psutil's times count 10 ms ticks)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += int((task / "schedstat").read_text().split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants (plus, from psutil, its reaped children).
    Threads that ended are not counted by schedstat; an idle worker starts none."""
    total = 0.0
    for index, process in enumerate(_tree(pid)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        runtime = _runtime_ns(process.pid)
        total += runtime / 1e9 if runtime is not None else times.user + times.system
        if index == 0:
            total += times.children_user + times.children_system
    return total


@dataclass
class RssSampler:
    """Samples the RSS of a process tree in a background thread: (seconds since start, bytes)."""

    pid: int
    interval_s: float = 0.1
    children: bool = False
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        begin = time.monotonic()
        while not self._stop.is_set():
            rss = tree_rss(self.pid, self.children)
            if rss:
                self.samples.append((time.monotonic() - begin, rss))
            self._stop.wait(self.interval_s)

    def peak_mb(self) -> float:
        return max((rss for _, rss in self.samples), default=0) / MB

    def window_mb(self, start: float, stop: float) -> float:
        """The median RSS (MB) of the samples between `start` and `stop` seconds."""
        inside = sorted(rss for t, rss in self.samples if start <= t < stop)
        return inside[len(inside) // 2] / MB if inside else float("nan")
