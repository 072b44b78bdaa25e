"""The tasks that docs/testing.md tests (its `coroq_tasks` names this module)."""

from worker import Fail, task


@task("orders.total")
async def total(prices: list[float], discount: float = 0.0) -> float:
    return round(sum(prices) * (1 - discount), 2)


@task("orders.charge", max_attempts=3)
def charge(order_id: str, amount: float) -> dict[str, object]:
    if amount <= 0:
        raise Fail(f"order {order_id}: nothing to charge")
    if order_id.startswith("flaky"):
        raise ConnectionError("the payment service did not answer")
    return {"order": order_id, "charged": amount}
