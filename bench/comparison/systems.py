"""The systems compared: coroq and its peers, how each worker is started, how jobs are enqueued,
the peers' virtual environments (`bench/.venvs/<peer>/`, made from `bench/peers/<peer>.txt`
when missing or when the pins changed), and a baseline: coroq at an earlier git revision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.comparison.processes import MeasureError, run_to_end
from producer import Producer
from producer.envelope import build_envelope

REPO_ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = REPO_ROOT / "bench" / "peers"
VENVS_DIR = REPO_ROOT / "bench" / ".venvs"
MARKER = ".bench-requirements.sha256"

# The job kinds of bench/peers/peer_common.py, and coroq's names for them (bench/tasks.py).
COROQ_TASKS = {"noop": "bench.count", "sleep50": "bench.sleep50", "latency": "bench.latency"}
COROQ = "coroq"


@dataclass(frozen=True, slots=True)
class System:
    name: str
    label: str
    venv: str | None = None  # bench/.venvs/<venv>, pinned by bench/peers/<venv>.txt
    adapter: str | None = None  # bench/peers/<adapter>
    env: Mapping[str, str] = field(default_factory=dict)
    one_at_a_time: bool = False  # runs one job at a time whatever the cap (RQ)
    forks: bool = False  # runs each job in a child process (RQ's default worker)
    w1_jobs: int | None = None  # fewer W1 jobs for a system this slow, so a run stays short
    w2_jobs: int | None = None
    settings: str = ""  # how its worker runs, for the report
    tree: Path | None = None  # coroq from this git worktree (--baseline), not from REPO_ROOT

    @property
    def is_coroq(self) -> bool:
        """A coroq worker: the current code, or a baseline's (same commands, same venv)."""
        return self.venv is None


SYSTEMS: tuple[System, ...] = (
    System(
        COROQ,
        "coroq",
        settings="`python -m worker --queues Q --concurrency N --tasks bench.tasks` "
        "(uvloop when installed, as `coroq[fast]` installs it); `--burst` in W1, W2 and scale",
    ),
    System(
        "arq",
        "arq",
        venv="arq",
        adapter="arq_peer.py",
        settings="`arq arq_peer.WorkerSettings`, `max_jobs = N`, poll_delay 0.5 s (default)",
    ),
    System(
        "saq",
        "SAQ",
        venv="saq",
        adapter="saq_peer.py",
        settings="`saq saq_peer.settings`, `concurrency = N`",
    ),
    System(
        "streaq",
        "streaq",
        venv="streaq",
        adapter="streaq_peer.py",
        settings="`streaq run streaq_peer:worker`, `concurrency = N` (prefetch = N, default)",
    ),
    System(
        "rq",
        "RQ (fork)",
        venv="rq",
        adapter="rq_peer.py",
        one_at_a_time=True,
        forks=True,
        w1_jobs=500,
        w2_jobs=100,
        settings="`rq worker` (default `Worker`: forks a work horse per job, one at a time)",
    ),
    System(
        "rq-simple",
        "RQ (SimpleWorker)",
        venv="rq",
        adapter="rq_peer.py",
        env={"RQ_WORKER_CLASS": "rq.worker.SimpleWorker"},
        one_at_a_time=True,
        w1_jobs=4_000,
        w2_jobs=100,
        settings="`rq worker -w rq.worker.SimpleWorker` (jobs run in the worker process, "
        "one at a time)",
    ),
    System(
        "celery",
        "Celery",
        venv="celery",
        adapter="celery_peer.py",
        settings="`celery worker --pool threads --concurrency N`, prefetch multiplier 4 "
        "(default), early ack (default), no result backend",
    ),
)
BY_NAME = {system.name: system for system in SYSTEMS}


def pick_redis_server(explicit: str | None) -> str:
    """The one given, else a `redis-server` on PATH that is not inside this virtualenv (a
    system build, as production runs), else whatever coroq's own helper finds."""
    if explicit:
        return explicit
    prefix = Path(sys.prefix).resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "redis-server"
        if candidate.is_file() and prefix not in candidate.resolve().parents:
            return str(candidate)
    # Imported here: the baseline's enqueue child imports this module with an earlier
    # worker/ on its path, which may keep the helper elsewhere.
    from worker.local_redis import find_redis_server

    return find_redis_server()


def git_revision() -> str:
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() or "unknown"


# -- virtual environments ---------------------------------------------------------------------


def requirements(venv: str) -> Path:
    return PEERS_DIR / f"{venv}.txt"


def venv_python(venv: str) -> Path:
    return VENVS_DIR / venv / "bin" / "python"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def venv_ready(venv: str) -> bool:
    marker = VENVS_DIR / venv / MARKER
    return (
        venv_python(venv).exists()
        and marker.exists()
        and marker.read_text().strip() == _digest(requirements(venv))
    )


def ensure_venv(venv: str, log: Path) -> None:
    """Create `bench/.venvs/<venv>` with exactly the pins of `bench/peers/<venv>.txt`."""
    if venv_ready(venv):
        return
    target = VENVS_DIR / venv
    shutil.rmtree(target, ignore_errors=True)
    VENVS_DIR.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", str(target)],
        [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "-r", str(requirements(venv))],
        [str(venv_python(venv)), "-m", "pip", "check"],
    ]  # fmt: skip
    with log.open("ab") as out:
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=out, check=False).returncode != 0:
                raise MeasureError(f"making bench/.venvs/{venv} failed at: {' '.join(step)}")
    (target / MARKER).write_text(_digest(requirements(venv)) + "\n")


def pinned_versions(venv: str) -> dict[str, str]:
    """The `name==version` lines of a peer's requirements file."""
    pins = {}
    for line in requirements(venv).read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version
    return pins


# -- starting workers and enqueueing ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enqueued:
    count: int
    seconds: float  # the enqueue API calls alone
    wall_s: float  # including the process start (peers) or envelope building (coroq)


def _clean_env() -> dict[str, str]:
    """This environment without anything of the caller's coroq settings or virtualenv."""
    drop = ("COROQ_", "BENCH_", "RQ_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


@dataclass(frozen=True, slots=True)
class Launcher:
    """Builds the command and environment of each system's worker and enqueue programs."""

    url: str
    workdir: Path

    def coroq_env(self, tree: Path | None = None) -> dict[str, str]:
        """For coroq's programs (worker, `producer push`) and the BRPOP loop; with `tree`, for
        a baseline's (see `coroq_pythonpath`)."""
        env = _clean_env()
        env.update(
            PYTHONPATH=coroq_pythonpath(tree),
            COROQ_REDIS_URL=self.url,
            COROQ_LOG_LEVEL="warning",
            COROQ_LOG_FORMAT="json",
            COROQ_METRICS_PORT="0",
        )
        return env

    def env(self, system: System, queue: str, concurrency: int, marks: Path) -> dict[str, str]:
        """A worker's or an adapter's environment for one measurement."""
        if system.is_coroq:
            env = self.coroq_env(system.tree)
        else:
            env = _clean_env()
            env["PYTHONPATH"] = str(PEERS_DIR)
            env.update(system.env)
        env.update(
            BENCH_REDIS_URL=self.url,
            BENCH_QUEUE=queue,
            BENCH_CONCURRENCY=str(concurrency),
            BENCH_MARKS=str(marks),
            PYTHONUNBUFFERED="1",
        )
        return env

    def worker_args(
        self, system: System, queue: str, concurrency: int, *, burst: bool = False
    ) -> list[str]:
        if system.is_coroq:
            args = [sys.executable, "-m", "worker", "--queues", queue]
            args += ["--concurrency", str(concurrency), "--tasks", "bench.tasks"]
            return [*args, "--burst"] if burst else args
        assert system.venv is not None
        assert system.adapter is not None
        return [str(venv_python(system.venv)), str(PEERS_DIR / system.adapter), "worker"]

    def enqueue(
        self,
        system: System,
        queue: str,
        job: str,
        count: int,
        *,
        interval: float = 0.0,
        marks: Path,
        timeout: float = 600.0,
    ) -> Enqueued:
        """Enqueue `count` jobs of kind `job` with the system's own API."""
        if system.is_coroq and system.tree is None:
            return enqueue_coroq(self.url, queue, job, count, interval)
        if system.tree is not None:  # a baseline's own producer: in a process on its tree
            args = [sys.executable, "-m", "bench.comparison.coroq_enqueue", "enqueue"]
        else:
            assert system.venv is not None
            assert system.adapter is not None
            args = [str(venv_python(system.venv)), str(PEERS_DIR / system.adapter), "enqueue"]
        args += ["--job", job, "--count", str(count), "--interval", str(interval)]
        env = self.env(system, queue, 1, marks)
        log = self.workdir / f"enqueue-{system.name}.log"
        code, wall, out = run_to_end(args, env, self.workdir, log, timeout)
        if code != 0:
            raise MeasureError(f"{system.name} enqueue exited with {code}; see {log}")
        report = json.loads(out.strip().splitlines()[-1])
        return Enqueued(int(report["count"]), float(report["seconds"]), wall)


def enqueue_coroq(url: str, queue: str, job: str, count: int, interval: float) -> Enqueued:
    task = COROQ_TASKS[job]
    begin = time.perf_counter()
    with Producer(url, queue=queue) as producer:
        if job == "latency":
            start = time.monotonic()
            for index in range(count):
                delay = start + index * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                producer.push(task, time.time())
            seconds = time.perf_counter() - begin
        else:
            envelopes = [build_envelope(task, (), {}) for _ in range(count)]
            pushed = time.perf_counter()
            producer.push_many(envelopes)
            seconds = time.perf_counter() - pushed
    return Enqueued(count, seconds, time.perf_counter() - begin)


def prefill_coroq_raw(client: redis.Redis, queue: str, count: int, chunk: int = 10_000) -> float:
    """`count` prebuilt `bench.count` payloads in pipelined LPUSHes (the 1M backlog); seconds.
    The envelope has no id: the worker gives each job one, as the wire contract allows."""
    key = f"coroq:{{{queue}}}:ready"
    payload = json.dumps({"task": COROQ_TASKS["noop"]}).encode()
    begin = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, chunk):
        pipe.lpush(key, *([payload] * min(chunk, count - start)))
        if len(pipe) >= 10:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - begin


def describe(systems: Sequence[System]) -> dict[str, dict[str, str]]:
    """For the JSON: each system's settings and pinned versions."""
    return {
        s.name: {
            "label": s.label,
            "settings": s.settings,
            **({"pins": json.dumps(pinned_versions(s.venv))} if s.venv else {}),
        }
        for s in systems
    }


# -- a baseline: coroq at an earlier revision -------------------------------------------------

HARNESS = "harness"  # <baseline folder>/harness/bench: a link to this repository's bench/


def coroq_pythonpath(tree: Path | None) -> str:
    """PYTHONPATH of a coroq child: this repository, or for a baseline (`tree`, a worktree of
    an earlier revision) `<baseline folder>/harness` first, then the worktree.

    So a baseline's child imports the code under test, `worker` and `producer`, from the
    worktree, and the harness, `bench` (the tasks, the marks file, the enqueue command), from
    this repository, like the current coroq: the driver reads the marks file with this
    harness's layout, and both sides must run the very same jobs, so that a difference
    measures coroq and not a change of the benchmark. `harness` holds nothing but `bench`. The
    children run in the scratch folder (their cwd, first on sys.path), which holds no package;
    the editable install's finder for this repository comes after PYTHONPATH. `baseline`
    checks all of this in a child before the run."""
    if tree is None:
        return str(REPO_ROOT)
    return os.pathsep.join([str(tree.parent / HARNESS), str(tree)])


def _git(*args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def _check_imports(tree: Path, cwd: Path) -> str:
    """Where a baseline's child imports `worker`, `producer` and `bench.tasks` from; an error
    unless the first two are the worktree's and the last this repository's."""
    code = "import bench.tasks, producer, worker\n"
    code += "print(worker.__file__, producer.__file__, bench.tasks.__file__)"
    env = _clean_env() | {"PYTHONPATH": coroq_pythonpath(tree)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    files = [Path(f).resolve() for f in result.stdout.split()]
    expected = [tree.resolve(), tree.resolve(), REPO_ROOT / "bench"]
    if len(files) != 3 or not all(
        f.is_relative_to(e) for f, e in zip(files, expected, strict=True)
    ):
        raise RuntimeError(f"the baseline imports the wrong code: {result.stdout}{result.stderr}")
    return ", ".join(str(f) for f in files)


@contextmanager
def baseline(revision: str, workdir: Path) -> Iterator[System]:
    """The system `coroq@<short commit>`: the current coroq system (same Python environment,
    commands and harness) running the worker and the producer of `revision`, from a clean `git
    worktree` under `workdir`, removed on the way out."""
    try:
        commit = _git("rev-parse", "--verify", f"{revision}^{{commit}}")
    except RuntimeError as exc:
        raise RuntimeError(f"--baseline {revision!r} is not a commit here ({exc})") from None
    short = _git("rev-parse", "--short", commit)
    folder = workdir / "baseline"
    tree = folder / f"coroq-{short}"
    (folder / HARNESS).mkdir(parents=True)
    (folder / HARNESS / "bench").symlink_to(REPO_ROOT / "bench", target_is_directory=True)
    _git("worktree", "add", "--detach", "--quiet", str(tree), commit)
    try:
        # This first child also writes the worktree's bytecode (unless PYTHONDONTWRITEBYTECODE
        # is set, then no child writes any, here or in this repository), as earlier runs did here.
        print(f"baseline coroq@{short} imports {_check_imports(tree, workdir)}", file=sys.stderr)
        yield dataclasses.replace(
            BY_NAME[COROQ],
            name=f"coroq@{short}",
            label=f"coroq@{short} (baseline)",
            tree=tree,
            settings=f"as coroq, with the worker and producer of {revision} ({commit}) from a "
            "git worktree; the jobs, the harness and the Python environment of the current run",
        )
    finally:
        removed = subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)],
            cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if removed.returncode != 0:
            print(f"compare: could not remove worktree {tree}: {removed.stderr}", file=sys.stderr)
