"""The fault-injection suite (tests/faults: SIGKILLs, Redis restarts and failovers, cut
connections, poison jobs) passes. In a whole run it goes on in a pytest of its own beside the
other tests (tests/background_runs.py); this test gives its outcome, with its failures. Run
alone, it runs the suite itself; `pytest tests/faults` runs those tests one by one as usual."""

from __future__ import annotations

import pytest

from tests.background_runs import FAULT_SUITE_RUN, BackgroundPytest, fault_suite_args


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.fault_suite
@pytest.mark.timeout(2400)
def test_the_fault_injection_suite_passes(request: pytest.FixtureRequest) -> None:
    run = request.config.stash.get(FAULT_SUITE_RUN, None)
    if run is None:  # the fault tests were not part of this session: run them now
        run = BackgroundPytest(fault_suite_args(["tests/faults"])).start()
    code, output = run.outcome(timeout=2300)
    assert code == 0, f"the fault-injection suite (exit {code}):\n{output}"
