"""Hypothesis strategies for JSON values and job envelopes (DESIGN §2)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from producer.envelope import MAX_ID_LENGTH, MAX_TASK_NAME_LENGTH

KNOWN_FIELDS = ("task", "args", "id", "max_attempts", "timeout", "enqueued_at")
OPTIONAL_FIELDS = ("id", "max_attempts", "timeout", "enqueued_at")

# orjson holds integers of 64 bits (signed or unsigned) and finite floats.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

positive_numbers = st.integers(min_value=1, max_value=2**53) | st.floats(
    min_value=0, exclude_min=True, allow_nan=False, allow_infinity=False
)
non_negative_numbers = st.integers(min_value=0, max_value=2**53) | st.floats(
    min_value=0, allow_nan=False, allow_infinity=False
)

# Each field's valid values; None means "null", which counts as absent.
VALID_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "task": st.text(min_size=1, max_size=MAX_TASK_NAME_LENGTH),
    "args": st.lists(json_values, max_size=5)
    | st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    "id": st.none() | st.text(min_size=1, max_size=MAX_ID_LENGTH),
    "max_attempts": st.none() | st.integers(min_value=1, max_value=2**63 - 1),
    "timeout": st.none() | positive_numbers,
    "enqueued_at": st.none() | non_negative_numbers,
}

non_strings = st.none() | st.booleans() | st.integers() | st.floats() | st.lists(st.integers())
not_numbers = (
    st.text() | st.booleans() | st.lists(st.integers()) | st.dictionaries(st.text(), st.integers())
)

# Each field's invalid values (for "task", also its absence, drawn separately).
INVALID_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "task": non_strings
    | st.just("")
    | st.text(min_size=MAX_TASK_NAME_LENGTH + 1, max_size=MAX_TASK_NAME_LENGTH + 20),
    "args": st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    "id": st.just("")
    | non_strings.filter(lambda v: v is not None)
    | st.text(min_size=MAX_ID_LENGTH + 1, max_size=MAX_ID_LENGTH + 20),
    "max_attempts": st.integers(max_value=0)
    | st.floats()
    | not_numbers
    | st.integers(min_value=1, max_value=99).map(str),
    "timeout": st.integers(max_value=0)
    | st.floats(max_value=0)
    | st.sampled_from([float("inf"), float("nan")])
    | not_numbers,
    "enqueued_at": st.integers(max_value=-1)
    | st.floats(max_value=0, exclude_max=True)
    | st.sampled_from([float("inf"), float("nan")])
    | not_numbers,
}

# Names that could collide with the model's own attributes are worth trying on purpose.
extra_field_names = st.sampled_from(
    ["model_config", "model_fields", "__pydantic_extra__", "_private", "positional", "to_json"]
) | st.text(min_size=1, max_size=12).filter(lambda name: name not in KNOWN_FIELDS)


@st.composite
def valid_envelopes(draw: st.DrawFn, *, extras: bool = True) -> dict[str, Any]:
    """A dict that is a valid envelope: `task`, any subset of the other fields, and (when
    `extras`) unknown fields whose values are any JSON value but null."""
    envelope: dict[str, Any] = {"task": draw(VALID_VALUES["task"])}
    for name in ("args", *OPTIONAL_FIELDS):
        if draw(st.booleans()):
            envelope[name] = draw(VALID_VALUES[name])
    if extras:
        unknown = draw(
            st.dictionaries(
                extra_field_names, json_values.filter(lambda v: v is not None), max_size=3
            )
        )
        envelope.update(unknown)
    return envelope


def expected_wire_form(envelope: dict[str, Any]) -> dict[str, Any]:
    """What `to_json()` should write for a valid envelope: `args` defaults to [] and null
    optional fields are left out."""
    expected = {k: v for k, v in envelope.items() if not (k in OPTIONAL_FIELDS and v is None)}
    expected.setdefault("args", [])
    return expected
