"""Reading the support desk back through its own API (Zendesk's incremental ticket export), as
the orders its tickets carry: what the tests compare with what the hub sent."""

from __future__ import annotations

import httpx
from hub_sandbox import secret

from integration_hub.systems.support import FIELDS

ORDER_FIELDS = {title: name for name, title in FIELDS.items()}


def auth() -> tuple[str, str]:
    """Zendesk's `{email}/token:{api_token}` basic auth, with the credentials the desk expects."""
    return f"{secret('HUB_SUPPORT_EMAIL')}/token", secret("HUB_SUPPORT_API_TOKEN")


def desk_tickets(box) -> list[dict]:
    """Every ticket on the desk, through the cursor-based incremental export from the epoch."""
    tickets, params = [], {"start_time": 0}
    while True:
        body = (
            httpx.get(
                f"{box.url('support')}/api/v2/incremental/tickets/cursor.json",
                params=params,
                auth=auth(),
                timeout=30,
            )
            .raise_for_status()
            .json()
        )
        tickets += body["tickets"]
        if body["end_of_stream"]:
            return tickets
        params = {"cursor": body["after_cursor"]}


def field_titles(box) -> dict[int, str]:
    body = (
        httpx.get(f"{box.url('support')}/api/v2/ticket_fields", auth=auth(), timeout=30)
        .raise_for_status()
        .json()
    )
    return {f["id"]: f["title"] for f in body["ticket_fields"]}


def as_order(ticket: dict, titles: dict[int, str]) -> dict:
    """The order fields a ticket carries (the desk answers decimals as text)."""
    order = {"external_id": ticket["external_id"]}
    for field in ticket["custom_fields"]:
        name = ORDER_FIELDS.get(titles.get(field["id"], ""))
        if name:
            value = field["value"]
            order[name] = float(value) if name == "total" and value is not None else value
    return order


def support_orders(box) -> list[dict]:
    """Every ticket on the desk as the order it carries."""
    titles = field_titles(box)
    return [as_order(t, titles) for t in desk_tickets(box)]
