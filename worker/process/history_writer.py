"""Writing this worker's counts of ended jobs into each queue's throughput history
(`coroq:{Q}:history`, producer/history.py), from the heartbeat thread after each beat.

One script call per queue that has counts (worker/jobs/lua/history.lua), and nothing at all
when no job ended since the last write: an idle worker sends no command for it. The first
call of each minute also deletes the minutes the history no longer keeps, so the hash stays
about an hour long whatever the number of workers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping

from producer.history import MINUTES_KEPT, Outcome, history_field, minute_of
from producer.scripts import SyncScripts
from worker.jobs.protocol import QueueProtocol
from worker.jobs.throughput import Counts, ThroughputCounter


class HistoryWriter:
    def __init__(
        self,
        counter: ThroughputCounter,
        protocols: Mapping[str, QueueProtocol],
        scripts: SyncScripts,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._counter = counter
        self._protocols = protocols
        self._scripts = scripts
        self._clock = clock
        self._trimmed_in: dict[str, int] = {}  # queue -> the minute its history was trimmed in

    def write(self) -> None:
        """Send every count not sent yet. When Redis fails, what was not sent is kept for the
        next call, and the error is raised."""
        counts = self._counter.take()
        if not counts:
            return
        minute = minute_of(self._clock())
        oldest = minute - MINUTES_KEPT + 1
        by_queue: dict[str, dict[tuple[int, Outcome], int]] = defaultdict(dict)
        for (queue, counted_in, outcome), count in counts.items():
            if counted_in >= oldest:  # older minutes are gone from the history already
                by_queue[queue][counted_in, outcome] = count
        queues = list(by_queue)
        for index, queue in enumerate(queues):
            trim = self._trimmed_in.get(queue) != minute
            fields = {
                history_field(counted_in, outcome): count
                for (counted_in, outcome), count in by_queue[queue].items()
            }
            call = self._protocols[queue].add_history(fields, oldest if trim else None)
            try:
                self._scripts.run(call)
            except BaseException:
                self._counter.give_back(_unsent(by_queue, queues[index:]))
                raise
            if trim:
                self._trimmed_in[queue] = minute


def _unsent(by_queue: Mapping[str, Mapping[tuple[int, Outcome], int]], queues: list[str]) -> Counts:
    return {
        (queue, minute, outcome): count
        for queue in queues
        for (minute, outcome), count in by_queue[queue].items()
    }
