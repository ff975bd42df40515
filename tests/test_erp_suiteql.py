"""The ERP through NetSuite's SuiteQL REST service, beside its SQL-database path.

The `netsuite` SDK on PyPI always builds `https://{account}.suitetalk.api.netsuite.com` and cannot
be pointed at another base URL without patching it, so the documented request and response
shapes are tested here with plain requests and requests-oauthlib's OAuth 1.0a signer, as any
client signs NetSuite's token-based authentication (docs/sandbox.md).
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import dlt
import duckdb
import pytest
import requests
from requests_oauthlib import OAuth1

from integration_hub import settings, systems
from integration_hub.systems import erp

PATH = "/services/rest/query/v1/suiteql"
SANDBOX_TBA = {
    "account_id": "1234567_SB1",
    "consumer_key": "hub-sandbox-consumer",
    "consumer_secret": "erp-sandbox-consumer-secret",
    "token_id": "hub-sandbox-token",
    "token_secret": "erp-sandbox-token-secret",
}


def signer(**changes: str) -> OAuth1:
    tba = SANDBOX_TBA | changes
    return OAuth1(
        tba["consumer_key"],
        client_secret=tba["consumer_secret"],
        resource_owner_key=tba["token_id"],
        resource_owner_secret=tba["token_secret"],
        signature_method="HMAC-SHA256",
        realm=tba["account_id"],
    )


def post(sandbox, q: str, auth=None, headers=None, **params) -> requests.Response:
    return requests.post(
        sandbox.url("erp") + PATH,
        params=params or None,
        json={"q": q},
        headers={"Prefer": "transient"} if headers is None else headers,
        auth=signer() if auth is None else auth,
        verify=sandbox.ca_bundle,
        timeout=30,
    )


def erp_rows(sandbox, sql: str) -> list[tuple]:
    with sqlite3.connect(sandbox.home / "sandbox" / "erp.sqlite") as con:
        return con.execute(sql).fetchall()


def test_a_suiteql_page_has_netsuites_shape_and_pages_while_has_more(sandbox):
    q = ("SELECT id, entityid, email, TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lastmodifieddate, "
         "datecreated FROM customer ORDER BY id")  # fmt: skip
    first = post(sandbox, q, limit=2)
    assert first.status_code == 200, first.text
    page = first.json()
    customers = sandbox.truth["counts"]["erp.customers"]
    assert set(page) == {"links", "count", "hasMore", "items", "offset", "totalResults"}
    assert (page["count"], page["hasMore"], page["offset"], page["totalResults"]) == (2, True, 0, customers)
    assert [link["rel"] for link in page["links"]] == ["self", "next"]
    assert page["links"][1]["href"].endswith(f"{PATH}?limit=2&offset=2")
    (number, email, stamp, created), *_ = erp_rows(
        sandbox, "SELECT account_number, email, updated_at, created_at FROM customers ORDER BY customer_id"
    )
    # Every value is text; a date-time without TO_CHAR is NetSuite's default date format (no time).
    day = created[:10].split("-")
    assert page["items"][0] == {
        "links": [], "id": "1", "entityid": number, "email": email, "lastmodifieddate": stamp,
        "datecreated": f"{int(day[1])}/{int(day[2])}/{day[0]}",
    }  # fmt: skip

    # Offset paging while hasMore reads every customer once, in key order.
    ids, offset, pages = [], 0, 0
    while True:
        page = post(sandbox, "SELECT id FROM customer ORDER BY id", limit=1000, offset=offset).json()
        ids += [int(item["id"]) for item in page["items"]]
        pages += 1
        if not page["hasMore"]:
            break
        offset += page["count"]
    assert ids == [r[0] for r in erp_rows(sandbox, "SELECT customer_id FROM customers ORDER BY customer_id")]
    assert pages == -(-customers // 1000) > 1

    # The incremental filter the hub sends: the same rows as the database's own filter.
    since = erp_rows(sandbox, "SELECT updated_at FROM sales_orders ORDER BY updated_at LIMIT 1 OFFSET 9000")[
        0
    ][0]
    changed = post(
        sandbox,
        f"SELECT id FROM transaction WHERE type = 'SalesOrd' AND lastmodifieddate >= "
        f"TO_TIMESTAMP('{since}', 'YYYY-MM-DD HH24:MI:SS')",
        limit=1,
    ).json()
    assert (
        changed["totalResults"]
        == erp_rows(sandbox, f"SELECT count(*) FROM sales_orders WHERE updated_at >= '{since}'")[0][0]
        > 0
    )
    assert (
        post(sandbox, "SELECT id FROM transaction WHERE type = 'Invoice'", limit=1).json()["totalResults"]
        == 0
    )


def _detail(response: requests.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"type", "title", "status", "o:errorDetails"}
    assert body["status"] == response.status_code
    return response.status_code, body["o:errorDetails"][0]["o:errorCode"]


def test_requests_without_a_valid_token_signature_are_refused_with_netsuites_error(sandbox):
    q = "SELECT id FROM customer"
    assert _detail(post(sandbox, q, auth=False)) == (401, "INVALID_LOGIN")
    assert _detail(post(sandbox, q, auth=signer(consumer_secret="guessed"))) == (401, "INVALID_LOGIN")
    assert _detail(post(sandbox, q, auth=signer(token_secret="guessed"))) == (401, "INVALID_LOGIN")
    assert _detail(post(sandbox, q, auth=signer(account_id="7654321"))) == (401, "INVALID_LOGIN")
    # A signature over other parameters than those sent (a tampered offset) does not verify.
    tampered = requests.Request(
        "POST", sandbox.url("erp") + PATH, params={"limit": 5}, json={"q": q},
        headers={"Prefer": "transient"}, auth=signer(),
    ).prepare()  # fmt: skip
    tampered.url += "&offset=5"
    with requests.Session() as http:
        assert _detail(http.send(tampered, verify=sandbox.ca_bundle)) == (401, "INVALID_LOGIN")
        # The same signed request twice: the nonce is not taken again.
        once = requests.Request("POST", sandbox.url("erp") + PATH, json={"q": q},
                                headers={"Prefer": "transient"}, auth=signer()).prepare()  # fmt: skip
        assert http.send(once, verify=sandbox.ca_bundle).status_code == 200
        assert _detail(http.send(once, verify=sandbox.ca_bundle)) == (401, "INVALID_LOGIN")


@pytest.mark.parametrize(
    ("q", "params", "headers", "code"),
    [
        ("SELECT * FROM customer", {}, None, "INVALID_PARAMETER"),
        ("SELECT id FROM employee", {}, None, "INVALID_PARAMETER"),
        ("SELECT salary FROM customer", {}, None, "INVALID_PARAMETER"),
        ("DELETE FROM customer", {}, None, "INVALID_PARAMETER"),
        ("SELECT id FROM customer WHERE id IN (1, 2)", {}, None, "INVALID_PARAMETER"),
        ("SELECT id FROM customer", {"limit": 1001}, None, "INVALID_PARAMETER"),
        ("SELECT id FROM customer", {}, {}, "INVALID_HEADER"),
    ],
)
def test_what_the_subset_does_not_speak_is_refused_as_netsuite_refuses_it(sandbox, q, params, headers, code):
    assert _detail(post(sandbox, q, headers=headers, **params)) == (400, code)


def test_the_erp_url_chooses_the_path_and_the_token_is_asked_for_suiteql_only(monkeypatch, sandbox):
    system = systems.get("erp")
    for name in ("HUB_ERP_URL", "HUB_ERP_ACCOUNT_ID", "HUB_ERP_CONSUMER_KEY"):
        monkeypatch.delenv(name, raising=False)
    on_database = system.client_kwargs("postgresql://erp.example.com/erp")
    assert on_database["url"].startswith("postgresql://") and on_database["consumer_key"] == ""
    assert system.client_kwargs(sandbox.url("erp"))["account_id"] == SANDBOX_TBA["account_id"]
    with pytest.raises(settings.ConfigError, match="HUB_ERP_ACCOUNT_ID is not set"):
        system.client_kwargs("https://1234567.suitetalk.api.netsuite.com")
    assert erp.suiteql_query(
        "sales_orders", "2026-11-01T10:00:00.5Z", "2026-11-02T00:00:00Z", ["order_id"]
    ) == (
        "SELECT id FROM transaction WHERE type = 'SalesOrd' AND "
        "lastmodifieddate >= TO_TIMESTAMP('2026-11-01 10:00:00', 'YYYY-MM-DD HH24:MI:SS') AND "
        "lastmodifieddate < TO_TIMESTAMP('2026-11-02 00:00:00', 'YYYY-MM-DD HH24:MI:SS') ORDER BY id"
    )
    with pytest.raises(RuntimeError, match="INVALID_LOGIN.*check HUB_ERP_URL"):
        erp.count(sandbox.url("erp"), **(SANDBOX_TBA | {"token_secret": "wrong"}))


def test_the_erp_through_suiteql_lands_the_same_raw_tables_as_through_sql(sandbox, tmp_path):
    system = systems.get("erp")
    landed = {}
    for path, location in (("sql", None), ("suiteql", sandbox.url("erp"))):
        pipeline = dlt.pipeline(
            f"erp_{path}", pipelines_dir=str(tmp_path),
            destination=dlt.destinations.duckdb(str(tmp_path / f"{path}.duckdb")), dataset_name="raw_erp",
        )  # fmt: skip
        pipeline.run(erp.source(**system.client_kwargs(location)))
        landed[path] = tmp_path / f"{path}.duckdb"
    truth = sandbox.truth["counts"]
    assert erp.count(**system.client_kwargs(sandbox.url("erp"))) == {
        t: truth[f"erp.{t}"] for t in erp.PRIMARY_KEYS
    }
    with duckdb.connect() as db:
        for path, file in landed.items():
            db.execute(f"ATTACH '{file}' AS {path} (READ_ONLY)")
        for table, key in erp.PRIMARY_KEYS.items():
            columns = [
                r[0] for r in db.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = 'sql' AND "
                    "schema_name = 'raw_erp' AND table_name = ? AND column_name NOT LIKE '_dlt%' "
                    "ORDER BY column_index", [table]).fetchall()
            ]  # fmt: skip
            suiteql_columns = [
                r[0] for r in db.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = 'suiteql' AND "
                    "schema_name = 'raw_erp' AND table_name = ? AND column_name NOT LIKE '_dlt%' "
                    "ORDER BY column_index", [table]).fetchall()
            ]  # fmt: skip
            assert suiteql_columns == columns, table
            listed = ", ".join(columns)
            counts = [db.execute(f"SELECT count(*) FROM {p}.raw_erp.{table}").fetchone()[0] for p in landed]
            assert counts == [truth[f"erp.{table}"]] * 2, table
            differ = db.execute(
                f"SELECT count(*) FROM (SELECT {listed} FROM sql.raw_erp.{table} "
                f"EXCEPT ALL SELECT {listed} FROM suiteql.raw_erp.{table})"
            ).fetchone()[0]
            assert differ == 0, f"{table}: {differ} rows differ between the SQL and SuiteQL loads (key {key})"


def test_the_raw_erp_assets_through_suiteql_land_the_truth_then_exactly_a_tick(make_sandbox, monkeypatch):
    """The hub's own path: the `raw/erp/*` assets (DuckDB, the Arrow sink) with HUB_ERP_URL at SuiteQL."""
    import dagster as dg

    from assets import ingestion
    from integration_hub.warehouse import Warehouse

    box = make_sandbox(export=True)
    monkeypatch.setenv("HUB_ERP_URL", box.url("erp"))
    erp_assets = [a for a in ingestion.build_assets() if any(k.path[1] == "erp" for k in a.keys)]
    instance, today = dg.DagsterInstance.ephemeral(), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")

    def load() -> dict[str, int]:
        result = dg.materialize(
            erp_assets, resources=ingestion.build_resources(), partition_key=today, instance=instance
        )
        assert result.success
        return {
            e.asset_key.path[2]: e.materialization.metadata["rows_loaded"].value
            for e in result.get_asset_materialization_events()
            if "rows_loaded" in e.materialization.metadata
        }

    first = load()
    assert first == {t: box.truth["counts"][f"erp.{t}"] for t in erp.PRIMARY_KEYS}
    with Warehouse().connect() as con:
        assert {t: con.scalar(f"SELECT count(DISTINCT {erp.PRIMARY_KEYS[t][0]}) FROM raw_erp.{t}")
                for t in ("customers", "products", "sales_orders")} == {
            t: box.truth["counts"][f"erp.{t}"] for t in ("customers", "products", "sales_orders")
        }  # fmt: skip
    tick = box.tick(0.01)["records"]
    changed = {
        t: tick[f"erp.{t}"]["new"] + tick[f"erp.{t}"]["changed"] if f"erp.{t}" in tick else 0
        for t in erp.PRIMARY_KEYS
    }
    assert load() == changed and changed["sales_orders"] > 0
