"""The key layout (DESIGN §2): every key of one queue lives in one Redis Cluster slot."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot as redis_py_key_slot

from producer.errors import InvalidQueueName
from producer.keys import DEFAULT_PREFIX, QueueKeys, validate_queue_name, workers_key

CLUSTER_SLOTS = 16384


def crc16_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def cluster_slot(key: str | bytes) -> int:
    """Redis Cluster's slot of a key: the hash tag (between the first `{` and the next `}`,
    when not empty) or else the whole key, CRC16-XMODEM modulo 16384."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16_xmodem(raw) % CLUSTER_SLOTS


queue_names = st.from_regex(r"\A[A-Za-z0-9_.:@-]{1,128}\Z")


def all_keys(keys: QueueKeys, worker_id: str, job_id: str) -> list[str]:
    return [
        keys.ready,
        keys.delayed,
        keys.dead,
        keys.processing(worker_id),
        keys.job(job_id),
        keys.worker(worker_id),
        keys.history,
    ]


def test_the_slot_function_matches_published_examples() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3
    assert cluster_slot("foo") == 12182
    assert cluster_slot("{user1000}.following") == cluster_slot("{user1000}.followers")
    assert cluster_slot("foo{}{bar}") == crc16_xmodem(b"foo{}{bar}") % CLUSTER_SLOTS


@given(st.binary(max_size=40))
def test_the_slot_function_agrees_with_redis_py(key: bytes) -> None:
    assert cluster_slot(key) == redis_py_key_slot(key)


def test_keys_follow_the_documented_layout() -> None:
    keys = QueueKeys("emails")
    assert keys.ready == "coroq:{emails}:ready"
    assert keys.delayed == "coroq:{emails}:delayed"
    assert keys.dead == "coroq:{emails}:dead"
    assert keys.processing("w1") == "coroq:{emails}:processing:w1"
    assert keys.processing_pattern == "coroq:{emails}:processing:*"
    assert keys.job("j1") == "coroq:{emails}:job:j1"
    assert keys.worker("w1") == "coroq:{emails}:worker:w1"
    assert keys.history == "coroq:{emails}:history"
    assert workers_key() == f"{DEFAULT_PREFIX}:workers"


@given(queue_names, st.text(), st.text())
def test_all_keys_of_one_queue_map_to_one_cluster_slot(
    queue: str, worker_id: str, job_id: str
) -> None:
    keys = QueueKeys(queue)
    slots = {cluster_slot(key) for key in all_keys(keys, worker_id, job_id)}
    assert slots == {cluster_slot(queue)}


@given(queue_names, st.from_regex(r"\A[A-Za-z0-9_.:-]{1,20}\Z"), st.text(), st.text())
def test_all_keys_of_one_queue_share_a_slot_under_any_valid_prefix(
    queue: str, prefix: str, worker_id: str, job_id: str
) -> None:
    keys = QueueKeys(queue, prefix)
    assert len({cluster_slot(key) for key in all_keys(keys, worker_id, job_id)}) == 1


@pytest.mark.parametrize("prefix", ["x{}", "a{"])
def test_a_prefix_with_braces_is_refused_or_keeps_the_queue_in_one_slot(prefix: str) -> None:
    # QueueKeys validates the queue name but takes any prefix: with `x{}` the first `{...}`
    # of every key is empty, the whole key is hashed and the queue's keys scatter over
    # slots (the producer's `--prefix` flag and `Producer(prefix=...)` pass it through).
    try:
        keys = QueueKeys("default", prefix)
    except (InvalidQueueName, ValueError):
        return
    slots = {cluster_slot(key) for key in all_keys(keys, "w", "j")}
    assert len(slots) == 1, f"prefix {prefix!r} spreads the queue over slots {sorted(slots)}"


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a{b", "a}b", "{a}", " default", "tab\tname", "x" * 129, "é", "a/b"],
)
def test_invalid_queue_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidQueueName):
        validate_queue_name(name)
    with pytest.raises(InvalidQueueName):
        QueueKeys(name)


def test_a_queue_name_with_a_trailing_newline_is_refused() -> None:
    # `_QUEUE_NAME.match` with `$` accepts one trailing "\n", so "default\n" passes and
    # builds keys such as 'coroq:{default\n}:ready' (fullmatch or \Z would refuse it).
    with pytest.raises(InvalidQueueName):
        validate_queue_name("default\n")


@pytest.mark.parametrize("name", ["default", "a", "x" * 128, "emails.high", "team:a@b-c_d"])
def test_valid_queue_names_are_accepted(name: str) -> None:
    assert validate_queue_name(name) == name
    assert QueueKeys(name).queue == name
