"""The point-of-sale system (store tills): loyalty members who sign up at a store.

API key in `X-Api-Key` (`SOURCES__POS__API_KEY`), offset pagination (`limit`/`offset`),
incremental on `updated_at` through `updated_since` (inclusive) / `updated_before` (exclusive).
"""

from __future__ import annotations

import dlt
from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from dlt.sources.helpers.rest_client.paginators import OffsetPaginator
from dlt.sources.rest_api import rest_api_source

from integration_hub.adapters._contract import INTEGER, TIMESTAMP, Contract, Rejects, guarded
from integration_hub.adapters._rest import iso, session

SYSTEM = "pos"
INCREMENTAL = True
DESCRIPTIONS = {"members": "Loyalty members signed up at a store till, one per member card."}
CONTRACTS = {"members": Contract("member_id", {"member_id": INTEGER, "updated_at": TIMESTAMP})}
EPOCH = "1970-01-01T00:00:00Z"


def source(
    base_url: str,
    api_key: str | None = None,
    start=None,
    end=None,
    page_size: int = 100,
    rejects: Rejects | None = None,
) -> dlt.sources.DltSource:
    """Members changed in [start, end); no bounds = since the stored cursor."""
    src = rest_api_source(
        {
            "client": {
                "base_url": base_url,
                # A secret resolved by dlt from the environment, never written in code or config.
                "auth": APIKeyAuth(
                    name="X-Api-Key", api_key=api_key or dlt.secrets["sources.pos.api_key"], location="header"
                ),
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
        name=SYSTEM,
    )
    return guarded(src, CONTRACTS, rejects)
