from pydantic import BaseModel

from tasks.agent import Agent, Scripted, call
from tools.declaration import Effect, ToolContext, tool


class Order(BaseModel):
    order_id: str
    cents: int = 0


class Receipt(BaseModel):
    refund_id: str


@tool("find_order", "1", Effect.READ)
def find_order(ctx: ToolContext, args: Order) -> Order:
    """Look an order up by its id."""
    return Order(order_id=args.order_id, cents=4200)


@tool("refund", "1", Effect.IRREVERSIBLE, dedupes=True)
def refund(ctx: ToolContext, args: Order) -> Receipt:
    """Refund an order. The payment provider deduplicates by the call's key."""
    return Receipt(refund_id=f"re_{ctx.key[:12]}")


def plan(task: str, seen: dict):  # stands in for a model: the next call, or the answer
    if "find_order" not in seen:
        return call("find_order", order_id=task)
    if "refund" not in seen:
        return call("refund", **seen["find_order"])
    return f"Order {task}: {seen['refund']}"


refunds = Agent("refunds", "Refund the order named in the task.", tools=[find_order, refund],
                reasoner=Scripted(plan), approve=["refund"], max_steps=10)
WORKFLOWS = [refunds]
