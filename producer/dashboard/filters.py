"""The filters and helpers the dashboard's templates use: times, JSON, long text, URLs.

Each takes what Redis holds, whatever it is, and never fails: a value that is not what it should
be shows as "-" or as text.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import orjson

STATIC = Path(__file__).parent / "static"
TEXT_SHOWN = 100_000  # characters of a job's arguments or bytes on its page, at most


def static_urls() -> Callable[[str], str]:
    """`/static/<name>?v=<digest>`: a browser never keeps a file of an older release."""
    versions = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12] for path in STATIC.iterdir()
    }
    return lambda name: f"/static/{name}?v={versions.get(name, '')}"


def number(value: object) -> float | None:
    """A finite number from a number or its text; None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        found = float(value) if isinstance(value, int | float) else float(str(value))
    except (ValueError, OverflowError):
        return None
    return found if math.isfinite(found) else None


def when(value: object) -> str:
    value = number(value)
    if value is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    except (OverflowError, OSError, ValueError):
        return str(value)


def ago(value: object, now: float | None = None) -> str:
    value = number(value)
    if value is None:
        return "-"
    seconds = (time.time() if now is None else now) - value
    later = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} d"
    return f"in {text}" if later else f"{text} ago"


def pretty_json(value: object) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return str(value)


def clip(text: str, limit: int = TEXT_SHOWN) -> str:
    """At most `limit` characters of a text, saying how many more there are."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters not shown)"


def url_part(value: object) -> str:
    """A queue name or job id as one segment of a path: a job id may hold "/"."""
    return quote(str(value), safe="")
