"""What every sandbox REST system shares: store, faults, statistics, paging, batch upserts, admin.

`system_app` builds a FastAPI app over a system's record store with the fault
middleware (`faults.py`) and the `/_admin` router; each system module adds only its own
endpoints, from these helpers and those of `api.py`. List pages splice the stored JSON
bodies into the answer (`page_response`) instead of parsing and re-encoding every
record, so that serving a page costs little more than reading it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hub_sandbox.api import ApiError, json_body, now_ts
from hub_sandbox.faults import FaultMiddleware, Faults
from hub_sandbox.store import Store


@dataclass
class Stats:
    requests: int = 0
    writes: int = 0
    records_written: int = 0
    by_path: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "writes": self.writes,
            "records_written": self.records_written,
            "by_path": dict(self.by_path),
        }


@dataclass
class System:
    """One running system: its name, store, faults and request statistics."""

    name: str
    store: Store
    faults: Faults
    stats: Stats = field(default_factory=Stats)


def admin_router(system: System) -> APIRouter:
    router = APIRouter(prefix="/_admin")

    @router.get("/health")
    async def health() -> dict:
        return {"system": system.name, "status": "ok", "records": system.store.counts(), "pid": os.getpid()}

    @router.get("/faults")
    async def faults() -> dict:
        return {"system": system.name, "faults": system.faults.describe()}

    @router.post("/faults")
    async def set_fault(request: Request) -> dict:
        body = await json_body(request)
        if not isinstance(body.get("profile"), str):
            raise ApiError(400, "invalid_request", 'body must be {"profile": NAME, ...params}')
        params = {k: v for k, v in body.items() if k != "profile"}
        system.faults.set(body["profile"], params)
        return {"system": system.name, "faults": system.faults.describe()}

    @router.delete("/faults")
    async def clear_faults(profile: str | None = None) -> dict:
        system.faults.clear(profile)
        return {"system": system.name, "faults": system.faults.describe()}

    @router.get("/stats")
    async def stats() -> dict:
        return system.stats.as_dict()

    @router.delete("/stats")
    async def reset_stats() -> dict:
        system.stats = Stats()
        return system.stats.as_dict()

    return router


def batch_of(body: dict, name: str, limit: int) -> list[dict]:
    """The list `body[name]` of a batch write, at most `limit` objects (413 beyond)."""
    items = body.get(name)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ApiError(400, "invalid_request", f'body must be {{"{name}": [objects]}}')
    if len(items) > limit:
        raise ApiError(413, "too_many_records", f"{len(items)} {name} in one call; the limit is {limit}")
    return items


def keyset_page(
    system: System,
    resource: str,
    cursor: dict | None,
    since: str | None,
    before: str | None,
    limit: int,
    include_deleted: bool = False,
) -> tuple[list[str], dict | None]:
    """One page (JSON bodies) ordered by (updated, id) and the cursor of the next page (None on the last).

    The cursor carries the filters (soft-deleted records included or not), so following it
    needs no other parameter.
    """
    if cursor is not None:
        since, before, after = cursor.get("s"), cursor.get("b"), cursor.get("a")
        include_deleted = bool(cursor.get("d"))
    else:
        after = None
    rows = system.store.page_after(
        resource, tuple(after) if after else None, limit + 1, since, before, include_deleted
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = {"s": since, "b": before, "a": [rows[-1][0], rows[-1][1]]} if more else None
    if nxt and include_deleted:
        nxt["d"] = True
    return system.faults.shape_bodies(resource, [r[2] for r in rows]), nxt


def page_response(key: str, bodies: Sequence[str], extra: dict | None = None, headers=None) -> Response:
    """`{key: [bodies...], **extra}` with the records' stored JSON spliced in as they are."""
    rest = json.dumps(extra, separators=(",", ":"))[1:] if extra else "}"
    text = f"{{{json.dumps(key)}:[{','.join(bodies)}]{',' if extra else ''}{rest}"
    return Response(text.encode(), media_type="application/json", headers=headers)


@dataclass
class Upserted:
    """What a batch upsert did with one input: the stored record, or why it failed."""

    item: dict
    key: Any
    record: dict | None = None
    created: bool = False
    errors: list[str] = field(default_factory=list)


def batch_upsert(
    system: System,
    resource: str,
    items: list[dict],
    *,
    match: Callable[[dict], tuple[Any, list[str]]],
    new: Callable[[int, str], dict],
    merge: Callable[[dict, dict, Any, str], dict],
    rejected: str,
    first_number: Callable[[], int] | None = None,
    id_field: str = "id",
    note_created: bool = False,
) -> list[Upserted]:
    """Upsert `items` by match key in one write; every system's batch endpoint answers from the outcomes.

    `match(item)` gives the match key and the item's errors; `new(number, stamp)` a record
    not stored yet (numbered on from `first_number()` when the store remembers no number,
    by default after the stored records); `merge(current, item, key, stamp)` the
    record to store. A key the `reject_writes` fault picks fails with `rejected`; an item
    repeated in a batch updates what the batch wrote before it. With `note_created`, the
    records the batch creates are noted in the store's `api_created` with their match key
    (for the sandbox's truth, which follows them).
    """
    outcomes, pending, created, stamp = [], {}, set(), now_ts()
    store = system.store
    number = store.next_number(resource, first_number or (lambda: store.count(resource) + 1))
    matched = [(item, *match(item)) for item in items]
    stored = store.find_many(resource, list({str(key) for _, key, errors in matched if not errors}))
    for item, key, errors in matched:
        if not errors and system.faults.rejects(key):
            errors = [rejected]
        if errors:
            outcomes.append(Upserted(item, key, errors=errors))
            continue
        current = pending.get(key) or stored.get(str(key))
        is_new = current is None
        if is_new:
            current, number = new(number, stamp), number + 1
            created.add(key)
        pending[key] = merge(current, item, key, stamp)
        outcomes.append(Upserted(item, key, pending[key], is_new))
    rows = [(r[id_field], k, stamp, r) for k, r in pending.items()]
    store.put(resource, rows, created={pending[k][id_field] for k in created} if note_created else ())
    store.numbered(resource, number)
    system.stats.records_written += len(pending)
    return outcomes


def system_app(name: str, home: Path, title: str, store: Any = None) -> tuple[FastAPI, System]:
    """A FastAPI app with the shared error handling, fault middleware and admin router, over the
    system's record store (or `store`: what else it serves, with `counts()` for the health check)."""
    system = System(name, store or Store(home / "sandbox" / f"{name}.sqlite"), Faults(name))
    app = FastAPI(title=title, openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, exc.status, exc.headers)

    app.include_router(admin_router(system))
    app.add_middleware(FaultMiddleware, system=system)
    app.state.system = system
    return app, system
