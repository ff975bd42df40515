"""The judge of the CRM stand-in: simple-salesforce, pointed at it and otherwise unmodified, does
what the hub does there (query changed accounts through `nextRecordsUrl` pages, see a deleted one
with `queryAll`, upsert a batch by external id through sObject Collections, read it back), and the
data agree with the sandbox's world and truth.

simple-salesforce's own logins (SOAP username-password, its client-credentials and JWT flows)
build `https://{domain}.salesforce.com` URLs and cannot be pointed at another host; the
documented way in is `Salesforce(instance_url=..., session_id=...)` after one's own OAuth 2.0
client credentials call, which is what the hub does too.
"""

from __future__ import annotations

import requests
from hub_sandbox import CREDENTIALS as CREDS
from hub_sandbox.crm import integration_user
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest

from integration_hub.systems import crm as hub_crm

ACCOUNT_FIELDS = (
    "Id, AccountNumber, Name, Email__c, BillingCountry, SystemModstamp, LastModifiedById, IsDeleted"
)


def connect(box) -> tuple[Salesforce, dict]:
    """simple-salesforce on the stand-in: our own client credentials call, then its direct session."""
    http = requests.Session()
    http.verify = box.ca_bundle  # the sandbox's CA, as a user passes a private CA to requests
    token = http.post(
        f"{box.url('crm')}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": CREDS["HUB_CRM_CLIENT_ID"],
              "client_secret": CREDS["HUB_CRM_CLIENT_SECRET"]},
    ).json()  # fmt: skip
    sf = Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        version=hub_crm.API_VERSION,
        session=http,
    )
    return sf, token


def test_simple_salesforce_reads_pages_deletes_and_upserts_as_the_hub_does(make_sandbox, sandbox_world):
    box = make_sandbox()
    sf, token = connect(box)
    hub_user = integration_user(CREDS["HUB_CRM_CLIENT_ID"])
    info = sf.session.get(f"{token['instance_url']}/services/oauth2/userinfo", headers=sf.headers).json()
    assert token["id"].endswith(f"/{hub_user}") and info["user_id"] == hub_user
    world = {a["Id"]: a for a in sandbox_world.tables["crm"]["accounts"].to_pylist()}
    truth = box.truth["discrepancies"]

    # Every account, through nextRecordsUrl pages of 200 (query_all follows them), equals the world.
    small_pages = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query(f"SELECT {ACCOUNT_FIELDS} FROM Account ORDER BY SystemModstamp", headers=small_pages)
    assert first["done"] is False and first["totalSize"] == len(world) and len(first["records"]) == 200
    accounts = sf.query_all(
        f"SELECT {ACCOUNT_FIELDS} FROM Account ORDER BY SystemModstamp", headers=small_pages
    )
    served = {a["Id"]: a for a in accounts["records"]}
    assert len(accounts["records"]) == len(served) == len(world)
    for account_id, row in world.items():
        got = served[account_id]
        assert (got["AccountNumber"], got["Name"], got["Email__c"], got["BillingCountry"]) == (
            row["AccountNumber"], row["Name"], row["Email__c"], row["BillingCountry"]
        )  # fmt: skip
        assert got["SystemModstamp"] == row["LastModifiedDate"] and got["IsDeleted"] is False
    # The planted discrepancies, seen through the SDK: missing accounts, duplicates without a number.
    numbers = {a["AccountNumber"] for a in served.values()}
    assert not {f"C{e['customer_id']:09d}" for e in truth["crm_account_missing"]} & numbers
    for entry in truth["crm_duplicate_account"]:
        assert served[entry["crm_account_id"]]["AccountNumber"] is None

    # Changed since a cursor: the tick's changed accounts, and only them.
    cursor = max(a["SystemModstamp"] for a in served.values())
    changed_by_tick = box.tick(0.02)["records"]["crm.accounts"]["changed"]
    assert changed_by_tick > 0
    changed = sf.query_all(f"SELECT Id FROM Account WHERE SystemModstamp > {cursor} ORDER BY SystemModstamp")
    assert changed["totalSize"] == changed_by_tick

    # A deletion: gone from query, listed by queryAll with IsDeleted.
    victim = next(iter(world))
    requests.post(
        f"{box.url('crm')}/_admin/records/accounts/{victim}/delete", verify=box.ca_bundle
    ).raise_for_status()
    where = f"WHERE Id = '{victim}'"
    assert sf.query(f"SELECT Id FROM Account {where}")["totalSize"] == 0
    [deleted] = sf.query_all(f"SELECT Id, IsDeleted FROM Account {where}", include_deleted=True)["records"]
    assert deleted["IsDeleted"] is True

    # Upsert a batch by external id (sObject Collections): a planted missing account is created, an
    # existing one updated; the one without a number fails alone (allOrNone=false).
    missing = f"C{truth['crm_account_missing'][0]['customer_id']:09d}"
    existing = next(a for a in served.values() if a["AccountNumber"] and a["Id"] != victim)
    batch = [{"attributes": {"type": "Account"}, "AccountNumber": missing, "Name": "Created By SDK"},
             {"attributes": {"type": "Account"}, "AccountNumber": existing["AccountNumber"], "Lifetime_Value__c": 99.5},
             {"attributes": {"type": "Account"}, "Name": "No Number"}]  # fmt: skip
    results = sf.restful(
        "composite/sobjects/Account/AccountNumber",
        method="PATCH",
        json={"allOrNone": False, "records": batch},
    )
    assert [(r["success"], r.get("created")) for r in results] == [(True, True), (True, False), (False, None)]
    assert results[1]["id"] == existing["Id"]
    assert results[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"

    # Read back: the writes are there, stamped by the integration user, and the truth follows them.
    back = sf.query_all(f"SELECT Id, AccountNumber, Name, Lifetime_Value__c, LastModifiedById FROM Account "
                        f"WHERE AccountNumber = '{missing}'")["records"]  # fmt: skip
    assert [(a["Id"], a["Name"]) for a in back] == [(results[0]["id"], "Created By SDK")]
    assert back[0]["LastModifiedById"] == hub_user
    [updated] = sf.query(f"SELECT Lifetime_Value__c FROM Account WHERE Id = '{existing['Id']}'")["records"]
    assert updated["Lifetime_Value__c"] == 99.5
    assert {"customer_id": int(missing[1:])} not in box.truth["discrepancies"]["crm_account_missing"]


def test_simple_salesforce_sees_salesforces_errors(sandbox):
    sf, _ = connect(sandbox)
    try:
        sf.query("SELECT Id FROM Account WHERE")
    except SalesforceMalformedRequest as exc:
        assert exc.content[0]["errorCode"] == "MALFORMED_QUERY"
    else:
        raise AssertionError("a malformed query was accepted")
    stale = Salesforce(
        instance_url=sandbox.url("crm"), session_id="expired", version=hub_crm.API_VERSION, session=sf.session
    )
    try:
        stale.query("SELECT COUNT() FROM Account")
    except SalesforceExpiredSession as exc:
        assert exc.content[0]["errorCode"] == "INVALID_SESSION_ID"
    else:
        raise AssertionError("an unknown session was accepted")
