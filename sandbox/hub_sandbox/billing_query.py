"""QuickBooks Online's query and change-data-capture endpoints over the billing store
(the reads of `hub_sandbox.billing`, whose docstring says what is served)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from hub_sandbox import billing as qbo  # a module, read at call time: it imports this one
from hub_sandbox.api import TS_FORMAT
from hub_sandbox.app import System

MAX_RESULTS = 1000
CDC_LIMIT = 1000
_QUERY = re.compile(
    r"^\s*select\s+(?P<what>\*|count\(\s*\*\s*\))\s+from\s+(?P<entity>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?(?:\s+orderby\s+(?P<order>[\w.]+(?:\s+(?:asc|desc))?))?"
    r"(?:\s+startposition\s+(?P<start>\d+))?(?:\s+maxresults\s+(?P<max>\d+))?\s*$",
    re.I | re.S,
)
_CONDITION = re.compile(
    r"^\s*(?P<field>[\w.]+)\s*(?P<op>>=|<=|=|>|<|\bin\b)\s*(?P<value>'[^']*'|\([^)]*\))\s*$", re.I
)


def add_query(app: FastAPI, system: System, authorize: Callable[[Request, str], None]) -> None:
    """The query endpoint, by GET (`?query=`) or POST (the query as the body, `application/text`)."""
    # (entity, since, before, start position) -> the (updated_at, id) the page before it ended at
    positions: dict[tuple, tuple[str, str]] = {}

    async def answer(request: Request, realm: str, text: str | None) -> Response:
        authorize(request, realm)
        match = _QUERY.match(text or "")
        if match is None:
            raise qbo.fault(400, "ValidationFault", "4000", "Error parsing query",
                        f"QueryParserError: cannot read {str(text)[:200]!r}")  # fmt: skip
        entity = match["entity"]
        if entity not in qbo.ENTITIES:
            raise qbo.fault(400, "ValidationFault", "4000", "Error parsing query",
                        f"QueryParserError: entity {entity!r} is not served here ({', '.join(qbo.ENTITIES)})")  # fmt: skip
        resource = qbo.ENTITIES[entity]
        since, before, ids = _conditions(match["where"])
        if match["what"] != "*":
            total = len(_by_ids(system, resource, ids, since, before)) if ids is not None else (
                system.store.count(resource, since, before))  # fmt: skip
            return _query_response({"totalCount": total})
        start = int(match["start"] or 1)
        size = int(match["max"] or 100)
        if start < 1 or not 1 <= size <= MAX_RESULTS:
            raise qbo.validation(f"STARTPOSITION must be >= 1 and MAXRESULTS 1..{MAX_RESULTS}", "4001")
        if ids is not None:
            bodies = _by_ids(system, resource, ids, since, before)[start - 1 : start - 1 + size]
        else:
            key = (resource, since, before)
            after = positions.get((*key, start))
            rows = (
                system.store.page_after(resource, after, size, since, before)
                if after
                else system.store.page_offset(resource, start - 1, size, since, before)
            )
            if len(positions) > 10_000:
                positions.clear()
            if len(rows) == size:
                positions[(*key, start + size)] = (rows[-1][0], rows[-1][1])
            bodies = [r[2] for r in rows]
        bodies = system.faults.shape_bodies(resource, bodies)
        extra = {"startPosition": start, "maxResults": len(bodies)} if bodies else {}
        return _query_response(extra, entity, bodies)

    @app.get("/v3/company/{realm}/query")
    async def query_get(request: Request, realm: str) -> Response:
        return await answer(request, realm, request.query_params.get("query"))

    @app.post("/v3/company/{realm}/query")
    async def query_post(request: Request, realm: str) -> Response:
        return await answer(request, realm, (await request.body()).decode(errors="replace"))


def _conditions(where: str | None) -> tuple[str | None, str | None, list[str] | None]:
    """The WHERE clause as (since, before) store bounds on LastUpdatedTime and the Ids asked for."""
    since, before, ids = None, None, None
    for part in re.split(r"\s+and\s+", where or "", flags=re.I) if where else []:
        cond = _CONDITION.match(part)
        if cond is None:
            raise qbo.fault(
                400, "ValidationFault", "4000", "Error parsing query", f"QueryParserError: {part[:120]!r}"
            )
        field, op, value = cond["field"], cond["op"].lower(), cond["value"]
        if field.lower() == "id" and op in ("=", "in"):
            ids = (
                [v.strip().strip("'") for v in value.strip("()").split(",")]
                if op == "in"
                else [value.strip("'")]
            )
        elif field.lower() == "metadata.lastupdatedtime" and op in (">", ">=", "<", "<="):
            bound = _bound(value.strip("'"), op)
            if op.startswith(">"):
                since = max(since or bound, bound)
            else:
                before = min(before or bound, bound)
        else:
            raise qbo.validation(f"property {field!r} with {op!r} is not queryable here "
                             "(MetaData.LastUpdatedTime: > >= < <=; Id: = IN)", "4001")  # fmt: skip
    return since, before, ids


def _bound(value: str, op: str) -> str:
    """A time condition as a store bound: `>`/`>=` the first whole second kept (inclusive),
    `<`/`<=` the first second left out (exclusive); stored times are whole seconds."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise qbo.validation(f"MetaData.LastUpdatedTime: not a date-time: {value[:40]!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    whole = parsed.replace(microsecond=0)
    # `>` and `<=` start after the second named; `>=` and `<` at it, unless it is not a whole one.
    after = op in (">", "<=") or whole != parsed
    return (whole + dt.timedelta(seconds=1) if after else whole).strftime(TS_FORMAT)


def _by_ids(
    system: System, resource: str, ids: list[str], since: str | None, before: str | None
) -> list[str]:
    bodies = []
    for record_id in ids:
        body = system.store.get(resource, record_id)
        stamp = body and body["MetaData"]["LastUpdatedTime"]
        if (
            body
            and (since is None or _store_ts(stamp) >= since)
            and (before is None or _store_ts(stamp) < before)
        ):
            bodies.append(json.dumps(body, separators=(",", ":")))
    return bodies


def _store_ts(stamp: str) -> str:
    return dt.datetime.fromisoformat(stamp).astimezone(dt.UTC).strftime(TS_FORMAT)


def _query_response(extra: dict, entity: str | None = None, bodies: list[str] | None = None) -> Response:
    """`{"QueryResponse": {entity: [bodies…], **extra}, "time": …}`, the stored bodies spliced in."""
    inner = json.dumps(extra, separators=(",", ":"))[1:-1]
    records = f'"{entity}":[{",".join(bodies)}]' if bodies else ""
    text = f'{{"QueryResponse":{{{records}{"," if records and inner else ""}{inner}}},"time":"{qbo.now()}"}}'
    return Response(text.encode(), media_type="application/json")


def add_cdc(app: FastAPI, system: System, authorize: Callable[[Request, str], None]) -> None:
    """Changed and deleted records since a time, oldest first, at most `CDC_LIMIT` in all."""

    @app.get("/v3/company/{realm}/cdc")
    async def cdc(request: Request, realm: str) -> Response:
        authorize(request, realm)
        params = request.query_params
        names = [e.strip() for e in (params.get("entities") or "").split(",") if e.strip()]
        if not names or (unknown := [e for e in names if e not in qbo.ENTITIES]):
            raise qbo.validation(f"entities: a comma-separated list of {', '.join(qbo.ENTITIES)}"
                             + (f" (not served: {', '.join(unknown)})" if names else ""), "4001")  # fmt: skip
        if not params.get("changedSince"):
            raise qbo.validation("changedSince is required", "4001")
        since = _bound(params["changedSince"], ">=")
        found = []  # (time, entity, body JSON)
        for entity in names:
            resource = qbo.ENTITIES[entity]
            rows = system.store.page_after(resource, None, CDC_LIMIT, since, None)
            bodies = system.faults.shape_bodies(resource, [r[2] for r in rows])
            found += [(r[0], entity, b) for r, b in zip(rows, bodies, strict=True)]
            for at, _seq, record_id, _label in system.store.deletions_after(
                resource, None, CDC_LIMIT, since, None
            ):
                stub = {"domain": "QBO", "status": "Deleted", "Id": record_id,
                        "MetaData": {"LastUpdatedTime": qbo.qbo_time(at)}}  # fmt: skip
                found.append((at, entity, json.dumps(stub, separators=(",", ":"))))
        found.sort(key=lambda f: f[0])
        found = found[:CDC_LIMIT]
        answers = []
        for entity in names:
            bodies = [b for _, e, b in found if e == entity]
            answers.append(
                f'{{"{entity}":[{",".join(bodies)}],"startPosition":1,"maxResults":{len(bodies)}}}'
                if bodies
                else "{}"
            )
        text = f'{{"CDCResponse":[{{"QueryResponse":[{",".join(answers)}]}}],"time":"{qbo.now()}"}}'
        return Response(text.encode(), media_type="application/json")
