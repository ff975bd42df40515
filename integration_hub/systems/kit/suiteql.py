"""NetSuite's SuiteQL REST service as Arrow tables: a query per record, its pages, its typed columns.

`POST /services/rest/query/v1/suiteql` with `{"q": …}`, `Prefer: transient` and `limit`/`offset`
paging while `hasMore`, signed with token-based authentication (OAuth 1.0a HMAC-SHA256, the
account id as realm, requests-oauthlib), through the hub's retrying, verifying session
(`kit/rest.py`). SuiteQL answers every value as text and leaves null fields out; `arrow` types
them by the record's declaration. A system maps its tables to records (`Record`) and calls
`query` and `tables`; it knows nothing of the HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from requests_oauthlib import OAuth1

from integration_hub.systems.kit.rest import _ahead, session

PATH = "/services/rest/query/v1/suiteql"
PAGE = 1000  # NetSuite's largest `limit`
BATCH = 20_000  # rows joined into one Arrow table (dlt's cost is per table, not per row)
STAMP = "YYYY-MM-DD HH24:MI:SS"  # TO_CHAR / TO_TIMESTAMP: SuiteQL's default date format drops the time
DAY = "YYYY-MM-DD"


class SuiteqlRefused(RuntimeError):
    """NetSuite answered an error: the message has its status, `o:errorCode` and detail."""


@dataclass(frozen=True)
class Record:
    """A table as a NetSuite record: `fields` maps each column to (SuiteQL field, Arrow type);
    `scope` is a condition every query of it carries (e.g. `type = 'SalesOrd'`)."""

    name: str
    fields: dict[str, tuple[str, pa.DataType]]
    scope: str = ""


@dataclass(frozen=True)
class TokenAuth:
    """Token-based authentication: the account id (the OAuth realm), the integration record's
    consumer key/secret and the access token's id/secret."""

    account_id: str = ""
    consumer_key: str = ""
    consumer_secret: str = ""
    token_id: str = ""
    token_secret: str = ""

    def missing(self) -> list[str]:
        return [name for name, value in vars(self).items() if not value]

    def signer(self) -> OAuth1:
        return OAuth1(
            self.consumer_key,
            client_secret=self.consumer_secret,
            resource_owner_key=self.token_id,
            resource_owner_secret=self.token_secret,
            signature_method="HMAC-SHA256",
            realm=self.account_id,
        )


def query(record: Record, columns: list[str], cursor: str, keys: list[str], since=None, before=None) -> str:
    """The SuiteQL of `record`'s `columns` whose `cursor` column is in [since, before), ordered by
    `keys`. Bounds are whole seconds, `since` rounded down and `before` up: the caller filters
    the rows exactly (dlt's incremental), so the query may only read more, never less."""
    items = []
    for column in columns:
        field, kind = record.fields[column]
        text = STAMP if pa.types.is_timestamp(kind) else DAY if pa.types.is_date(kind) else None
        items.append(f"TO_CHAR({field}, '{text}') AS {field}" if text else field)
    conditions = [record.scope] if record.scope else []
    stamp = record.fields[cursor][0]
    for op, bound, up in ((">=", since, False), ("<", before, True)):
        if bound is not None:
            conditions.append(f"{stamp} {op} TO_TIMESTAMP('{_whole_second(bound, up)}', '{STAMP}')")
    return (
        f"SELECT {', '.join(items)} FROM {record.name}"
        + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        + f" ORDER BY {', '.join(record.fields[k][0] for k in keys)}"
    )


def _whole_second(value, up: bool) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    whole = value.replace(microsecond=0)
    if up and whole < value:
        whole += dt.timedelta(seconds=1)
    return whole.strftime("%Y-%m-%d %H:%M:%S")


def pages(url: str, token: TokenAuth, text: str, limit: int = PAGE) -> Iterator[dict]:
    """Each answer page of the query `text` (`items`, `hasMore`, `totalResults`…), `limit` items a page."""
    http, signer, offset = session(), token.signer(), 0
    while True:
        response = http.post(
            url.rstrip("/") + PATH,
            params={"limit": limit, "offset": offset},
            json={"q": text},
            headers={"Prefer": "transient"},
            auth=signer,
        )
        if response.status_code >= 400:
            raise SuiteqlRefused(f"SuiteQL at {url}: {_error(response)}")
        page = response.json()
        yield page
        if not page.get("hasMore"):
            return
        offset += len(page["items"])


def _error(response) -> str:
    """`HTTP 401 INVALID_LOGIN: detail` from NetSuite's error body (its first error detail)."""
    try:
        detail = (response.json().get("o:errorDetails") or [{}])[0]
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code} {response.text[:200]}"
    return f"HTTP {response.status_code} {detail.get('o:errorCode')}: {str(detail.get('detail'))[:300]}"


def tables(url: str, token: TokenAuth, record: Record, columns: list[str], text: str) -> Iterator[pa.Table]:
    """The rows of the query `text` (selecting `columns` of `record`) as typed Arrow tables of
    about `BATCH` rows; pages are fetched on a thread, ahead of their shaping."""
    batch: list[dict] = []
    for page in _ahead(pages(url, token, text)):
        batch += page["items"]
        if batch and (len(batch) >= BATCH or not page.get("hasMore")):
            yield arrow(record, columns, batch)
            batch = []


def arrow(record: Record, columns: list[str], items: list[dict]) -> pa.Table:
    """SuiteQL items (text values, nulls left out) as a table of the record's column types."""
    return pa.table(
        {
            column: pa.array([item.get(record.fields[column][0]) for item in items], pa.string()).cast(
                record.fields[column][1]
            )
            for column in columns
        }
    )
