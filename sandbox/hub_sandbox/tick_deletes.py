"""A tick's deletions: open orders cancelled before anything happened to them are deleted.

The on-premise ERP hard-deletes the order and its lines (a real `DELETE`); a web order is
deleted in the shop too, which logs it as Shopify logs a `destroy` event. Only open orders
that nothing else refers to are candidates: not fulfilled (in this tick either), not billed,
and not named by the truth's record (`protected_keys`), so every planted discrepancy and every
expected canonical count stays exactly as recorded.
"""

from __future__ import annotations

import random

from hub_sandbox.store import Store

SHOP_ORDER_ID = 4500000000  # a web order's shop id is this plus its ERP order id (world_erp.py)
SHARE = 0.2  # a fifth of the tick's `fraction` of the open orders is deleted


def choose(rng: random.Random, open_orders: list[tuple], fulfilled: set[int], fraction: float,
           billing: Store) -> list[tuple]:  # fmt: skip
    """About `SHARE * fraction` of the open orders (rows of `Tick.run`'s query), none fulfilled in
    this tick and none billed, in order id order. Deterministic for the rng and the stores."""
    candidates = [o for o in open_orders if o[0] not in fulfilled]
    size = min(len(candidates), max(1, round(SHARE * fraction * len(open_orders))))
    chosen = []
    # Drawn in a random order until enough unbilled ones are found: the billing store is asked
    # about a few orders, not about every open one.
    for order in rng.sample(candidates, min(len(candidates), 4 * size)):
        if billing.get("invoices", f"in_{order[0]:010d}") is None:
            chosen.append(order)
            if len(chosen) == size:
                break
    return sorted(chosen)


def delete_orders(tick, orders: list[tuple]) -> None:
    """Delete `orders` in the ERP (inside the tick's transaction) and note them for the shop and
    the truth; the shop's deletions are written by `save_shop_deletions` after the ERP commits."""
    erp, ids = tick.erp, [(o[0],) for o in orders]
    lines = erp.rows(
        "SELECT order_id, line_number FROM {t}sales_order_lines WHERE order_id IN ("
        + ", ".join("?" * len(ids)) + ") ORDER BY 1, 2",
        [i for (i,) in ids],
    ) if ids else []  # fmt: skip
    erp.write("DELETE FROM {t}sales_order_lines WHERE order_id = ?", ids)
    erp.write("DELETE FROM {t}sales_orders WHERE order_id = ?", ids)
    numbers = {o[0]: o[4] for o in orders}
    tick.deleted["erp.sales_orders"] = [numbers[i] for (i,) in ids]
    tick.deleted["erp.sales_order_lines"] = [[numbers[o], n] for o, n in lines]
    for order_id, _, channel, *_ in orders:
        if channel == "web" and (body := tick.shop.get("orders", SHOP_ORDER_ID + order_id)):
            items = [item["id"] for item in body.get("line_items") or []]
            tick.shop_deleted.append((body["id"], body["name"], items))
    tick.deleted["shop.orders"] = [i for i, _, _ in tick.shop_deleted]
    tick.deleted["shop.order_line_items"] = [item for _, _, items in tick.shop_deleted for item in items]
    for name, keys in tick.deleted.items():
        if name in tick.counts:  # line items are counted in the truth, not in the report
            tick.counts[name]["deleted"] = len(keys)


def save_shop_deletions(tick) -> None:
    """The shop deletes the web orders, each logged as a `destroy` event at the tick's time."""
    if tick.shop_deleted:
        tick.shop.delete("orders", [(i, name) for i, name, _ in tick.shop_deleted], tick.stamp)


def note_in_record(record: dict, tick) -> None:
    """The record keeps every deletion, tick after tick: `deleted` ("<system>.<resource>" -> keys).

    `counts` and `expected` do not move: they count what the hub holds in raw and canonical, and
    the hub keeps a deleted record there as a tombstone (`_hub_deleted_at`). The sources hold
    `counts` minus `deleted` (`truth.at_source`).
    """
    deleted = record.setdefault("deleted", {})
    for name, keys in tick.deleted.items():
        deleted[name] = deleted.get(name, []) + keys
