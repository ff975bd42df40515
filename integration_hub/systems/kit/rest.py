"""What the REST adapters share: one builder of their dlt sources, a retrying session that
says when it retries, and OAuth2 client credentials that re-authenticate when the server
expires a token early.

A system is declared as data (`Api`: path, selector, key, cursor, filter parameters) plus its
auth and paginator; `rest_source` makes one dlt resource per listing from dlt's `RESTClient`
and `dlt.sources.incremental`, as `rest_api_source` would, with what the declarative source
cannot say: pages are fetched one ahead on a thread (the system prepares the next page while
the last one is shaped) and joined into Arrow tables of `BATCH_RECORDS` records, checked
by contract column-wise (`arrow.contracted_table`) before dlt's cursor sees them and shaped
as dlt's JSON normalizer would land them after it (`arrow.LandingShape`), instead of dlt's
per-row normalizer (BENCHMARKS.md, "End to end").

Every REST resource lands through Parquet files (`file_format`): dlt's default for DuckDB
and Postgres is INSERT statements, which loaded a 150 k-row page stream 20x slower than the
Parquet COPY (a Postgres warehouse without an ADBC driver falls back to INSERTs by itself).

Retries follow dlt's runtime configuration (`RUNTIME__REQUEST_MAX_ATTEMPTS`,
`RUNTIME__REQUEST_BACKOFF_FACTOR`, `RUNTIME__REQUEST_MAX_RETRY_DELAY`, `RUNTIME__REQUEST_TIMEOUT`),
which dlt's requests `Client` reads itself: 429 and 5xx answers, dropped connections and timeouts
are retried, waiting what `Retry-After` asks for when it is sent.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from queue import Full, Queue
from typing import Any, ClassVar

import dlt
import orjson
import pyarrow as pa
from dlt.sources import DltResource
from dlt.sources.credentials import configspec
from dlt.sources.helpers import requests as dlt_requests
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import AuthConfigBase, OAuth2ClientCredentials
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import PreparedRequest, Response
from requests.exceptions import ChunkedEncodingError, ConnectionError, Timeout

from integration_hub.systems.kit import tls
from integration_hub.systems.kit.arrow import LandingShape, contracted_table
from integration_hub.systems.kit.contract import Contract, Rejects

log = logging.getLogger("integration_hub.systems")

# The rule dlt documents for its requests client ("Retry rules"): 429, every 5xx, connection
# errors and timeouts.
RETRIED_STATUS = (429, *range(500, 600))
RETRIED_EXCEPTIONS = (ConnectionError, Timeout, ChunkedEncodingError)
# Refusals that mean "too many requests now" although their status says otherwise (Salesforce
# answers its request limits with 403 REQUEST_LIMIT_EXCEEDED): retried like a 429.
RETRIED_ERROR_CODES = (b"REQUEST_LIMIT_EXCEEDED",)
# A 401 whose body says the token expired: re-authenticate once and replay (OAuth's
# `invalid_token`, Salesforce's `INVALID_SESSION_ID`).
EXPIRED_TOKEN_MARKS = ("invalid_token", "INVALID_SESSION_ID")
EPOCH = "1970-01-01T00:00:00Z"
# Pages are joined into Arrow tables of at least this many records: dlt's cost per item
# (schema, cursor, writer) is ~10 ms, a 1,000-record page's shaping ~2 ms.
BATCH_RECORDS = 20_000
# Where `LandingShape` goes in a resource's pipe: after its generator (0) and dlt's incremental (1).
AFTER_INCREMENTAL = 2


def _retryable(response: Response | None, exception: BaseException | None) -> bool:
    """dlt's retry rule (429, 5xx, dropped connections), saying in the log each time it applies."""
    if response is not None and (response.status_code in RETRIED_STATUS or limit_exceeded(response)):
        log.warning(
            "%s %s answered HTTP %s (Retry-After: %s); retrying while attempts last",
            response.request.method,
            response.request.path_url.split("?")[0],
            response.status_code,
            response.headers.get("Retry-After", "none"),
        )
        return True
    if isinstance(exception, RETRIED_EXCEPTIONS):
        log.warning(
            "request failed (%s: %.120s); retrying while attempts last", type(exception).__name__, exception
        )
        return True
    return False


def limit_exceeded(response: Any) -> bool:
    """A 403 that is a request limit (`RETRIED_ERROR_CODES`): worth retrying after a wait."""
    return response.status_code == 403 and any(code in response.content for code in RETRIED_ERROR_CODES)


def session():
    """A requests session with dlt's retry policy (read from dlt's runtime config) that logs retries,
    verifying certificates against the configured CA bundle (`kit/tls.py`).

    Its responses parse their JSON once, with orjson (dlt's own parser): dlt's client asks every
    page for `.json()` twice (records, then the paginator), and requests' parser is slower.
    """
    # Timeout, attempts, backoff and longest delay: the `Client` takes them from the `runtime` config.
    http = dlt_requests.Client(
        raise_for_status=False,
        # The rule lives in one predicate so every retry is logged (tenacity stops at the first match).
        status_codes=(),
        exceptions=(),
        retry_condition=_retryable,
    ).session
    http.verify = verify = tls.verify()
    merge = http.merge_environment_settings

    def merged(url, proxies, stream, verify_asked, cert):
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the session's `verify`: the
        # hub's one decision (`kit/tls.py`, where HUB_CA_BUNDLE comes first) must win instead.
        chosen = merge(url, proxies, stream, verify_asked, cert)
        if verify_asked is None:
            chosen["verify"] = verify
        return chosen

    http.merge_environment_settings = merged
    send = http.send
    # Not a response hook: dlt's client passes its own hooks per request, which replace the session's.
    http.send = lambda request, **kwargs: _parse_json_once(send(request, **kwargs))
    return http


def get_json(url: str, **kwargs: Any) -> Any:
    """One GET with the retrying session; an error answer (after retries) raises `HTTPError`."""
    response = session().get(url, **kwargs)
    response.raise_for_status()
    return response.json()


def _parse_json_once(response: Response) -> Response:
    parsed: list = []

    def json(**_kwargs: Any) -> Any:
        if not parsed:
            parsed.append(orjson.loads(response.content))
        return parsed[0]

    response.json = json  # type: ignore[method-assign]
    return response


@configspec
class ReauthenticatingClientCredentials(OAuth2ClientCredentials):
    """OAuth2 client credentials that fetch a new token and replay the request on a 401 that says
    the token expired.

    dlt renews a token it knows to be expired; a server may expire one earlier (a shorter TTL,
    a revoked token, clock skew), so the 401 itself triggers one re-authentication. A 401 is taken
    for an expired token when its body holds one of `expired_marks` (a system's own, where it differs).
    """

    expired_marks: ClassVar[tuple[str, ...]] = EXPIRED_TOKEN_MARKS

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request = super().__call__(request)
        request.register_hook("response", self._retry_on_expired_token)
        return request

    def _retry_on_expired_token(self, response: Response, **kwargs: Any) -> Response:
        if response.status_code != 401 or not any(mark in response.text for mark in self.expired_marks):
            return response
        log.warning("the access token was refused (%s); re-authenticating", _error_description(response))
        self.obtain_token()
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {self.access_token}"
        response.content  # noqa: B018 - drain the refused response so its connection is reused
        response.close()
        replay = response.connection.send(retry, **kwargs)
        replay.history.append(response)
        replay.request = retry
        return replay


def _error_description(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "invalid_token"
    if isinstance(body, list) and body and isinstance(body[0], dict):  # Salesforce's error list
        return str(body[0].get("errorCode", "invalid_token"))
    return str(body.get("error_description", "invalid_token")) if isinstance(body, dict) else "invalid_token"


def iso(value: Any) -> str | None:
    """A bound for a REST filter: `YYYY-MM-DDTHH:MM:SSZ` (UTC), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Api:
    """How one REST system lists its resources: where, under which key, filtered and paged how.

    `path` and `data_selector` are templates over `{name}` (the resource); `since`/`before`
    are the inclusive/exclusive filter parameters on `cursor` (the updated-at field). A system
    that filters in a query language instead gives `query(name, since, before)`, the request's
    parameters for a window (either bound may be None). `drop` names envelope fields every
    record carries that are not data (Salesforce's `attributes`).
    """

    path: str
    data_selector: str
    primary_key: str
    cursor: str
    since: str = ""
    before: str = ""
    params: Mapping[str, Any] | None = None
    query: Callable[[str, str | None, str | None], Mapping[str, Any]] | None = None
    drop: tuple[str, ...] = ()

    def window(self, name: str, since: str | None, before: str | None) -> dict[str, Any]:
        """The request parameters of the listing of `name` changed in [since, before)."""
        if self.query is not None:
            params = {**(self.params or {}), **self.query(name, since, before)}
        else:
            params = {**(self.params or {}), self.since: since, self.before: before}
        return {k: v for k, v in params.items() if v is not None}


def rest_source(
    system: str,
    api: Api,
    *,
    base_url: str,
    auth: AuthConfigBase,
    paginator: BasePaginator,
    contracts: Mapping[str, Contract],
    rejects: Rejects | None,
    start=None,
    end=None,
    columns: Mapping[str, dict] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dlt.sources.DltSource:
    """The system's resources (one per contract) changed in [start, end), checked by their contracts.

    No bounds = since the stored cursor. `columns` types, per resource, fields the system
    fills only later, so their columns exist from the first load; `headers` go with every request.
    """
    client = RESTClient(
        base_url=base_url, headers=dict(headers or {}), auth=auth, paginator=paginator, session=session()
    )
    sink = rejects if rejects is not None else Rejects()
    resources = [
        _resource(client, api, name, contract, sink, start, end, (columns or {}).get(name, {}))
        for name, contract in contracts.items()
    ]
    return dlt.source(name=system)(lambda: resources)()


def _resource(
    client: RESTClient, api: Api, name: str, contract: Contract, rejects: Rejects, start, end, columns: dict
) -> DltResource:
    """One listing as a dlt resource: pages fetched one ahead, batched into Arrow tables."""

    @dlt.resource(
        name=name,
        primary_key=api.primary_key,
        write_disposition="merge",
        file_format="parquet",
        columns=columns,
    )
    def records(
        changed=dlt.sources.incremental(api.cursor, initial_value=iso(start) or EPOCH, end_value=iso(end)),
    ) -> Iterator[pa.Table]:
        pages = client.paginate(
            api.path.format(name=name),
            params=api.window(name, changed.last_value, changed.end_value),
            data_selector=api.data_selector.format(name=name),
        )
        refused_before = len(rejects.by_resource[name])
        for batch in _batches(_ahead(pages), BATCH_RECORDS):
            for field in api.drop:
                for record in batch:
                    record.pop(field, None)
            table, refused = contracted_table(batch, contract)
            rejects.by_resource[name].extend(refused)
            if table.num_rows:
                yield table
        # Every row went through the cursor and the shaping by now (they run as each table is
        # yielded), so every refusal of this run is known: they hold the cursor.
        hold_cursor(api.cursor, changed.start_value, rejects.by_resource[name][refused_before:])

    return records.add_yield_map(LandingShape(name, contract.key, rejects), insert_at=AFTER_INCREMENTAL)


def hold_cursor(cursor: str, start_value: Any, refused: list[tuple[str, str, Any]]) -> None:
    """Keep the stored cursor at the earliest change a refused row carries, so the next run reads
    that row again (and every row changed since, merged by key: no duplicates) instead of never.

    A refused row is re-read on every run until the source sends it in a shape its contract
    takes (then it loads) or it changes no more (then it stays in quarantine, and the load's
    `load_contract` check says so on every run). A row whose own change time cannot be read
    holds the cursor where this run started. Called at the end of a resource's extraction.
    """
    if not refused:
        return
    state = dlt.current.resource_state().get("incremental", {}).get(cursor)
    if state is None:  # a window read (backfill) keeps no cursor
        return
    stamps = [row.get(cursor) if isinstance(row, Mapping) else None for _, _, row in refused]
    readable = [(instant, v) for v in stamps if (instant := _instant(v)) is not None]
    hold = min(readable)[1] if len(readable) == len(stamps) else start_value
    current, held = _instant(state.get("last_value")), _instant(hold)
    if held is None or (current is not None and current <= held):
        return
    log.warning(
        "%d row(s) refused by the contract hold the %s cursor at %s (it had reached %s): they are read "
        "again next run", len(refused), cursor, hold, state.get("last_value"),
    )  # fmt: skip
    state["last_value"] = hold
    state["unique_hashes"] = []  # the boundary rows of the later cursor are read again, merged by key


def _instant(value: Any) -> dt.datetime | None:
    """A cursor value as a UTC instant, or None when it is not one."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _batches(pages: Iterator[list], size: int) -> Iterator[list]:
    """Pages joined into lists of at least `size` records (the last one smaller)."""
    batch: list = []
    for page in pages:
        batch.extend(page)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _ahead(pages: Iterator[list], depth: int = 2) -> Iterator[list]:
    """`pages`, fetched on a thread up to `depth` pages ahead: the system prepares the next
    page while this process shapes the last one. An error is raised where it is reached."""
    queue: Queue = Queue(depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.2)
                return True
            except Full:
                continue
        return False

    def fetch() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
        except BaseException as exc:  # handed to the consumer
            put(exc)
            return
        put(done)

    worker = threading.Thread(target=fetch, name="rest-pages", daemon=True)
    worker.start()
    try:
        while (page := queue.get()) is not done:
            if isinstance(page, BaseException):
                raise page
            yield page
    finally:
        stop.set()
        worker.join()
