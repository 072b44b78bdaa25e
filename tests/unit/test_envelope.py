"""The job envelope (DESIGN §2): strict about known fields, faithful to unknown ones."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.envelope import (
    MAX_ID_LENGTH,
    JobEnvelope,
    build_envelope,
    compact_json,
    stamp,
    validate_envelope,
)
from producer.errors import InvalidJob
from tests.unit.strategies import (
    INVALID_VALUES,
    KNOWN_FIELDS,
    expected_wire_form,
    json_values,
    valid_envelopes,
)


def rejected_field(data: Any) -> str | None:
    with pytest.raises(InvalidJob) as caught:
        validate_envelope(data)
    return caught.value.field


@pytest.mark.parametrize(
    "data",
    [
        {"task": "echo"},
        {"task": "echo", "args": ["hi", 1, None]},
        {"task": "echo", "args": {"to": "a@example.com"}},
        {"task": "echo", "args": []},
        {"task": "echo", "args": {}},
        {"task": "echo", "id": "x" * MAX_ID_LENGTH},
        {"task": "echo", "max_attempts": 1, "timeout": 0.5, "enqueued_at": 0},
        {"task": "echo", "timeout": 30, "enqueued_at": 1_700_000_000.25},
        {"task": "echo", "id": None, "max_attempts": None, "timeout": None, "enqueued_at": None},
    ],
)
def test_valid_envelopes_are_accepted(data: dict[str, Any]) -> None:
    envelope = validate_envelope(data)
    assert isinstance(envelope, JobEnvelope)
    assert envelope.task == "echo"


def test_positional_and_keyword_views_follow_the_shape_of_args() -> None:
    positional = validate_envelope({"task": "t", "args": [1, 2]})
    keyword = validate_envelope({"task": "t", "args": {"a": 1}})
    assert (positional.positional, positional.keywords) == ([1, 2], {})
    assert (keyword.positional, keyword.keywords) == ([], {"a": 1})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"args": []}, "task"),
        ({"task": ""}, "task"),
        ({"task": 5}, "task"),
        ({"task": ["echo"]}, "task"),
        ({"task": None}, "task"),
        ({"task": "echo", "args": "hi"}, "args"),
        ({"task": "echo", "args": 3}, "args"),
        ({"task": "echo", "args": None}, "args"),
        ({"task": "echo", "id": ""}, "id"),
        ({"task": "echo", "id": 7}, "id"),
        ({"task": "echo", "id": "x" * (MAX_ID_LENGTH + 1)}, "id"),
        ({"task": "echo", "max_attempts": 0}, "max_attempts"),
        ({"task": "echo", "max_attempts": -1}, "max_attempts"),
        ({"task": "echo", "max_attempts": "3"}, "max_attempts"),
        ({"task": "echo", "max_attempts": True}, "max_attempts"),
        ({"task": "echo", "max_attempts": 1.5}, "max_attempts"),
        ({"task": "echo", "timeout": 0}, "timeout"),
        ({"task": "echo", "timeout": -1}, "timeout"),
        ({"task": "echo", "timeout": "5"}, "timeout"),
        ({"task": "echo", "timeout": True}, "timeout"),
        ({"task": "echo", "timeout": float("inf")}, "timeout"),
        ({"task": "echo", "enqueued_at": -1}, "enqueued_at"),
    ],
)
def test_each_invalid_field_is_rejected_naming_that_field(data: dict[str, Any], field: str) -> None:
    assert rejected_field(data) == field


def test_the_error_message_names_the_source_index_and_field() -> None:
    with pytest.raises(InvalidJob) as caught:
        validate_envelope({"task": "echo", "timeout": "5"}, source="jobs.json", index=4)
    message = str(caught.value)
    assert message.startswith("jobs.json: job 4: field 'timeout': ")


@pytest.mark.parametrize("data", [[], "echo", 3, None, [{"task": "echo"}]])
def test_a_value_that_is_not_an_object_is_rejected_without_a_field(data: Any) -> None:
    with pytest.raises(InvalidJob, match="must be a JSON object") as caught:
        validate_envelope(data)
    assert caught.value.field is None


def test_unknown_fields_are_kept_and_written_back() -> None:
    data = {"task": "echo", "priority": 5, "trace": {"span": "abc", "tags": [1, "x"]}}
    envelope = validate_envelope(data)
    assert orjson.loads(envelope.to_json()) == {**data, "args": []}


def test_an_unknown_field_whose_value_is_null_is_written_back() -> None:
    # The envelope promises to write extra fields back unchanged (forward compatibility);
    # `exclude_none` in `to_json` drops an unknown field that is null.
    data = {"task": "echo", "args": [], "deadline": None}
    assert orjson.loads(validate_envelope(data).to_json()) == data


def test_null_optional_fields_are_left_out_of_the_wire_form() -> None:
    envelope = validate_envelope({"task": "echo", "id": None, "timeout": None})
    assert orjson.loads(envelope.to_json()) == {"task": "echo", "args": []}


def test_build_envelope_stamps_an_id_and_the_enqueue_time() -> None:
    before = time.time()
    envelope = build_envelope("echo", ("hi",), {})
    assert re.fullmatch(r"[0-9a-f]{32}", str(envelope.id))
    assert envelope.enqueued_at is not None
    assert before <= envelope.enqueued_at <= time.time()
    assert envelope.args == ["hi"]


def test_a_stamped_envelope_shows_its_id_and_time_everywhere() -> None:
    envelope = stamp(validate_envelope({"task": "echo", "extra": None}))
    wire = orjson.loads(envelope.to_json())
    assert wire["id"] == envelope.id == envelope.model_dump()["id"]
    assert wire["enqueued_at"] == envelope.enqueued_at == envelope.model_dump()["enqueued_at"]
    assert wire["extra"] is None
    # A given id and time are kept.
    again = stamp(validate_envelope(wire))
    assert (again.id, again.enqueued_at) == (envelope.id, envelope.enqueued_at)


@given(json_values)
def test_compact_json_writes_what_orjson_writes(value: Any) -> None:
    assert compact_json(value) == orjson.dumps(value)


def test_build_envelope_keeps_a_given_id_and_options() -> None:
    envelope = build_envelope("echo", (), {"a": 1}, job_id="j-1", max_attempts=2, timeout=1.5)
    assert (envelope.id, envelope.max_attempts, envelope.timeout) == ("j-1", 2, 1.5)
    assert envelope.args == {"a": 1}


def test_build_envelope_gives_each_job_its_own_id() -> None:
    assert build_envelope("echo", (), {}).id != build_envelope("echo", (), {}).id


def test_build_envelope_rejects_positional_and_keyword_arguments_together() -> None:
    with pytest.raises(InvalidJob) as caught:
        build_envelope("echo", (1,), {"a": 2})
    assert caught.value.field == "args"


def test_build_envelope_rejects_arguments_that_are_not_json_serialisable() -> None:
    with pytest.raises(InvalidJob, match="JSON-serialisable") as caught:
        build_envelope("echo", (object(),), {})
    assert caught.value.field == "args"


def test_build_envelope_applies_the_wire_rules_to_its_options() -> None:
    with pytest.raises(InvalidJob) as caught:
        build_envelope("echo", (), {}, max_attempts=0)
    assert caught.value.field == "max_attempts"


@given(valid_envelopes())
def test_any_valid_envelope_round_trips_through_the_wire_form(data: dict[str, Any]) -> None:
    # Unknown fields that are null are left out here; see the dedicated test above.
    assert orjson.loads(validate_envelope(data).to_json()) == expected_wire_form(data)


@given(valid_envelopes())
def test_the_wire_form_of_a_valid_envelope_is_itself_valid_and_stable(
    data: dict[str, Any],
) -> None:
    once = validate_envelope(data).to_json()
    assert validate_envelope(orjson.loads(once)).to_json() == once


@given(st.data())
def test_an_envelope_with_one_invalid_field_is_rejected_naming_that_field(
    data: st.DataObject,
) -> None:
    envelope = data.draw(valid_envelopes(extras=False))
    field = data.draw(st.sampled_from(KNOWN_FIELDS))
    if field == "task" and data.draw(st.booleans()):
        del envelope["task"]
    else:
        envelope[field] = data.draw(INVALID_VALUES[field])
    assert rejected_field(envelope) == field


any_json_object = st.dictionaries(
    st.sampled_from(KNOWN_FIELDS) | st.text(max_size=8), json_values, max_size=6
)


@given(json_values | any_json_object)
def test_validation_of_any_json_value_returns_an_envelope_or_raises_invalid_job(
    value: Any,
) -> None:
    try:
        result = validate_envelope(value)
    except InvalidJob:
        return
    assert isinstance(result, JobEnvelope)
