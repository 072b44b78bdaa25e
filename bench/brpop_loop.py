"""The floor for one Python process: a bare redis-py (hiredis) `BRPOP` + `orjson.loads` loop.

Started by `bench/run.py` as a subprocess:

    python bench/brpop_loop.py URL KEY COUNT OUT_JSON [--latency] [--timeout SECONDS]

It takes COUNT items from the list KEY, decodes each one, and writes OUT_JSON with the epoch
times of the first receipt and of the last decoded item. With `--latency` it also records,
for every item in order, receipt time minus the payload's `enqueued_at` (ms). It exits 0 once
COUNT items are taken, or 2 (writing what it has) when `--timeout` seconds pass first.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.utils import HIREDIS_AVAILABLE

# How long one BRPOP blocks before the loop checks its overall deadline again.
POP_TIMEOUT_S = 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("count", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--latency", action="store_true", help="record push-to-receipt times")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after (s)")
    return parser.parse_args()


def take_all(
    client: redis.Redis, key: str, count: int, *, latency: bool, deadline: float
) -> dict[str, Any]:
    """The loop itself; kept free of anything but the pop, the decode and (optionally) a clock."""
    taken = 0
    first = last = 0.0
    latencies_ms: list[float] = []
    while taken < count and time.monotonic() < deadline:
        item = client.brpop([key], timeout=POP_TIMEOUT_S)
        if item is None:
            continue
        received = time.time()
        job = orjson.loads(item[1])
        if taken == 0:
            first = received
        if latency:
            latencies_ms.append((received - job["enqueued_at"]) * 1000)
        taken += 1
        last = time.time()
    return {
        "taken": taken,
        "complete": taken == count,
        "first_received_at": first,
        "last_done_at": last,
        "latencies_ms": latencies_ms,
        "hiredis": HIREDIS_AVAILABLE,
    }


def main() -> int:
    args = parse_args()
    client = redis.Redis.from_url(args.url, socket_timeout=POP_TIMEOUT_S + 5)
    try:
        client.ping()  # connect before the first pop, as the worker does before its loop
        result = take_all(
            client,
            args.key,
            args.count,
            latency=args.latency,
            deadline=time.monotonic() + args.timeout,
        )
    finally:
        client.close()
    args.out.write_bytes(orjson.dumps(result))
    return 0 if result["complete"] else 2


if __name__ == "__main__":
    raise SystemExit(main())
