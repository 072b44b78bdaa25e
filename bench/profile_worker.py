"""Profile one coroq worker under W1 with py-spy: where its CPU time goes per no-op job.

    python bench/profile_worker.py [--jobs 100000] [--rate 250] [--top 20]
                                   [--out bench/results/profile]

Starts a private redis-server, pre-fills `--jobs` `bench.count` jobs, then runs

    py-spy record --format raw --threads --nonblocking --rate R -- \\
        python -m worker --burst --queues Q --concurrency 100 --tasks bench.tasks

so py-spy samples every thread of the real worker process until the queue is drained. Idle
threads (blocked in a system call, e.g. a socket read) are left out, as py-spy does by default:
the figures are CPU samples. It writes the raw collapsed stacks (`<out>.txt`, for flamegraph
tools or speedscope) and a summary (`<out>.md`): samples per thread, then the functions with the
most samples of their own ("self") and the most samples anywhere on the stack ("total").
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/profile_worker.py`
    sys.path.insert(0, str(REPO_ROOT))

from bench.comparison.processes import MarksFile, run_to_end  # noqa: E402
from bench.comparison.systems import (  # noqa: E402
    BY_NAME,
    COROQ,
    Launcher,
    enqueue_coroq,
    git_revision,
    pick_redis_server,
)
from worker.local_redis import RedisServerProcess  # noqa: E402

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
THREAD = re.compile(r"^(thread|process) ")
# Frames at the bottom of every thread's stack: left out of the "total" table.
PLUMBING = {
    "Thread._bootstrap (threading.py)",
    "Thread._bootstrap_inner (threading.py)",
    "Thread.run (threading.py)",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="py-spy profile of a coroq worker under W1")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "profile")
    return parser.parse_args(argv)


def frame_name(frame: str) -> str:
    match = FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['function']} ({match['file']})"  # py-spy already shortens the path


@dataclass
class Profile:
    samples: int
    threads: Counter[str]
    own: Counter[str]
    total: Counter[str]


def read_profile(raw: Path) -> Profile:
    """Aggregate py-spy's collapsed stacks (`frame;frame;... count`) by function."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "?"
        while frames and THREAD.match(frames[0]):
            thread = frames.pop(0)
        samples += count
        threads[thread] += count
        names = [frame_name(f) for f in frames]
        if names:
            own[names[-1]] += count
        for name in set(names) - PLUMBING:
            total[name] += count
    return Profile(samples, threads, own, total)


def render(profile: Profile, top: int, header: list[str]) -> str:
    def table(title: str, counts: Counter[str]) -> list[str]:
        lines = ["", f"{title}:", "", "| % of samples | function (file) |", "|---:|---|"]
        for name, count in counts.most_common(top):
            lines.append(f"| {100 * count / profile.samples:5.1f} | `{name}` |")
        return lines

    lines = [*header, "", "Samples per thread:", "", "| % | thread |", "|---:|---|"]
    for thread, count in profile.threads.most_common():
        lines.append(f"| {100 * count / profile.samples:5.1f} | {thread} |")
    lines += table(f"Top {top} functions by own samples (self)", profile.own)
    lines += table(f"Top {top} functions by samples anywhere on the stack (total)", profile.total)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("profile: py-spy is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = args.out.with_suffix(".txt")
    workdir = Path(tempfile.mkdtemp(prefix="coroq-profile-"))
    server = RedisServerProcess(binary=pick_redis_server(None))
    try:
        server.start()
        launcher = Launcher(server.url, workdir)
        queue = "bench-profile"
        marks = MarksFile(workdir / "profile.marks")
        enqueue_coroq(server.url, queue, "noop", args.jobs, 0.0)
        worker = launcher.worker_args(BY_NAME[COROQ], queue, args.concurrency, burst=True)
        command = [py_spy, "record", "--format", "raw", "--threads", "--nonblocking"]
        command += ["--rate", str(args.rate), "--output", str(raw), "--", *worker]
        env = launcher.env(BY_NAME[COROQ], queue, args.concurrency, marks.path)
        code, _, _ = run_to_end(command, env, workdir, workdir / "py-spy.log", 600)
        log = (workdir / "py-spy.log").read_text(errors="replace")
        count, first, last = marks.header()
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    if code != 0 or not raw.exists() or count != args.jobs:
        print(f"profile: py-spy exited with {code}, {count} jobs ran\n{log}", file=sys.stderr)
        return 1
    profile = read_profile(raw)
    header = [
        f"py-spy {args.rate} Hz (--nonblocking, CPU samples only) on one coroq worker draining "
        f"{args.jobs:,} no-op jobs (W1), concurrency {args.concurrency}: {count:,} jobs in "
        f"{last - first:.2f} s under the profiler ({count / (last - first):,.0f} jobs/s), "
        f"{profile.samples:,} samples; code {git_revision()}, {time.strftime('%Y-%m-%d')}.",
    ]
    text = render(profile, args.top, header)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    print(f"raw stacks: {raw}; summary: {args.out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
