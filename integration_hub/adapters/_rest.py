"""HTTP plumbing the REST adapters share: a retrying session that says when it retries,
and OAuth2 client credentials that re-authenticate when the server expires a token early.

Retries follow dlt's runtime configuration (`RUNTIME__REQUEST_MAX_ATTEMPTS`,
`RUNTIME__REQUEST_BACKOFF_FACTOR`, `RUNTIME__REQUEST_MAX_RETRY_DELAY`): 429 and 5xx answers
and dropped connections are retried, waiting what `Retry-After` asks for when it is sent.
"""

from __future__ import annotations

import logging
from typing import Any

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.requests.retry import DEFAULT_RETRY_EXCEPTIONS, DEFAULT_RETRY_STATUS
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
from requests import PreparedRequest, Response

log = logging.getLogger("integration_hub.adapters")

RETRIED_STATUS = DEFAULT_RETRY_STATUS
RETRIED_EXCEPTIONS = DEFAULT_RETRY_EXCEPTIONS


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
    """A requests session with dlt's retry policy (read from dlt's runtime config) that logs retries."""
    return Client(
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
