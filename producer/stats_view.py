"""How `producer stats` shows a snapshot to people: two rich tables and a summary line.

Throughput is not per queue (a worker can serve several): the summary line shows the total,
the workers table each worker's `jobs/s`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text

from producer.stats import StatsSnapshot


def stats_view(snapshot: StatsSnapshot) -> Group:
    return Group(_queues_table(snapshot), Text(""), _workers_table(snapshot), _summary(snapshot))


def _queues_table(snapshot: StatsSnapshot) -> Table:
    table = Table(title="queues", title_justify="left", box=None)
    table.add_column("queue", overflow="fold")
    # Suspects exist only for a while after a worker died: their column shows only then.
    with_suspects = any(queue.suspects for queue in snapshot.queues)
    names = ("ready", "delayed", "processing", "dead", "workers")
    for name in (*names, "suspects") if with_suspects else names:
        table.add_column(name, justify="right")
    for queue in snapshot.queues:
        title = Text(queue.queue)
        if queue.paused:
            title.append(" (paused)", style="bold yellow")
        cells: list[str | Text] = [
            title,
            str(queue.ready),
            str(queue.delayed),
            str(queue.processing),
            Text(str(queue.dead), style="bold red" if queue.dead else ""),
            Text(str(queue.workers), style="" if queue.workers else "yellow"),
        ]
        if with_suspects:
            cells.append(Text(str(queue.suspects), style="bold yellow" if queue.suspects else ""))
        table.add_row(*cells)
    if not snapshot.queues:
        table.add_row(Text("(no queues found)", style="dim"))
    return table


def _workers_table(snapshot: StatsSnapshot) -> Table:
    table = Table(title="live workers", title_justify="left", box=None)
    table.add_column("worker", overflow="fold")
    table.add_column("host", overflow="fold")
    table.add_column("pid", justify="right")
    table.add_column("metrics", justify="right")
    table.add_column("queues")
    table.add_column("in flight", justify="right")
    table.add_column("jobs/s", justify="right")
    table.add_column("heartbeat age", justify="right")
    table.add_column("up since (UTC)")
    for worker in snapshot.workers:
        age = worker.heartbeat_age_s
        table.add_row(
            worker.worker_id,
            worker.host or "?",
            "?" if worker.pid is None else str(worker.pid),
            "-" if worker.metrics_port is None else f":{worker.metrics_port}",
            ",".join(worker.queues),
            str(worker.in_flight),
            "?" if worker.jobs_per_s is None else f"{worker.jobs_per_s:.2f}",
            "?" if age is None else f"{age:.1f}s",
            _when(worker.started_at),
        )
    if not snapshot.workers:
        table.add_row(Text("(no live worker)", style="yellow"))
    return table


def _summary(snapshot: StatsSnapshot) -> Text:
    rate = snapshot.throughput_per_s
    throughput = (
        "unknown (no live worker reports it)"
        if rate is None
        else f"{rate:.2f} jobs/s (finished over about the last minute, all live workers)"
    )
    taken = time.strftime("%H:%M:%S", time.localtime(snapshot.taken_at))
    return Text(
        f"\nin flight: {snapshot.in_flight}   throughput: {throughput}   at {taken}", style="dim"
    )


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
