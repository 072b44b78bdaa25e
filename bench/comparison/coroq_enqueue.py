"""coroq's enqueue in a process of its own, with the command line and the report of the peers'
adapters (`bench/peers/peer_common.py`):

    python -m bench.comparison.coroq_enqueue enqueue --job noop --count 20000

The baseline of `compare.py --baseline REV` fills its queues with it, so that its jobs are
pushed by REV's `producer` (its PYTHONPATH is REV's worktree, see `coroq_pythonpath`) with the
same code as the current coroq's in-process `enqueue_coroq`; the report's `seconds` are the
same span (the enqueue calls, not the envelopes' building nor the process start).
"""

from __future__ import annotations

from bench.comparison.systems import enqueue_coroq
from bench.peers.peer_common import bench_env, parse_command, report


def main() -> None:
    args = parse_command()
    if args.command != "enqueue":
        raise SystemExit("coroq's worker is `python -m worker`, not this command")
    env = bench_env()
    enqueued = enqueue_coroq(env.redis_url, env.queue, args.job, args.count, args.interval)
    report(enqueued.count, enqueued.seconds)


if __name__ == "__main__":
    main()
