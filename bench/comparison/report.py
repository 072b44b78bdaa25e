"""Medians and ranges over rounds, ratios to coroq, the goals, and the table, JSON and chart."""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.comparison.systems import COROQ, SYSTEMS
from bench.comparison.workloads import Outcome

Round = dict[str, dict[str, Outcome]]  # workload -> row -> outcome

ROW_LABELS: dict[str, str] = {s.name: s.label for s in SYSTEMS} | {
    "brpop-loop": "BRPOP loop (floor, 1 process)",
    "handoff-floor": "hand-off floor (no Redis, 1 process)",
    "redis-benchmark-lpush": "redis-benchmark LPUSH (ceiling)",
    "redis-benchmark-rpop": "redis-benchmark RPOP (ceiling)",
    "coroq-api": "coroq Producer.push_many (API)",
    "coroq-2p": "coroq --processes 2",
}
FLOORS = ("brpop-loop", "handoff-floor")  # not systems: what one process can do at most
PUSH_LABELS = {COROQ: "coroq `producer push` (CLI)"}
SCALE_LABELS = {COROQ: "coroq, 1 process"}
ROW_ORDER = [s.name for s in SYSTEMS] + [
    "coroq-api",
    "coroq-2p",
    "brpop-loop",
    "handoff-floor",
    "redis-benchmark-lpush",
    "redis-benchmark-rpop",
]


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread | None:
        kept = tuple(v for v in values if not math.isnan(v))
        if not kept:
            return None
        return cls(statistics.median(kept), min(kept), max(kept), kept)

    def text(self, fmt: str) -> str:
        if len(self.values) == 1:
            return f"{self.median:{fmt}}"
        return f"{self.median:{fmt}} [{self.low:{fmt}}-{self.high:{fmt}}]"

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "rounds": self.values}


# -- summaries --------------------------------------------------------------------------------


def _row_rank(row: str) -> tuple[int, str]:
    """ROW_ORDER, a baseline (`coroq@<rev>`) right below coroq, anything else at the end."""
    name = COROQ if row.startswith(f"{COROQ}@") else row
    return (ROW_ORDER.index(name) if name in ROW_ORDER else 99, row)


def rows_of(rounds: Sequence[Round], workload: str) -> list[str]:
    seen = {row for r in rounds for row in r.get(workload, {})}
    return sorted(seen, key=_row_rank)


def metric_values(rounds: Sequence[Round], workload: str, row: str, metric: str) -> list[float]:
    values = []
    for r in rounds:
        outcome = r.get(workload, {}).get(row)
        values.append(outcome.metrics.get(metric, math.nan) if outcome else math.nan)
    return values


def summarise(rounds: Sequence[Round]) -> dict[str, dict[str, dict[str, Spread]]]:
    summary: dict[str, dict[str, dict[str, Spread]]] = {}
    for workload in {w for r in rounds for w in r}:
        for row in rows_of(rounds, workload):
            metrics = {m for r in rounds for m in r.get(workload, {}).get(row, Outcome()).metrics}
            for metric in sorted(metrics):
                spread = Spread.of(metric_values(rounds, workload, row, metric))
                if spread is not None:
                    summary.setdefault(workload, {}).setdefault(row, {})[metric] = spread
    return summary


def ratio_spread(rounds: Sequence[Round], workload: str, row: str, metric: str) -> Spread | None:
    """Per round, the row's figure divided by coroq's in the same round; then over rounds."""
    mine = metric_values(rounds, workload, row, metric)
    base = metric_values(rounds, workload, COROQ, metric)
    return Spread.of(a / b if b else math.nan for a, b in zip(mine, base, strict=True))


# -- goals ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    spread: Spread | None
    op: str  # ">=", "<=" or "<"
    threshold: float
    fmt: str

    @property
    def met(self) -> bool | None:
        if self.spread is None:
            return None
        compare: Callable[[float, float], bool] = {
            ">=": operator.ge,
            "<=": operator.le,
            "<": operator.lt,
        }[self.op]
        return compare(self.spread.median, self.threshold)

    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]

    def to_json(self) -> dict[str, Any]:
        return {
            "goal": self.name,
            "op": self.op,
            "threshold": self.threshold,
            "measured": self.spread.to_json() if self.spread else None,
            "met": self.met,
        }


def _per_round(rounds: Sequence[Round], value: Callable[[Round], float]) -> Spread | None:
    def safe(r: Round) -> float:
        try:
            return value(r)
        except (KeyError, ValueError, ZeroDivisionError):
            return math.nan

    return Spread.of(safe(r) for r in rounds)


def _jps(r: Round, workload: str, row: str) -> float:
    return r[workload][row].metrics["jobs_per_s"]


def _fastest_peer(r: Round, workload: str = "w1", metric: str = "jobs_per_s") -> float:
    """The best figure of the peers in a round: the most jobs/s, or the least latency."""
    peers = [
        o.metrics[metric]
        for row, o in r[workload].items()
        if row != COROQ and row in {s.name for s in SYSTEMS} and metric in o.metrics
    ]
    return max(peers) if metric == "jobs_per_s" else min(peers)


def _w3_p50(r: Round, row: str) -> float:
    return r["w3"][row].metrics["p50_ms"]


def goals(
    rounds: Sequence[Round], summary: Mapping[str, Mapping[str, Mapping[str, Spread]]]
) -> list[Goal]:
    def median_of(workload: str, row: str, metric: str) -> Spread | None:
        return summary.get(workload, {}).get(row, {}).get(metric)

    return [
        Goal(
            "W1 coroq ÷ fastest peer",
            _per_round(rounds, lambda r: _jps(r, "w1", COROQ) / _fastest_peer(r)),
            ">=",
            2.0,
            ".2f",
        ),
        Goal(
            "W1 coroq ÷ BRPOP loop",
            _per_round(rounds, lambda r: _jps(r, "w1", COROQ) / _jps(r, "w1", "brpop-loop")),
            ">=",
            0.5,
            ".2f",
        ),
        Goal("W2 efficiency at cap 500", median_of("w2", COROQ, "efficiency"), ">=", 0.90, ".3f"),
        Goal("W3 p50 (ms)", median_of("w3", COROQ, "p50_ms"), "<=", 0.5, ".2f"),
        Goal("W3 p99 (ms)", median_of("w3", COROQ, "p99_ms"), "<=", 1.5, ".2f"),
        Goal(
            "W3 p50: fastest peer ÷ coroq",
            _per_round(rounds, lambda r: _fastest_peer(r, "w3", "p50_ms") / _w3_p50(r, COROQ)),
            ">=",
            1.0,
            ".2f",
        ),
        Goal("W4 idle CPU (%)", median_of("w4", COROQ, "cpu_percent"), "<=", 0.5, ".2f"),
        Goal(
            "W4 idle Redis commands/s", median_of("w4", COROQ, "commands_per_s"), "<=", 1.0, ".2f"
        ),
        Goal("W5 RSS during W1 (MB)", median_of("w1", COROQ, "rss_peak_mb"), "<=", 40.0, ".1f"),
        Goal(
            "W5 RSS, 1M backlog, peak (MB)",
            median_of("w5", COROQ, "rss_peak_mb"),
            "<=",
            40.0,
            ".1f",
        ),
        Goal(
            "W5 RSS growth over the backlog run (MB)",
            median_of("w5", COROQ, "rss_growth_mb"),
            "<",
            5.0,
            ".1f",
        ),
        Goal(
            "push: `producer push` jobs/s",
            median_of("push", COROQ, "jobs_per_s"),
            ">=",
            100_000,
            ",.0f",
        ),
        Goal(
            "scale: 2 processes ÷ 1",
            _per_round(rounds, lambda r: _jps(r, "scale", "coroq-2p") / _jps(r, "scale", COROQ)),
            ">=",
            1.7,
            ".2f",
        ),
    ]


# -- tables -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    metric: str
    header: str
    fmt: str
    ratio: bool = False  # followed by a "÷ coroq" column


@dataclass(frozen=True, slots=True)
class Table:
    workload: str
    title: str
    columns: tuple[Column, ...]


TABLES = (
    Table("w1", "W1 throughput: no-op jobs pre-filled, one worker process, drained", (
        Column("jobs_per_s", "jobs/s", ",.0f", ratio=True),
        Column("rss_peak_mb", "peak RSS MB (W5)", ".1f"),
        Column("enqueue_per_s", "pre-fill enqueue jobs/s", ",.0f"),
    )),
    Table("w2", "W2 async I/O: jobs awaiting 50 ms, cap 500 (efficiency = ideal wall / actual)", (
        Column("efficiency", "efficiency", ".3f", ratio=True),
        Column("seconds", "wall s", ".2f"),
    )),
    Table("w3", "W3 latency: idle worker, one job every 10 ms, push -> start (ms)", (
        Column("p50_ms", "p50", ".2f", ratio=True),
        Column("p99_ms", "p99", ".2f", ratio=True),
        Column("max_ms", "max", ".1f"),
    )),
    Table("w4", "W4 idle cost over 10 s (after one job)", (
        Column("cpu_percent", "CPU %", ".2f", ratio=True),
        Column("commands_per_s", "Redis commands/s", ".2f", ratio=True),
    )),
    Table("w5", "W5 memory: coroq worker with a 1,000,000-job backlog, RSS MB", (
        Column("rss_start_mb", "first second", ".1f"),
        Column("rss_end_mb", "last second", ".1f"),
        Column("rss_peak_mb", "peak", ".1f"),
        Column("processed", "jobs run", ",.0f"),
    )),
    Table("push", "Push: 100,000 jobs, jobs/s", (
        Column("jobs_per_s", "jobs/s", ",.0f", ratio=True),
    )),
    Table("scale", "Scale on one host: pre-filled no-op jobs, idle `worker`, 1 or 2 processes", (
        Column("jobs_per_s", "jobs/s", ",.0f", ratio=True),
    )),
)  # fmt: skip


def row_label(workload: str, row: str) -> str:
    special = {"push": PUSH_LABELS, "scale": SCALE_LABELS}.get(workload, {})
    other = f"{row} (baseline)" if row.startswith(f"{COROQ}@") else row
    return special.get(row, ROW_LABELS.get(row, other))


def table_cells(
    rounds: Sequence[Round], summary: Mapping[str, Mapping[str, Mapping[str, Spread]]], table: Table
) -> tuple[list[str], list[list[str]]]:
    headers = ["system"]
    for column in table.columns:
        headers.append(column.header)
        if column.ratio:
            headers.append("÷ coroq")
    body = []
    for row in rows_of(rounds, table.workload):
        figures = summary.get(table.workload, {}).get(row, {})
        cells = [row_label(table.workload, row)]
        for column in table.columns:
            spread = figures.get(column.metric)
            cells.append(spread.text(column.fmt) if spread else "-")
            if column.ratio:
                ratio = ratio_spread(rounds, table.workload, row, column.metric)
                cells.append(ratio.text(".2f") if ratio and spread else "-")
        body.append(cells)
    return headers, body


def render_text(
    rounds: Sequence[Round],
    summary: Mapping[str, Mapping[str, Mapping[str, Spread]]],
    goal_list: Sequence[Goal],
    heading: Sequence[str],
) -> str:
    lines = list(heading)
    for table in TABLES:
        if table.workload not in summary:
            continue
        headers, body = table_cells(rounds, summary, table)
        widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
        lines += ["", table.title]
        for cells in [headers, *body]:
            first = cells[0].ljust(widths[0])
            rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
            lines.append(f"  {first}  {rest}")
    lines += ["", "Goals for coroq (median over rounds [min-max])"]
    for goal in (g for g in goal_list if g.spread is not None):
        measured = goal.spread.text(goal.fmt) if goal.spread else "-"
        target = f"{goal.op} {goal.threshold:{goal.fmt}}"
        lines.append(f"  {goal.name:<42} {measured:>28}  goal {target:<12} {goal.verdict()}")
    return "\n".join(lines)


def render_markdown(
    rounds: Sequence[Round],
    summary: Mapping[str, Mapping[str, Mapping[str, Spread]]],
    goal_list: Sequence[Goal],
) -> str:
    out: list[str] = []
    for table in TABLES:
        if table.workload not in summary:
            continue
        headers, body = table_cells(rounds, summary, table)
        out += [f"**{table.title}**", "", "| " + " | ".join(headers) + " |"]
        out.append("|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|")
        out += ["| " + " | ".join(cells) + " |" for cells in body]
        out.append("")
    out += ["**Goals for coroq**", "", "| goal | measured | target | |", "|---|---:|---:|---|"]
    for goal in (g for g in goal_list if g.spread is not None):
        measured = goal.spread.text(goal.fmt) if goal.spread else "-"
        out.append(f"| {goal.name} | {measured} | {goal.op} {goal.threshold:{goal.fmt}} | "
                   f"{goal.verdict()} |")  # fmt: skip
    return "\n".join(out) + "\n"


# -- chart ------------------------------------------------------------------------------------

PANELS = (
    ("w1", "jobs_per_s", "W1 no-op throughput (jobs/s)", False),
    ("w2", "efficiency", "W2 efficiency, 50 ms jobs, cap 500", False),
    ("w3", "p50_ms", "W3 push→start p50 (ms, log)", True),
    ("w3", "p99_ms", "W3 push→start p99 (ms, log)", True),
    ("w4", "cpu_percent", "W4 idle CPU (%)", False),
    ("w4", "commands_per_s", "W4 idle Redis commands/s", False),
    ("w1", "rss_peak_mb", "W5 peak RSS during W1 (MB)", False),
    ("push", "jobs_per_s", "Push (jobs/s)", False),
    ("scale", "jobs_per_s", "Scale: 1 vs 2 coroq processes (jobs/s)", False),
)


def write_chart(
    rounds: Sequence[Round],
    summary: Mapping[str, Mapping[str, Mapping[str, Spread]]],
    path: Path,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in PANELS if p[0] in summary]
    columns = 3
    lines = max(1, math.ceil(len(panels) / columns))
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.6 * lines), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (workload, metric, name, log) in zip(axes.flat, panels, strict=False):
        rows = [
            r
            for r in rows_of(rounds, workload)
            if metric in summary[workload].get(r, {}) and not r.startswith("redis-benchmark")
        ]
        spreads = [summary[workload][r][metric] for r in rows]
        labels = [row_label(workload, r).replace("`", "").replace(" (", "\n(") for r in rows]
        medians = [s.median for s in spreads]
        errors = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
        colours = [
            "tab:orange" if r.startswith(COROQ) else "tab:gray" if r in FLOORS else "tab:blue"
            for r in rows
        ]
        axis.bar(range(len(rows)), medians, yerr=errors, color=colours, capsize=3)
        axis.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
        axis.set_title(name, fontsize=9)
        axis.tick_params(axis="y", labelsize=7)
        if log and all(m > 0 for m in medians):
            axis.set_yscale("log")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
