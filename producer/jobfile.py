"""Reading jobs from a file: one JSON object, an array of objects, or JSON Lines.

Every job is validated before anything is pushed, so a file with one bad job pushes nothing;
the error names the file, the job's index and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import orjson

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
        return [validate_envelope(item, source=source, index=i) for i, item in enumerate(document)]
    return [validate_envelope(document, source=source, index=0)]


def _parse_json_lines(data: bytes, *, source: str) -> list[JobEnvelope]:
    jobs: list[JobEnvelope] = []
    for line_number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        index = len(jobs)
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidJob(
                f"not valid JSON: {exc}", source=source, index=index, line=line_number
            ) from None
        jobs.append(validate_envelope(item, source=source, index=index, line=line_number))
    return jobs


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
