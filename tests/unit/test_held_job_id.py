"""held_job_id: which record a job the consumer gives back belongs to."""

from __future__ import annotations

import pytest

from worker.jobs.protocol import held_job_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"task":"echo","id":"j-1"}', "j-1"),
        (b'{"task":"echo"}', "-"),  # no id: the worker gives it one when it decodes it
        (b'{"task":"echo","id":7}', "-"),
        (b'{"task":"echo","id":""}', "-"),
        (b'{"task":"echo","id":"' + b"x" * 300 + b'"}', "-"),
        (b"[1, 2]", "-"),
        (b"not json", "-"),
        (b"\xff\xfe", "-"),
    ],
)
def test_the_id_of_a_held_job_or_none_usable(raw: bytes, expected: str) -> None:
    assert held_job_id(raw) == expected
