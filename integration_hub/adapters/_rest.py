"""What the REST adapters share: one builder of their dlt sources, a retrying session that
says when it retries, and OAuth2 client credentials that re-authenticate when the server
expires a token early.

Every REST resource lands through Parquet files (`file_format`): dlt's default for DuckDB
and Postgres is INSERT statements, which loaded a 150 k-row page stream 20x slower than the
Parquet COPY (a Postgres warehouse without an ADBC driver falls back to INSERTs by itself).

Retries follow dlt's runtime configuration (`RUNTIME__REQUEST_MAX_ATTEMPTS`,
`RUNTIME__REQUEST_BACKOFF_FACTOR`, `RUNTIME__REQUEST_MAX_RETRY_DELAY`): 429 and 5xx answers
and dropped connections are retried, waiting what `Retry-After` asks for when it is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.common.json import json as dlt_json
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.requests.retry import DEFAULT_RETRY_EXCEPTIONS, DEFAULT_RETRY_STATUS
from dlt.sources.helpers.rest_client.auth import AuthConfigBase, OAuth2ClientCredentials
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.rest_api import rest_api_source
from requests import PreparedRequest, Response

from integration_hub.adapters._contract import Contract, Rejects, guarded

log = logging.getLogger("integration_hub.adapters")

RETRIED_STATUS = DEFAULT_RETRY_STATUS
RETRIED_EXCEPTIONS = DEFAULT_RETRY_EXCEPTIONS
EPOCH = "1970-01-01T00:00:00Z"


def _runtime(name: str, cast: type) -> Any:
    value = dlt.config.get(f"runtime.{name}")
    return cast(value) if value is not None else getattr(RuntimeConfiguration, name)


def _retryable(response: Response | None, exception: BaseException | None) -> bool:
    """dlt's retry rule (429, 5xx, dropped connections), saying in the log each time it applies."""
    if response is not None and response.status_code in RETRIED_STATUS:
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


def session():
    """A requests session with dlt's retry policy (read from dlt's runtime config) that logs retries.

    Its responses parse their JSON once, with dlt's (orjson) parser: dlt's client asks every
    page for `.json()` twice (records, then the paginator), and requests' parser is slower.
    """
    http = Client(
        raise_for_status=False,
        request_timeout=_runtime("request_timeout", float),
        request_max_attempts=_runtime("request_max_attempts", int),
        request_backoff_factor=_runtime("request_backoff_factor", float),
        request_max_retry_delay=_runtime("request_max_retry_delay", float),
        # The rule lives in one predicate so every retry is logged (tenacity stops at the first match).
        status_codes=(),
        exceptions=(),
        retry_condition=_retryable,
    ).session
    send = http.send
    # Not a response hook: dlt's client passes its own hooks per request, which replace the session's.
    http.send = lambda request, **kwargs: _parse_json_once(send(request, **kwargs))
    return http


def _parse_json_once(response: Response) -> Response:
    parsed: list = []

    def json(**_kwargs: Any) -> Any:
        if not parsed:
            parsed.append(dlt_json.loadb(response.content))
        return parsed[0]

    response.json = json  # type: ignore[method-assign]
    return response


@configspec
class ReauthenticatingClientCredentials(OAuth2ClientCredentials):
    """OAuth2 client credentials that fetch a new token and replay the request on `401 invalid_token`.

    dlt renews a token it knows to be expired; a server may expire one earlier (a shorter TTL,
    a revoked token, clock skew), so the 401 itself triggers one re-authentication.
    """

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request = super().__call__(request)
        request.register_hook("response", self._retry_on_expired_token)
        return request

    def _retry_on_expired_token(self, response: Response, **kwargs: Any) -> Response:
        if response.status_code != 401 or "invalid_token" not in response.text:
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
        return str(response.json().get("error_description", "invalid_token"))
    except ValueError:
        return "invalid_token"


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
    are the inclusive/exclusive filter parameters on `cursor` (the updated-at field).
    """

    path: str
    data_selector: str
    primary_key: str
    cursor: str
    since: str
    before: str
    params: Mapping[str, Any] | None = None


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
) -> dlt.sources.DltSource:
    """The system's resources (one per contract) changed in [start, end), guarded by their contracts.

    No bounds = since the stored cursor. `columns` types, per resource, fields the system
    fills only later, so their columns exist from the first load.
    """
    resources = [_resource(name, api, start, end, (columns or {}).get(name, {})) for name in contracts]
    client = {"base_url": base_url, "auth": auth, "paginator": paginator, "session": session()}
    src = rest_api_source({"client": client, "resources": resources}, name=system)
    return guarded(src, contracts, rejects)


def _resource(name: str, api: Api, start, end, columns: dict) -> dict:
    endpoint = {
        "path": api.path.format(name=name),
        "data_selector": api.data_selector.format(name=name),
        "incremental": {
            "start_param": api.since,
            "end_param": api.before,
            "cursor_path": api.cursor,
            "initial_value": iso(start) or EPOCH,
            "end_value": iso(end),
        },
    }
    if api.params:
        endpoint["params"] = dict(api.params)
    return {
        "name": name,
        "primary_key": api.primary_key,
        "write_disposition": "merge",
        "file_format": "parquet",
        "columns": columns,
        "endpoint": endpoint,
    }
