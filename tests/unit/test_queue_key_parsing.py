"""Finding queues from key names, as `producer stats` does after its SCAN."""

from __future__ import annotations

import fnmatch

import pytest

from producer.keys import QueueKeys, parse_queue_key, queue_keys_pattern

KEYS = QueueKeys("mail:eu@1")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (KEYS.ready, ("mail:eu@1", "ready")),
        (KEYS.delayed, ("mail:eu@1", "delayed")),
        (KEYS.dead, ("mail:eu@1", "dead")),
        (KEYS.processing("host-1-abc"), ("mail:eu@1", "processing:host-1-abc")),
        (KEYS.worker("host-1-abc"), ("mail:eu@1", "worker:host-1-abc")),
        (KEYS.job("x}:dead"), None),  # a job id that looks like a dead list is still a job
        (KEYS.job("abc"), None),
        ("coroq:{mail}:processing:", None),
        ("coroq:workers", None),
        ("other:{mail}:ready", None),
    ],
)
def test_queue_keys_are_recognised_and_job_records_are_not(key: str, expected) -> None:
    assert parse_queue_key(key) == expected


def test_the_scan_pattern_matches_every_queue_key_and_skips_job_records() -> None:
    pattern = queue_keys_pattern()
    # Redis' glob and fnmatch agree on `*` and `[...]`, the only specials in the pattern.
    for key in (
        KEYS.ready,
        KEYS.delayed,
        KEYS.dead,
        KEYS.suspects,
        KEYS.processing("w"),
        KEYS.worker("w"),
    ):
        assert fnmatch.fnmatchcase(key, pattern)
    assert not fnmatch.fnmatchcase(KEYS.job("abc"), pattern)
