"""`worker --processes N`: N worker processes under one supervisor that restarts a crashed one.

One Python process runs jobs on one core at a time (the GIL); N processes use N cores. The
supervisor only starts, watches and stops its children: each child is the ordinary `worker`
command with the same flags, its own worker id and, when metrics are on, its own port
(`metrics_port + i`; with the port left at its default, the first free one from it). A
child that dies is started again after a pause that grows while it keeps crashing, and its
jobs are recovered like those of any lost worker.

Signals: SIGTERM or SIGINT is passed on to every child once (children run in their own
process group, so a Ctrl-C on a terminal reaches them through the supervisor only); a
second one is passed on again, which cuts their grace short. The supervisor exits when all
children have, with 0 when each stopped cleanly. Children stop by themselves if the
supervisor disappears (SIGKILL), so none is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

import structlog

from worker.process.sdnotify import SystemdNotifier
from worker.settings import WorkerSettings

log = structlog.get_logger()

# The environment variable a child finds its supervisor's pid in.
SUPERVISOR_PID_ENV = "COROQ_SUPERVISOR_PID"
# Pauses before restarting a crashed child: doubling from the first to the last while it
# keeps crashing within STABLE_AFTER seconds of its start.
RESTART_PAUSE_FIRST = 0.5
RESTART_PAUSE_MOST = 30.0
STABLE_AFTER = 60.0
WATCH_INTERVAL = 0.2


@dataclass
class Child:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    pause: float = RESTART_PAUSE_FIRST
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        settings: WorkerSettings,
        child_args: Sequence[str],
        child_cpu_affinity: Sequence[str],
        *,
        burst: bool,
    ) -> None:
        self._settings = settings
        self._child_args = list(child_args)
        self._child_cpu_affinity = list(child_cpu_affinity)  # one per child (cpu_affinity.py)
        self._burst = burst
        self._children = [Child(index) for index in range(settings.processes)]
        self._signals = 0
        self._stopping = threading.Event()
        self._notifier = SystemdNotifier.from_environment()

    def run(self) -> int:
        self._install_signal_handlers()
        for child in self._children:
            self._spawn(child)
        log.info(
            "supervisor.started",
            processes=len(self._children),
            pids=[child.process.pid for child in self._children if child.process],
        )
        self._notifier.ready(status=f"supervising {len(self._children)} worker processes")
        watchdog = self._notifier.watchdog_interval()
        last_ping = 0.0
        while not self._all_done():
            self._stopping.wait(WATCH_INTERVAL)
            self._reap_and_restart()
            if watchdog is not None and time.monotonic() - last_ping >= watchdog:
                self._notifier.watchdog()  # the supervisor's own loop is alive
                last_ping = time.monotonic()
        codes = [child.exit_codes[-1] for child in self._children if child.exit_codes]
        log.info("supervisor.stopped", exit_codes=codes)
        # A child still starting up when the signal came ends by it, holding nothing.
        clean = (0, -signal.SIGTERM) if self._stopping.is_set() else (0,)
        return 0 if all(code in clean for code in codes) else 1

    # -- children --------------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        env = dict(os.environ)
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        env.pop("NOTIFY_SOCKET", None)  # systemd hears from the supervisor only
        env.pop("WATCHDOG_USEC", None)
        if "COROQ_WORKER_ID" in env:  # two live workers must never share an id
            env["COROQ_WORKER_ID"] = f"{env['COROQ_WORKER_ID']}-{child.index}"
        port = self._settings.metrics_port
        if "metrics_port" in self._settings.model_fields_set or not port:
            env["COROQ_METRICS_PORT"] = str(port + child.index) if port else "0"
        else:  # left at its default: each child takes the first free port from it
            env.pop("COROQ_METRICS_PORT", None)
        cpus = self._child_cpu_affinity[child.index]
        child.process = subprocess.Popen(
            [sys.executable, "-m", "worker", *self._child_args, "--cpu-affinity", cpus],
            env=env,
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        child.restart_at = None

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for child in self._children:
            process = child.process
            if process is not None and process.poll() is not None:
                code = process.returncode
                child.exit_codes.append(code)
                child.process = None
                if self._stopping.is_set() or (self._burst and code == 0):
                    continue
                if now - child.started_at >= STABLE_AFTER:
                    child.pause = RESTART_PAUSE_FIRST
                child.restart_at = now + child.pause
                log.error(
                    "supervisor.child_exited",
                    index=child.index,
                    pid=process.pid,
                    exit_code=code,
                    restart_in_s=round(child.pause, 2),
                )
                child.pause = min(child.pause * 2, RESTART_PAUSE_MOST)
            if (
                child.process is None
                and child.restart_at is not None
                and now >= child.restart_at
                and not self._stopping.is_set()
            ):
                child.restarts += 1
                self._spawn(child)
                log.info(
                    "supervisor.child_restarted",
                    index=child.index,
                    pid=child.process.pid if child.process else None,
                    restarts=child.restarts,
                )

    def _all_done(self) -> bool:
        waiting = any(child.process is not None for child in self._children)
        pending = any(
            child.restart_at is not None and not self._stopping.is_set() for child in self._children
        )
        return not waiting and not pending

    # -- signals ---------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self._signals += 1
            self._stopping.set()
            if self._signals == 1:
                log.info("supervisor.stopping", signal=signal.Signals(signum).name)
                self._notifier.stopping()
            for child in self._children:
                if child.process is not None and child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)


# Options the supervisor sets for each child itself.
PER_CHILD_OPTIONS = ("--processes", "--cpu-affinity")


def child_arguments(argv: Sequence[str]) -> list[str]:
    """The command line of a child: the supervisor's own, with `--processes 1` (the
    supervisor adds each child's `--cpu-affinity`)."""
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in PER_CHILD_OPTIONS:
            skip = True
            continue
        if arg.startswith(tuple(f"{option}=" for option in PER_CHILD_OPTIONS)):
            continue
        args.append(arg)
    return [*args, "--processes", "1"]


def supervised() -> bool:
    """Whether this worker is a child of `worker --processes N`."""
    return SUPERVISOR_PID_ENV in os.environ


def supervisor_gone() -> bool:
    """In a child: whether the supervisor that started it has exited."""
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    return expected is not None and str(os.getppid()) != expected
