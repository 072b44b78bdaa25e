"""Which queue's consumer takes a free slot first (worker/jobs/priorities.py)."""

from __future__ import annotations

import threading

from worker.jobs.priorities import QueueOrder


def test_strict_order_lets_a_queue_take_only_while_no_earlier_queue_wants_slots() -> None:
    order = QueueOrder(["critical", "default", "bulk"], {}, lambda queue: 0, 10)
    assert order.turn("bulk")  # nobody wants slots
    order.want("default", True)
    assert order.turn("critical")
    assert order.turn("default")
    assert not order.turn("bulk")
    order.want("critical", True)
    assert not order.turn("default")
    order.want("critical", False)  # its queue is empty now
    assert order.turn("default")


def test_weights_share_slots_by_what_each_queue_holds() -> None:
    held = {"a": 3, "b": 1}
    order = QueueOrder(["a", "b"], {"a": 3, "b": 1}, held.__getitem__, 8)
    order.want("a", True)
    order.want("b", True)
    assert order.turn("a")  # 3/3 against 1/1: even
    assert order.turn("b")
    held["a"] = 4
    assert not order.turn("a")  # a holds more than its share
    assert order.turn("b")
    held["b"] = 2
    assert order.turn("a")
    # Of 8 slots, a's share is 6 (it holds 4), b's is 2 (it holds 2).
    assert order.allowance("a", 49) == 2
    assert order.allowance("b", 49) == 0


def test_a_waiting_consumer_is_woken_when_the_earlier_queue_empties() -> None:
    order = QueueOrder(["critical", "bulk"], {}, lambda queue: 0, 10)
    order.want("critical", True)
    woke = threading.Event()

    def wait() -> None:
        while not order.wait_turn("bulk"):
            pass
        woke.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not woke.wait(0.05)
    order.want("critical", False)
    waiter.join(5.0)
    assert woke.is_set()
