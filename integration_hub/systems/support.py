"""The support desk (Zendesk-like): orders the hub writes so agents see them; it is not read.

`orders/create_or_update_many` (≤ 100 a call, matched by `external_id`).
"""

from __future__ import annotations

import httpx

from integration_hub.systems import Credential, System
from integration_hub.systems.kit.writer import BearerTokenWriter, Outcome, Record, json_body

NAME = "support"
DONE = ("Created", "Updated")


class SupportOrders(BearerTokenWriter):
    """`orders/create_or_update_many` (≤ 100, match `external_id`)."""

    system, object, max_batch, key_field = NAME, "orders", 100, "external_id"

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        body = json_body(
            self.post(http, "/api/v2/orders/create_or_update_many", {"orders": [r.payload for r in records]})
        )
        by_id = {str(r.payload[self.key_field]): r.key for r in records}
        return [
            Outcome(
                by_id[str(res["external_id"])],
                res.get("status") in DONE,
                res.get("error") if res.get("status") not in DONE else None,
                str(res["id"]) if res.get("id") is not None else None,
            )
            for res in body["results"]
        ]


SYSTEM = System(
    name=NAME,
    description="The support desk (Zendesk-like): agents see every order with its status and total.",
    sandbox_port=4,
    credentials={"api_token": Credential("HUB_SUPPORT_API_TOKEN", sandbox="zd_sandbox_token")},
    writers={"orders": SupportOrders},
)
