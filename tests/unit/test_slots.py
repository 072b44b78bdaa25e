"""The concurrency cap as leases (`worker.jobs.slots`): released once, and gathered whole for
a trial of suspects while no other consumer takes a slot."""

from __future__ import annotations

import threading

from tests.conftest import wait_for
from worker.jobs.slots import Slots


def test_a_lease_released_twice_gives_back_one_slot() -> None:
    slots = Slots(2)
    lease = slots.lease(0)
    assert lease is not None
    lease.release()
    lease.release()
    assert slots.in_use == 0
    assert len(slots.spare(5)) == 2


def test_lease_all_waits_for_the_slots_in_use_and_no_one_else_takes_one_meanwhile() -> None:
    slots = Slots(3)
    running = slots.lease(0)
    assert running is not None
    stop = threading.Event()
    gathered: list[object] = []
    gatherer = threading.Thread(target=lambda: gathered.append(slots.lease_all(stop)))
    gatherer.start()
    wait_for(lambda: slots.in_use == 3)  # the two free ones, and it waits for the third
    assert slots.lease(0.05) is None  # another consumer gets nothing meanwhile
    assert slots.spare(3) == []
    running.release()
    gatherer.join(5)
    [leases] = gathered
    assert isinstance(leases, list)
    assert len(leases) == 3
    assert slots.lease(0.01) is None  # all held
    slots.release_unused(leases)
    assert slots.in_use == 0
    assert slots.lease(0) is not None  # open again


def test_lease_all_gives_back_what_it_gathered_when_the_worker_stops() -> None:
    slots = Slots(2)
    running = slots.lease(0)
    stop = threading.Event()
    gathered: list[object] = []
    gatherer = threading.Thread(target=lambda: gathered.append(slots.lease_all(stop)))
    gatherer.start()
    wait_for(lambda: slots.in_use == 2)
    stop.set()
    gatherer.join(5)
    assert gathered == [None]
    assert slots.in_use == 1  # only the running job's
    assert running is not None
    running.release()
    assert slots.in_use == 0


def test_lease_all_asks_the_consumers_blocked_in_a_pop_for_their_slots_once_the_gate_shuts() -> (
    None
):
    slots = Slots(2)
    held_by_a_pop = slots.lease(0)
    assert held_by_a_pop is not None
    seen: list[bool] = []

    def wake_the_pops() -> None:  # as the worker does: the pop ends, its slot comes back
        seen.append(slots.lease(0) is None)  # the gate is shut: nobody takes a slot now
        held_by_a_pop.release()

    slots.on_gather = wake_the_pops
    leases = slots.lease_all(threading.Event())
    assert leases is not None
    assert len(leases) == 2
    assert seen == [True]
