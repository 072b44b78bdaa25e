"""Hostile payloads, as any client could LPUSH them, each with the dead-list reason it must get.

A reason of None means "dead-lettered with some reason, the exact one is the worker's call"
(e.g. a result too deep to encode may fail in the handler or in encoding its result).
"""

from __future__ import annotations

import orjson

MIB = 1024 * 1024


def _job(**fields: object) -> bytes:
    return orjson.dumps({"task": "echo", "args": [], **fields})


def _nested(depth: int, *, array: bool) -> bytes:
    if array:
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def _wrong_types() -> dict[str, bytes]:
    """Every envelope field with values of the wrong type or out of range."""
    cases: dict[str, object] = {
        "task_number": {"task": 123},
        "task_null": {"task": None},
        "task_list": {"task": ["echo"]},
        "task_object": {"task": {"name": "echo"}},
        "task_empty": {"task": ""},
        "task_bool": {"task": True},
        "task_too_long": {"task": "e" * 201},
        "task_missing": {"args": []},
        "args_string": {"task": "echo", "args": "hi"},
        "args_number": {"task": "echo", "args": 5},
        "args_bool": {"task": "echo", "args": True},
        "id_number": {"task": "echo", "id": 5},
        "id_empty": {"task": "echo", "id": ""},
        "id_too_long": {"task": "echo", "id": "i" * 257},
        "id_list": {"task": "echo", "id": ["x"]},
        "max_attempts_string": {"task": "echo", "max_attempts": "3"},
        "max_attempts_bool": {"task": "echo", "max_attempts": True},
        "max_attempts_zero": {"task": "echo", "max_attempts": 0},
        "max_attempts_negative": {"task": "echo", "max_attempts": -1},
        "max_attempts_fraction": {"task": "echo", "max_attempts": 1.5},
        "timeout_string": {"task": "echo", "timeout": "1"},
        "timeout_zero": {"task": "echo", "timeout": 0},
        "timeout_negative": {"task": "echo", "timeout": -1},
        "timeout_bool": {"task": "echo", "timeout": True},
        "timeout_object": {"task": "echo", "timeout": {}},
        "enqueued_at_string": {"task": "echo", "enqueued_at": "now"},
        "enqueued_at_negative": {"task": "echo", "enqueued_at": -5},
        "enqueued_at_bool": {"task": "echo", "enqueued_at": False},
    }
    return {name: orjson.dumps(fields) for name, fields in cases.items()}


def hostile_payloads() -> dict[str, tuple[bytes, str | None]]:
    """name -> (raw bytes, expected reason)."""
    payloads: dict[str, tuple[bytes, str | None]] = {
        "invalid_utf8": (b"\xff\xfe\xfd not even text", "invalid_json"),
        "invalid_utf8_inside_json": (b'{"task":"echo","args":["\xff\xfe"]}', "invalid_json"),
        "utf8_encoded_surrogate": (b'{"task":"echo","args":["\xed\xa0\x80"]}', "invalid_json"),
        "empty": (b"", "invalid_json"),
        "whitespace": (b"  \n\t ", "invalid_json"),
        "nul_bytes": (b"\x00" * 64, "invalid_json"),
        "truncated_json": (b'{"task":"echo","args":[1,2', "invalid_json"),
        "nan": (b'{"task":"echo","args":[NaN]}', "invalid_json"),
        "json_array": (b'[{"task":"echo"}]', "invalid_envelope"),
        "json_string": (b'"echo"', "invalid_envelope"),
        "json_number": (b"42", "invalid_envelope"),
        "json_null": (b"null", "invalid_envelope"),
        "json_bool": (b"true", "invalid_envelope"),
        "string_10mb": (_job(id="big-json", args=["x" * (10 * MIB)]), "payload_too_large"),
        "bytes_10mb": (bytes(range(256)) * (40 * 1024), "payload_too_large"),
        "nested_arrays_100k": (_nested(100_000, array=True), "invalid_json"),
        "nested_objects_100k": (_nested(100_000, array=False), "invalid_json"),
        # Parses (orjson reads 1,024 levels) but cannot be written back with a new id
        # (orjson writes 254): dead-lettered, not crashed on.
        "nested_args_without_id": (
            b'{"task":"echo","args":[' + _nested(600, array=True) + b"]}",
            "invalid_envelope",
        ),
        # Has an id, so it runs; its result (or its log line) is too deep to encode.
        "nested_args_with_id": (
            b'{"task":"echo","id":"deep","max_attempts":1,"args":['
            + _nested(600, array=True)
            + b"]}",
            None,
        ),
        "number_overflowing_double": (b'{"task":"echo","args":[1e400]}', "invalid_json"),
        "integer_400_digits": (b'{"task":"echo","args":[1' + b"0" * 400 + b"]}", "invalid_json"),
        "max_attempts_2_pow_64": (
            b'{"task":"echo","max_attempts":18446744073709551616}',
            "invalid_envelope",
        ),
        "max_attempts_1e400": (b'{"task":"echo","max_attempts":1e400}', "invalid_json"),
        "timeout_1e400": (b'{"task":"echo","timeout":1e400}', "invalid_json"),
        "enqueued_at_negative_huge": (_job(enqueued_at=-1.7e308), "invalid_envelope"),
        "unknown_task": (_job(task="no.such.task", id="unknown"), "unknown_task"),
        "task_that_names_code": (_job(task="os.system", args=["true"]), "unknown_task"),
        "arguments_not_fitting": (
            orjson.dumps({"task": "faults.work", "args": {"ledger": 1}}),
            "invalid_arguments",
        ),
    }
    for name, raw in _wrong_types().items():
        payloads[name] = (raw, "invalid_envelope")
    return payloads


def odd_but_valid_payloads() -> dict[str, bytes]:
    """Strange yet valid jobs: each must simply succeed."""
    cases: dict[str, dict[str, object]] = {
        "id_with_braces_newline_unicode": {"id": "{x}:job:\n\u00e9\u202e\U0001f600", "args": [1]},
        "args_with_control_chars_and_emoji": {"id": "odd-args", "args": ["\u0000\u001f\U0001f4a5"]},
        "unknown_fields_kept": {"id": "odd-extra", "args": [], "x": {"y": [None, 1e308, -0.0]}},
        "max_attempts_int64_max": {"id": "odd-max", "max_attempts": 2**63 - 1},
        "timeout_1e308": {"id": "odd-timeout", "timeout": 1e308},
        "enqueued_at_zero": {"id": "odd-enqueued", "enqueued_at": 0},
        "keyword_args": {"id": "odd-kwargs", "args": {"\u00fc": "\u00fc", "": 0}},
    }
    return {name: orjson.dumps({"task": "echo", **fields}) for name, fields in cases.items()}
