"""Marketing on HubSpot's CRM API v3: contacts the hub writes; it is not read.

`POST /crm/v3/objects/contacts/batch/upsert` by email (`idProperty: email`, ≤ 100 a call) with a
private app's bearer token; inputs HubSpot refuses come back in `errors` (a `207`).
"""

from __future__ import annotations

import httpx

from integration_hub.systems import Credential, System
from integration_hub.systems.kit.writer import BearerTokenWriter, Outcome, Record, json_body

NAME = "marketing"


class MarketingContacts(BearerTokenWriter):
    """`contacts/batch/upsert` by email (≤ 100); rejected inputs come back in `errors`."""

    system, object, max_batch, key_field = NAME, "contacts", 100, "email"

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        inputs = [
            {"id": r.payload[self.key_field], "idProperty": "email", "properties": r.payload} for r in records
        ]
        body = json_body(self.post(http, "/crm/v3/objects/contacts/batch/upsert", {"inputs": inputs}))
        by_email = {r.payload[self.key_field]: r.key for r in records}
        outcomes = [
            Outcome(by_email[e["id"]], False, e.get("message") or "rejected") for e in body.get("errors", [])
        ]
        for res in body.get("results", []):
            email = res.get("properties", {}).get("email") or res["id"]
            outcomes.append(Outcome(by_email.get(email, email), True, None, str(res["id"])))
        return outcomes


SYSTEM = System(
    name=NAME,
    description="The marketing tool (HubSpot CRM API v3): contacts for campaigns.",
    sandbox_port=5,
    credentials={"api_key": Credential("HUB_MARKETING_API_KEY", sandbox="hs_sandbox_key")},
    writers={"contacts": MarketingContacts},
)
