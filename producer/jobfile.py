"""Reading jobs from a file: one JSON object, an array of objects, or JSON Lines.

Every job is validated before anything is pushed, so a file with one bad job pushes nothing;
the error names the file, the job's index and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydantic import TypeAdapter, ValidationError

from producer.envelope import JobEnvelope, validate_envelope
from producer.errors import InvalidJob

STDIN_NAME = "<stdin>"


def parse_jobs(data: bytes, *, source: str) -> list[JobEnvelope]:
    """Parse and validate every job in `data`."""
    stripped = data.strip()
    if not stripped:
        raise InvalidJob("no jobs found (the input is empty)", source=source)
    try:
        document: Any = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        # Not one JSON document: JSON Lines, or broken JSON that the line reader will name.
        return _parse_json_lines(stripped, source=source)
    if isinstance(document, list):
        return _validate_all(document, source=source)
    return [validate_envelope(document, source=source, index=0)]


def _parse_json_lines(data: bytes, *, source: str) -> list[JobEnvelope]:
    items: list[Any] = []
    line_numbers: list[int] = []
    for line_number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise InvalidJob(
                f"not valid JSON: {exc}", source=source, index=len(items), line=line_number
            ) from None
        line_numbers.append(line_number)
    return _validate_all(items, source=source, line_numbers=line_numbers)


def _validate_all(
    items: list[Any], *, source: str, line_numbers: list[int] | None = None
) -> list[JobEnvelope]:
    """Validate every job in one call (much faster for large files than one call per job);
    on a problem, validate the first bad job alone for the usual message."""
    try:
        return _MANY_ENVELOPES.validate_python(items)
    except ValidationError as exc:
        location = exc.errors(include_url=False)[0]["loc"]
        index = location[0] if location and isinstance(location[0], int) else 0
        line = line_numbers[index] if line_numbers is not None else None
        validate_envelope(items[index], source=source, index=index, line=line)
        raise InvalidJob(str(exc), source=source, index=index, line=line) from None


_MANY_ENVELOPES = TypeAdapter(list[JobEnvelope])


def read_job_source(name: str, stdin: BinaryIO) -> list[JobEnvelope]:
    """Jobs from a file path, or from `stdin` when the name is `-`."""
    if name == "-":
        return parse_jobs(stdin.read(), source=STDIN_NAME)
    path = Path(name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidJob(f"cannot read the file: {exc.strerror}", source=name) from None
    return parse_jobs(data, source=name)
