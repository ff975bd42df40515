"""The sandbox systems over real HTTP: auth, paging, filters and counts against the world's tables."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from hub_sandbox import CREDENTIALS as CREDS
from hub_sandbox import runner

SHOP = "/admin/api/2025-01"
CRM = "/services/data/v62.0"
CRM_OBJECTS = {"accounts": "Account", "contacts": "Contact"}


def crm_token(sandbox) -> str:
    answer = httpx.post(
        f"{sandbox.url('crm')}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": CREDS["HUB_CRM_CLIENT_ID"],
              "client_secret": CREDS["HUB_CRM_CLIENT_SECRET"]},
    )  # fmt: skip
    answer.raise_for_status()
    return answer.json()["access_token"]


def crm_pages(sandbox, resource: str, modified_since: str | None = None, include_deleted=False) -> list[dict]:
    """Every record of `resource` (changed at or after `modified_since`) through SOQL and its
    `nextRecordsUrl` pages, without the `attributes` envelope."""
    from hub_sandbox.soql import FIELDS

    sobject = CRM_OBJECTS[resource]
    q = f"SELECT {', '.join(FIELDS[sobject])} FROM {sobject}"
    if modified_since:
        q += f" WHERE SystemModstamp >= {modified_since}"
    headers = {"Authorization": f"Bearer {crm_token(sandbox)}", "Sforce-Query-Options": "batchSize=500"}
    url = f"{sandbox.url('crm')}{CRM}/{'queryAll' if include_deleted else 'query'}"
    rows, params = [], {"q": q}
    while True:
        body = httpx.get(url, params=params, headers=headers).raise_for_status().json()
        rows += [{k: v for k, v in r.items() if k != "attributes"} for r in body["records"]]
        if body["done"]:
            assert len(rows) == body["totalSize"]
            return rows
        url, params = f"{sandbox.url('crm')}{body['nextRecordsUrl']}", None


def crm_upsert(sandbox, records: list[dict]) -> httpx.Response:
    """sObject Collections upsert of accounts by AccountNumber (allOrNone=false)."""
    body = {"allOrNone": False, "records": [{"attributes": {"type": "Account"}, **r} for r in records]}
    return httpx.patch(
        f"{sandbox.url('crm')}{CRM}/composite/sobjects/Account/AccountNumber",
        json=body,
        headers={"Authorization": f"Bearer {crm_token(sandbox)}"},
    )


def shop_pages(sandbox, resource: str, **params) -> list[dict]:
    headers = {"X-Shopify-Access-Token": CREDS["HUB_SHOP_API_KEY"]}
    rows, url, query = [], f"{sandbox.url('shop')}{SHOP}/{resource}.json", {"limit": 250, **params}
    while url:
        answer = httpx.get(url, params=query, headers=headers)
        answer.raise_for_status()
        rows += answer.json()[resource]
        url, query = answer.links.get("next", {}).get("url"), None
    return rows


QBO = "/v3/company/{realm}"


def billing_token(sandbox) -> str:
    """An access token from the stand-in's Intuit token endpoint (refresh-token grant)."""
    answer = httpx.post(
        f"{sandbox.url('billing')}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": CREDS["HUB_BILLING_REFRESH_TOKEN"]},
        auth=(CREDS["HUB_BILLING_CLIENT_ID"], CREDS["HUB_BILLING_CLIENT_SECRET"]),
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def billing_url(sandbox, path: str) -> str:
    return sandbox.url("billing") + QBO.format(realm=CREDS["HUB_BILLING_REALM_ID"]) + path


def billing_pages(
    sandbox, resource: str, updated_since=None, updated_before=None, size: int = 1000
) -> list[dict]:
    """Every QuickBooks Invoice or Payment changed in [since, before), by STARTPOSITION pages."""
    entity = {"invoices": "Invoice", "payments": "Payment"}[resource]
    headers = {"Authorization": f"Bearer {billing_token(sandbox)}"}
    where = [f"MetaData.LastUpdatedTime >= '{updated_since}'"] * bool(updated_since) + [
        f"MetaData.LastUpdatedTime < '{updated_before}'"] * bool(updated_before)  # fmt: skip
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows, start = [], 1
    while True:
        query = f"SELECT * FROM {entity}{clause} STARTPOSITION {start} MAXRESULTS {size}"
        answer = httpx.get(billing_url(sandbox, "/query"), params={"query": query, "minorversion": 75},
                           headers=headers)  # fmt: skip
        answer.raise_for_status()
        page = answer.json()["QueryResponse"].get(entity, [])
        rows += page
        if len(page) < size:
            return rows
        start += size


def create_invoice(sandbox, payload: dict, requestid: str | None) -> httpx.Response:
    """`POST …/invoice?requestid=…` of the invoice the hub's writer makes of a sync payload
    (`order_ref`, `customer_email`, `currency`, `amount_due` in cents, `invoice_date`)."""
    from integration_hub.systems.billing import invoice

    params = {"minorversion": 75} | ({"requestid": requestid} if requestid else {})
    return httpx.post(billing_url(sandbox, "/invoice"), params=params, json=invoice(payload),
                      headers={"Authorization": f"Bearer {billing_token(sandbox)}"})  # fmt: skip


def changed_at(record: dict) -> str:
    """A QuickBooks record's `MetaData.LastUpdatedTime` as the stores write times (`…Z`, UTC)."""
    return record["MetaData"]["LastUpdatedTime"].replace("+00:00", "Z")


def cents(record: dict) -> int:
    """A QuickBooks amount (`TotalAmt`, a decimal number) in cents."""
    return int(round(Decimal(str(record["TotalAmt"])) * 100))


def applied_to(payment: dict) -> str:
    """The invoice a QuickBooks payment is applied to (`Line[0].LinkedTxn[0]`)."""
    (link,) = [t for line in payment["Line"] for t in line["LinkedTxn"] if t["TxnType"] == "Invoice"]
    return link["TxnId"]


def order_ref(invoice: dict) -> str | None:
    """The ERP order number a QuickBooks invoice carries (its `Order Ref` custom field)."""
    return next((f["StringValue"] for f in invoice.get("CustomField", []) if f["Name"] == "Order Ref"), None)


PROTECTED = [
    ("crm", "GET", f"{CRM}/query?q=SELECT+Id+FROM+Account", {}),
    ("crm", "GET", f"{CRM}/queryAll?q=SELECT+COUNT()+FROM+Account", {}),
    ("crm", "PATCH", f"{CRM}/composite/sobjects/Account/AccountNumber", {}),
    ("shop", "GET", f"{SHOP}/orders.json", {"X-Shopify-Access-Token": "shpat_wrong"}),
    ("shop", "GET", f"{SHOP}/customers/count.json", {"X-Shopify-Access-Token": "shpat_wrong"}),
    (
        "billing",
        "GET",
        QBO.format(realm=CREDS["HUB_BILLING_REALM_ID"]) + "/query?query=SELECT%20*%20FROM%20Invoice",
        {"Authorization": "Bearer qbo_wrong"},
    ),
    (
        "billing",
        "GET",
        QBO.format(realm=CREDS["HUB_BILLING_REALM_ID"]) + "/cdc?entities=Invoice&changedSince=2020-01-01",
        {"Authorization": "Bearer qbo_wrong"},
    ),
    (
        "billing",
        "POST",
        QBO.format(realm=CREDS["HUB_BILLING_REALM_ID"]) + "/invoice",
        {"Authorization": "Bearer qbo_wrong"},
    ),
    (
        "support",
        "GET",
        "/api/v2/incremental/tickets/cursor.json?start_time=0",
        {"Authorization": "Basic em9vOnph"},
    ),
    ("support", "POST", "/api/v2/tickets/create_many.json", {"Authorization": "Bearer zd_sandbox_token"}),
    ("marketing", "GET", "/crm/v3/objects/contacts", {"Authorization": "Bearer hs_wrong"}),
    ("marketing", "POST", "/crm/v3/objects/contacts/batch/upsert", {"Authorization": "Bearer hs_wrong"}),
    ("marketing", "POST", "/crm/v3/objects/contacts/search", {"Authorization": "Bearer hs_wrong"}),
]


@pytest.mark.parametrize(("system", "method", "path", "wrong"), PROTECTED)
def test_every_api_refuses_missing_and_wrong_credentials(sandbox, system, method, path, wrong):
    for headers in [{}, wrong or {"Authorization": "Bearer not-a-token"}]:
        answer = httpx.request(method, f"{sandbox.url(system)}{path}", headers=headers, json={})
        assert answer.status_code == 401
        body = answer.json()
        errors = body.get("errors") if isinstance(body, dict) else None  # Shopify's shape
        assert (
            "error" in body
            or str(errors).startswith("[API] Invalid API key")
            or (isinstance(body, list) and body[0]["errorCode"] == "INVALID_SESSION_ID")  # Salesforce's shape
            or body.get("category") == "INVALID_AUTHENTICATION"  # HubSpot's
            or body["Fault"]["Error"][0]["Message"].startswith("message=AuthenticationFailed")  # Intuit's
        )
        assert not any(secret in answer.text for secret in CREDS.values())


def test_crm_token_needs_the_right_client_secret(sandbox):
    url = f"{sandbox.url('crm')}/services/oauth2/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": CREDS["HUB_CRM_CLIENT_ID"],
        "client_secret": "guess",
    }
    answer = httpx.post(url, data=form)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_client"
    assert "guess" not in answer.text
    assert httpx.post(url, data={**form, "grant_type": "password"}).status_code == 400


@pytest.mark.parametrize(
    ("system", "resource", "id_field", "pages"),
    [
        ("crm", "accounts", "Id", crm_pages),
        ("crm", "contacts", "Id", crm_pages),
        ("shop", "orders", "id", shop_pages),
        ("shop", "customers", "id", shop_pages),
        ("billing", "invoices", "Id", billing_pages),
        ("billing", "payments", "Id", billing_pages),
        ("billing", "invoices", "Id", lambda box, resource: billing_pages(box, resource, size=700)),
    ],
)
def test_paging_returns_every_record_exactly_once(sandbox, sandbox_world, system, resource, id_field, pages):
    rows = pages(sandbox, resource)
    served = [r[id_field] for r in rows]
    expected = sandbox_world.tables[system][resource].column(id_field).to_pylist()
    assert len(served) == len(set(served)) == len(expected)
    assert set(served) == set(expected)


def test_served_records_equal_the_world_rows(sandbox, sandbox_world):
    orders = {o["id"]: o for o in shop_pages(sandbox, "orders")}
    for row in sandbox_world.tables["shop"]["orders"].slice(0, 50).to_pylist():
        assert orders[row["id"]] == row
    invoices = {i["Id"]: i for i in billing_pages(sandbox, "invoices")}
    for row in sandbox_world.tables["billing"]["invoices"].slice(0, 50).to_pylist():
        assert invoices[row["Id"]] == row


def test_time_filters_are_inclusive_lower_and_exclusive_upper_bounds(sandbox, sandbox_world):
    table = sandbox_world.tables["shop"]["orders"]
    stamps = sorted(table.column("updated_at").to_pylist())
    low, high = stamps[len(stamps) // 4], stamps[len(stamps) // 2]
    want = {r["id"] for r in table.to_pylist() if low <= r["updated_at"] < high}
    got = shop_pages(sandbox, "orders", updated_at_min=low, updated_at_max=high)
    assert {r["id"] for r in got} == want
    headers = {"X-Shopify-Access-Token": CREDS["HUB_SHOP_API_KEY"]}
    count = httpx.get(f"{sandbox.url('shop')}{SHOP}/orders/count.json",
                      params={"updated_at_min": low, "updated_at_max": high}, headers=headers).json()  # fmt: skip
    assert count == {"count": len(want)}

    accounts = sandbox_world.tables["crm"]["accounts"].to_pylist()
    want = {a["Id"] for a in accounts if a["LastModifiedDate"] >= low}
    assert {a["Id"] for a in crm_pages(sandbox, "accounts", modified_since=low)} == want
    invoices = sandbox_world.tables["billing"]["invoices"].to_pylist()
    want = {i["Id"] for i in invoices if changed_at(i) < high}
    assert {i["Id"] for i in billing_pages(sandbox, "invoices", updated_before=high)} == want
    assert [
        i["Id"] for i in billing_pages(sandbox, "invoices", updated_since=low, updated_before=high, size=300)
    ] == [i["Id"] for i in billing_pages(sandbox, "invoices", updated_since=low, updated_before=high)], (
        "a deep STARTPOSITION continues where the previous page ended, in (LastUpdatedTime, Id) order"
    )


def test_bad_filter_values_get_a_clear_400(sandbox):
    headers = {"X-Shopify-Access-Token": CREDS["HUB_SHOP_API_KEY"]}
    answer = httpx.get(f"{sandbox.url('shop')}{SHOP}/orders.json", params={"updated_at_min": "yesterday"},
                       headers=headers)  # fmt: skip
    assert answer.status_code == 400
    assert "updated_at_min" in answer.json()["errors"]  # Shopify's body: {"errors": {field: message}}
    answer = httpx.get(
        f"{sandbox.url('shop')}{SHOP}/orders.json", params={"page_info": "garbage!"}, headers=headers
    )
    assert answer.status_code == 400 and answer.json() == {"errors": {"page_info": "Invalid value."}}
    answer = httpx.get(f"{sandbox.url('shop')}{SHOP}/orders.json", params={"limit": 251}, headers=headers)
    assert answer.status_code == 422
    billing = {"Authorization": f"Bearer {billing_token(sandbox)}"}
    for query, says in [("SELECT * FROM Invoice WHERE TotalAmt > '5'", "TotalAmt"),
                        ("SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > 'yesterday'", "yesterday"),
                        ("SELECT * FROM Bill", "Bill"), ("DELETE FROM Invoice", "DELETE")]:  # fmt: skip
        answer = httpx.get(billing_url(sandbox, "/query"), params={"query": query}, headers=billing)
        fault = answer.json()["Fault"]
        assert answer.status_code == 400 and fault["type"] == "ValidationFault", query
        assert says in fault["Error"][0]["Detail"], fault


def test_crm_soql_counts_pages_and_refuses_what_it_does_not_speak(sandbox, sandbox_world):
    headers = {"Authorization": f"Bearer {crm_token(sandbox)}", "Sforce-Query-Options": "batchSize=200"}
    url = f"{sandbox.url('crm')}{CRM}/query"
    accounts = sandbox_world.tables["crm"]["accounts"].column("LastModifiedDate").to_pylist()
    latest = max(accounts)
    count = httpx.get(url, params={"q": f"SELECT COUNT() FROM Account WHERE SystemModstamp >= {latest}"},
                      headers=headers).json()  # fmt: skip
    assert count == {"totalSize": accounts.count(latest), "done": True, "records": []}
    page = httpx.get(
        url, params={"q": "SELECT Id, Name FROM Account ORDER BY SystemModstamp"}, headers=headers
    )
    body = page.json()
    assert body["totalSize"] == len(accounts) and len(body["records"]) == 200 and body["done"] is False
    assert body["nextRecordsUrl"].startswith(f"{CRM}/query/")
    first = body["records"][0]
    assert set(first) == {"attributes", "Id", "Name"}
    assert first["attributes"] == {"type": "Account", "url": f"{CRM}/sobjects/Account/{first['Id']}"}
    limited = httpx.get(url, params={"q": "SELECT Id FROM Account ORDER BY SystemModstamp DESC LIMIT 3"},
                        headers=headers).json()  # fmt: skip
    assert limited["totalSize"] == 3 and limited["done"] is True
    for q, code in [
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account GROUP BY Name", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE SystemModstamp > 'yesterday'", "INVALID_FIELD"),
        ("SELECT Nope__c FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity", "INVALID_TYPE"),
    ]:
        answer = httpx.get(url, params={"q": q}, headers=headers)
        assert answer.status_code == 400 and answer.json()[0]["errorCode"] == code, (q, answer.text)


def test_health_counts_records(sandbox, sandbox_world):
    health = httpx.get(f"{sandbox.url('shop')}/_admin/health").json()
    assert health.pop("pid") == runner.running_pid(sandbox.home)
    assert health == {"system": "shop", "status": "ok",
                      "records": {"customers": sandbox_world.tables["shop"]["customers"].num_rows,
                                  "orders": sandbox_world.tables["shop"]["orders"].num_rows}}  # fmt: skip
