"""The point-of-sale system (store tills): loyalty members who sign up at a store.

API key in `X-Api-Key` (`HUB_POS_API_KEY`), offset pagination (`limit`/`offset`),
incremental on `updated_at` through `updated_since` (inclusive) / `updated_before` (exclusive).
"""

from __future__ import annotations

import dlt
from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from dlt.sources.helpers.rest_client.paginators import OffsetPaginator
from dlt.sources.rest_api import rest_api_source

from integration_hub.systems import Credential, System, TraceKeys
from integration_hub.systems.kit.contract import INTEGER, TIMESTAMP, Contract, Rejects, guarded
from integration_hub.systems.kit.rest import get_json, iso, session

NAME = "pos"
DESCRIPTIONS = {"members": "Loyalty members signed up at a store till, one per member card."}
CONTRACTS = {"members": Contract("member_id", {"member_id": INTEGER, "updated_at": TIMESTAMP})}
EPOCH = "1970-01-01T00:00:00Z"
PAGE = 100


def source(
    base_url: str, api_key: str, start=None, end=None, page_size: int = PAGE, rejects: Rejects | None = None
) -> dlt.sources.DltSource:
    """Members changed in [start, end); no bounds = since the stored cursor."""
    src = rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "auth": APIKeyAuth(name="X-Api-Key", api_key=api_key, location="header"),
                "paginator": OffsetPaginator(limit=page_size, total_path=None),
                "session": session(),
            },
            "resources": [
                {
                    "name": "members",
                    "primary_key": "member_id",
                    "write_disposition": "merge",
                    "endpoint": {
                        "path": "api/members",
                        "data_selector": "members",
                        "incremental": {
                            "start_param": "updated_since",
                            "end_param": "updated_before",
                            "cursor_path": "updated_at",
                            "initial_value": iso(start) or EPOCH,
                            "end_value": iso(end),
                        },
                    },
                }
            ],
        },
        name=NAME,
    )
    return guarded(src, CONTRACTS, rejects)


def count(base_url: str, api_key: str) -> dict[str, int]:
    """Members the POS holds now: it has no count endpoint, so its pages are counted."""
    total, offset, headers = 0, 0, {"X-Api-Key": api_key}
    while page := get_json(
        f"{base_url}/api/members", params={"limit": PAGE, "offset": offset}, headers=headers
    )["members"]:
        total, offset = total + len(page), offset + PAGE
    return {"members": total}


SYSTEM = System(
    name=NAME,
    description="The stores' point-of-sale system: loyalty members signed up at a till.",
    credentials={"api_key": Credential("HUB_POS_API_KEY")},
    resources=DESCRIPTIONS,
    source=source,
    schedule="hourly",
    raw_keys={"members": "member_id"},
    canonical_rows={"members": (None, "SELECT count(*) FROM canonical.customer_xref WHERE system = 'pos'")},
    count=count,
    trace=TraceKeys(customers=("members", "member_id")),
)
