"""The lower bounds in pyproject.toml are true: the unit and integration tests pass on the
lowest release of every runtime dependency that pyproject.toml allows (tests/lowest_versions.py;
the run starts with the session, beside the other tests, and this test reads its outcome)."""

from __future__ import annotations

import pytest

from tests.lowest_versions import LOWEST_VERSIONS_RUN, LowestVersionsRun


@pytest.mark.slow
@pytest.mark.lowest_versions
@pytest.mark.timeout(1800)
def test_unit_and_integration_tests_pass_on_the_lowest_allowed_releases(
    request: pytest.FixtureRequest,
) -> None:
    run: LowestVersionsRun = request.config.stash[LOWEST_VERSIONS_RUN]
    assert run.problems(timeout=1700) == []
