"""`producer dead list|retry|purge` against jobs a real worker dead-lettered."""

from __future__ import annotations

from pathlib import Path

import orjson
import redis

from producer import Producer
from producer.keys import QueueKeys
from tests.integration.helpers import record, run_module, wait_for_outcome


def dead_cli(redis_url: str, keys: QueueKeys, *args: str):
    return run_module(
        "producer", "dead", *args, "--queue", keys.queue, env={"COROQ_REDIS_URL": redis_url}
    )


def test_list_retry_and_purge_dead_jobs(
    start_worker,
    producer: Producer,
    redis_client: redis.Redis,
    redis_url: str,
    keys: QueueKeys,
    tmp_path: Path,
) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    start_worker()
    fixable = producer.push("tests.fails_while_file_exists", str(flag), _max_attempts=1)
    hopeless = producer.push("tests.fail_for_good")
    assert wait_for_outcome(redis_client, keys, fixable)["status"] == "dead"
    assert wait_for_outcome(redis_client, keys, hopeless)["status"] == "dead"

    listed = dead_cli(redis_url, keys, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert {entry["id"] for entry in entries} == {fixable, hopeless}
    assert {entry["reason"] for entry in entries} == {"handler_error"}
    table = dead_cli(redis_url, keys, "list")
    assert fixable in table.stdout
    assert "2 of 2 dead job(s)" in table.stderr

    flag.unlink()
    retried = dead_cli(redis_url, keys, "retry", fixable)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.split() == [fixable]
    found = wait_for_outcome(redis_client, keys, fixable)
    assert (found["status"], found["result"], found["attempts"]) == ("succeeded", "fixed", 1)

    missing = dead_cli(redis_url, keys, "retry", "no-such-id")
    assert missing.returncode == 1
    assert "no-such-id" in missing.stderr

    kept = dead_cli(redis_url, keys, "purge", "--older-than", "1h")
    assert "purged 0 dead job(s)" in kept.stdout
    purged = dead_cli(redis_url, keys, "purge")
    assert "purged 1 dead job(s)" in purged.stdout
    assert redis_client.llen(keys.dead) == 0
    assert record(redis_client, keys, hopeless)["status"] == "dead"  # the record stays
