"""Unit tests run with a clean `COROQ_*` environment, whatever the shell running them has."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_coroq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("COROQ_"):
            monkeypatch.delenv(name)
