"""coroq against its peers (arq, SAQ, streaq, RQ, Celery), one worker process each, same run.

    python bench/compare.py [--rounds 3] [--quick] [--systems coroq,arq,...]
                            [--workloads w1,w2,w3,w4,w5,push,scale]
                            [--json PATH] [--markdown PATH] [--chart PATH] [--no-install]
                            [--baseline REV]

Starts one private redis-server on a free port (never the one on 6379), makes each peer's
virtual environment under bench/.venvs/ from its pins in bench/peers/ when it is missing, then
runs `--rounds` rounds. A round runs each selected workload on every selected system in turn
(A B C ... A B C), so slow and fast periods of a shared machine fall on all of them. It prints a
table of medians with [min-max] over rounds and per-round ratios to coroq, checks coroq's
goals, and writes JSON, a Markdown table and a PNG chart (bench/results/ by default).

`--baseline REV` adds the system `coroq@<short REV>`: coroq's worker and producer of the git
revision REV, from a temporary `git worktree` (removed at the end), in every round beside the
current code, so its "÷ coroq" ratios read "REV ÷ now" (a refactor's before and after, in one run).

`--quick` is the smoke form (a few hundred jobs, one round, about a minute for coroq alone).
See docs/performance.md for what each workload measures and how to read the figures.
Exit status: 0 when every measurement was taken cleanly, 1 when problems were found (listed,
and in the JSON), 2 when the run could not start.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/compare.py`
    sys.path.insert(0, str(REPO_ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402

from bench.comparison import report, workloads  # noqa: E402
from bench.comparison.processes import MeasureError  # noqa: E402
from bench.comparison.report import Round  # noqa: E402
from bench.comparison.systems import (  # noqa: E402
    BY_NAME,
    COROQ,
    SYSTEMS,
    Launcher,
    System,
    baseline,
    describe,
    ensure_venv,
    git_revision,
    pick_redis_server,
    venv_ready,
)
from bench.comparison.workloads import FULL, QUICK, Bench, Outcome  # noqa: E402
from worker.local_redis import RedisServerProcess  # noqa: E402

WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "push", "scale")
PUSH_PEERS = ("arq", "saq")  # the issue compares `producer push` with these two enqueue APIs
RESULTS = REPO_ROOT / "bench" / "results"


def csv_choice(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        picked = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in picked if item not in choices]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}; got {text!r}")
        return [c for c in choices if c in picked]

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="coroq against its peers, one worker each")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="smoke sizes, one round")
    names = [s.name for s in SYSTEMS]
    parser.add_argument("--systems", type=csv_choice(names), default=names)
    parser.add_argument("--workloads", type=csv_choice(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--json", type=Path, default=RESULTS / "compare.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "compare.md")
    parser.add_argument("--chart", type=Path, default=RESULTS / "compare.png")
    parser.add_argument("--redis-server", help="redis-server binary (default: see docs)")
    parser.add_argument(
        "--no-install", action="store_true", help="skip peers whose venv is missing"
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run coroq's worker and producer of git revision REV, as coroq@<REV>",
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.baseline and COROQ not in args.systems:
        parser.error("--baseline is compared with coroq: keep coroq in --systems")
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- a round ----------------------------------------------------------------------------------


def brief(outcome: Outcome) -> str:
    parts = [
        f"{k}={v:,.3g}" if abs(v) < 1000 else f"{k}={v:,.0f}" for k, v in outcome.metrics.items()
    ]
    return " ".join(parts) + (
        "  PROBLEM: " + "; ".join(outcome.problems) if outcome.problems else ""
    )


Take = Callable[[], "Outcome | dict[str, Outcome]"]  # one row, or several (redis-benchmark)
PER_SYSTEM = ("w1", "w2", "w3", "w4")


def plan(workload: str, bench: Bench, systems: Sequence[System]) -> list[tuple[str, Take]]:
    """The measurements of one workload in one round, in order: (row, what takes it)."""
    names = [s.name for s in systems]
    coroq = BY_NAME[COROQ] if COROQ in names else None
    steps: list[tuple[str, Take]] = []
    if workload in PER_SYSTEM:
        take = getattr(workloads, workload)
        steps += [(s.name, functools.partial(take, bench, s)) for s in systems]
    if workload == "w1":
        steps.append(("brpop-loop", functools.partial(workloads.brpop_floor, bench)))
        steps.append(("redis-benchmark", functools.partial(workloads.redis_benchmark, bench)))
    if workload == "w2":
        steps.append(("handoff-floor", functools.partial(workloads.handoff_floor_w2, bench)))
    if workload == "w5" and coroq:
        steps.append((COROQ, functools.partial(workloads.w5_backlog, bench, coroq)))
    if workload == "push":
        if coroq:
            steps.append((COROQ, functools.partial(workloads.push_cli, bench)))
            steps.append(("coroq-api", functools.partial(workloads.push_api, bench, coroq)))
        peers = [s for s in systems if s.name in PUSH_PEERS]
        steps += [(s.name, functools.partial(workloads.push_api, bench, s)) for s in peers]
    if workload == "scale" and coroq:
        steps.append((COROQ, functools.partial(workloads.scale, bench, coroq, 1)))
        steps.append(("coroq-2p", functools.partial(workloads.scale, bench, coroq, 2)))
    return steps


def run_round(bench: Bench, systems: Sequence[System], chosen: Sequence[str], number: int) -> Round:
    progress(f"round {number}")
    result: Round = {}
    for workload in chosen:
        for row, take in plan(workload, bench, systems):
            started = time.monotonic()
            try:
                taken = take()
            except MeasureError as exc:
                taken = Outcome(problems=[str(exc)])
            except Exception as exc:  # one broken measurement must not end a 20-minute run
                taken = Outcome(problems=[f"{type(exc).__name__}: {exc}"])
            finally:
                bench.reset()
            rows = taken if isinstance(taken, dict) else {row: taken}
            result.setdefault(workload, {}).update(rows)
            for name, outcome in rows.items():
                took = time.monotonic() - started
                progress(f"  {workload:<5} {name:<22} {took:5.1f} s  {brief(outcome)}")
    return result


# -- environment ------------------------------------------------------------------------------


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_environment(server: RedisServerProcess, client: redis.Redis) -> dict[str, Any]:
    info = client.info("server")
    return {
        "git": git_revision(),
        "redis_server": server.binary,
        "redis_version": info["redis_version"],
        "redis_benchmark": shutil.which("redis-benchmark") or "not found",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "coroq_deps": {n: package_version(n) for n in ("redis", "hiredis", "uvloop", "orjson")},
        "load_avg_start": os.getloadavg(),
    }


def heading(
    args: argparse.Namespace, environment: dict[str, Any], sizes: workloads.Sizes
) -> list[str]:
    deps = environment["coroq_deps"]
    return [
        f"coroq vs peers: {args.rounds} round(s){' (quick)' if args.quick else ''}, "
        f"code {environment['git']}; W1 {sizes.w1_jobs:,} jobs (RQ fewer), concurrency "
        f"{sizes.concurrency}; W2 {sizes.w2_jobs:,} x 50 ms, cap {sizes.w2_cap}",
        f"redis {environment['redis_version']} (private), Python {environment['python']}, "
        f"{environment['cpus']} CPUs ({environment['cpu']}), redis-py {deps['redis']}, "
        f"hiredis {deps['hiredis']}, uvloop {deps['uvloop']}; load avg "
        f"{environment['load_avg_start'][0]:.2f} -> {environment['load_avg_end'][0]:.2f}",
        "Figures: median [min-max] over rounds; '÷ coroq' is the per-round ratio to coroq."
        + (
            f" Baseline: {environment['baseline']} (--baseline {args.baseline}); its ratio "
            "is baseline ÷ current."
            if args.baseline
            else ""
        ),
    ]


# -- main -------------------------------------------------------------------------------------


def prepare_peers(systems: list[System], install: bool, workdir: Path) -> list[System]:
    kept = []
    for system in systems:
        if system.venv is not None and not venv_ready(system.venv):
            if not install:
                progress(f"skipping {system.name}: bench/.venvs/{system.venv} is missing")
                continue
            progress(f"making bench/.venvs/{system.venv} from bench/peers/{system.venv}.txt")
            ensure_venv(system.venv, workdir / f"venv-{system.venv}.log")
        kept.append(system)
    return kept


def collect_problems(rounds: Sequence[Round]) -> list[str]:
    return [
        f"round {number}, {workload}, {row}: {problem}"
        for number, result in enumerate(rounds, 1)
        for workload, rows in result.items()
        for row, outcome in rows.items()
        for problem in outcome.problems
    ]


def document(
    args: argparse.Namespace,
    sizes: workloads.Sizes,
    environment: dict[str, Any],
    systems: Sequence[System],
    rounds: Sequence[Round],
    notes: list[str],
) -> dict[str, Any]:
    """Everything of the run, for bench/results/*.json."""
    summary = report.summarise(rounds)
    ratios = {
        table.workload: {
            row: {
                column.metric: spread.to_json()
                for column in table.columns
                if column.ratio
                and (spread := report.ratio_spread(rounds, table.workload, row, column.metric))
            }
            for row in report.rows_of(rounds, table.workload)
        }
        for table in report.TABLES
        if table.workload in summary
    }
    return {
        "config": {
            "rounds": args.rounds,
            "quick": args.quick,
            "sizes": dataclasses.asdict(sizes),
            "systems": [s.name for s in systems],
            "workloads": args.workloads,
            "baseline": args.baseline,
        },
        "environment": environment,
        "systems": describe(systems),
        "summary": {
            workload: {
                row: {m: s.to_json() for m, s in figures.items()} for row, figures in rows.items()
            }
            for workload, rows in summary.items()
        },
        "ratios_to_coroq": ratios,
        "goals": [goal.to_json() for goal in report.goals(rounds, summary)],
        "rounds": [
            {w: {row: o.to_json() for row, o in rows.items()} for w, rows in result.items()}
            for result in rounds
        ],
        "problems": collect_problems(rounds),
        "notes": notes,
    }


def with_baseline(systems: list[System], base: System) -> list[System]:
    """The baseline right after coroq: measured in turn with the others, like a peer."""
    at = systems.index(BY_NAME[COROQ]) + 1
    return [*systems[:at], base, *systems[at:]]


def run(
    args: argparse.Namespace, sizes: workloads.Sizes, systems: list[System], workdir: Path
) -> tuple[dict[str, Any], list[Round]]:
    """Start the private server, run the rounds, stop the server."""
    server = RedisServerProcess(binary=pick_redis_server(args.redis_server))
    started = time.monotonic()
    try:
        server.start()
        client = redis.Redis.from_url(server.url)
        try:
            environment = describe_environment(server, client)
            launcher = Launcher(server.url, workdir)
            bench = Bench(server.url, server.port, client, launcher, workdir, sizes)
            rounds = [
                run_round(bench, systems, args.workloads, number)
                for number in range(1, args.rounds + 1)
            ]
        finally:
            client.close()
    finally:
        server.cleanup()
    environment["load_avg_end"] = os.getloadavg()
    environment["duration_s"] = round(time.monotonic() - started, 1)
    return environment, rounds


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="coroq-compare-"))
    try:
        with contextlib.ExitStack() as stack:  # the baseline's worktree goes before workdir
            chosen = [BY_NAME[n] for n in args.systems]
            systems = prepare_peers(chosen, not args.no_install, workdir)
            base = stack.enter_context(baseline(args.baseline, workdir)) if args.baseline else None
            if base is not None:
                systems = with_baseline(systems, base)
            environment, rounds = run(args, sizes, systems, workdir)
            environment["baseline"] = base.name if base else None
    except (MeasureError, RuntimeError) as exc:
        print(f"compare: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    notes = []
    if environment["redis_benchmark"] == "not found":
        notes.append("redis-benchmark is not on PATH: no server ceiling in W1")
    summary = report.summarise(rounds)
    goal_list = report.goals(rounds, summary)
    print(report.render_text(rounds, summary, goal_list, heading(args, environment, sizes)))
    problems = collect_problems(rounds)
    print("\nproblems: " + ("none" if not problems else ""))
    for problem in problems:
        print(f"  - {problem}")
    try:
        title = f"coroq vs peers, {args.rounds} round(s), median and min-max ({environment['git']})"
        report.write_chart(rounds, summary, args.chart, title)
    except ImportError:
        notes.append("no chart: matplotlib is not installed (pip install -e '.[bench]')")
    result = document(args, sizes, environment, systems, rounds, notes)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(report.render_markdown(rounds, summary, goal_list))
    for note in notes:
        print(f"note: {note}")
    written = [args.json, args.markdown] + (
        [] if any("chart" in n for n in notes) else [args.chart]
    )
    print("\nresults: " + ", ".join(str(path) for path in written))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
