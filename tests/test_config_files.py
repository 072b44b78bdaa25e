"""The shipped configuration files stay in step with the code."""

from __future__ import annotations

import re
import tomllib

from producer.jobfile import read_job_source
from tests.conftest import REPO_ROOT
from worker.settings import WorkerSettings, load_settings

WORKER_TOML = REPO_ROOT / "config" / "worker.toml"


def test_worker_toml_documents_every_setting() -> None:
    text = WORKER_TOML.read_text()
    documented = set(tomllib.loads(text))
    # Settings without a safe default value are documented commented out.
    documented |= set(re.findall(r"^# (\w+) = ", text, flags=re.MULTILINE))
    assert documented == set(WorkerSettings.model_fields)


def test_worker_toml_values_are_the_defaults(monkeypatch) -> None:
    for name in WorkerSettings.model_fields:
        monkeypatch.delenv(f"COROQ_{name.upper()}", raising=False)
    monkeypatch.delenv("COROQ_CONFIG", raising=False)
    from_file = load_settings(WORKER_TOML).model_dump(exclude={"worker_id"})
    defaults = load_settings().model_dump(exclude={"worker_id"})
    assert from_file == defaults


def test_example_job_files_are_valid_jobs() -> None:
    for path in (REPO_ROOT / "config" / "examples").iterdir():
        assert read_job_source(str(path), stdin=None)  # type: ignore[arg-type]
