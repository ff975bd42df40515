"""The judge of the marketing stand-in: HubSpot's Python SDK (`hubspot-api-client`), unmodified,
against it.

The SDK takes the base URL and the CA bundle as configuration (`HubSpot(host=..., ssl_ca_cert=...)`,
set on each API's `Configuration`), and a private app's token as `access_token`, so pointing it
at the stand-in takes no patch. It batch-upserts contacts by email, searches those changed
since a time through `after` pages, lists them all, and reads back what the hub's own writer
pushed; the answers agree with the stand-in's store. Errors come back in HubSpot's shape.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import pytest
from hub_sandbox import secret
from hub_sandbox.marketing import SYSTEM_PROPERTIES
from hub_sandbox.store import Store
from hubspot import HubSpot
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInputUpsert,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
)

from integration_hub import systems
from integration_hub.systems.kit import tls
from integration_hub.systems.kit.writer import Record, TransientError


@pytest.fixture
def marketing(make_sandbox):
    box = make_sandbox()
    client = HubSpot(
        access_token=secret("HUB_MARKETING_API_KEY"), host=box.url("marketing"), ssl_ca_cert=box.ca_bundle
    )
    return box, client


def stored(box) -> dict[str, dict]:
    """The stand-in's own record of every contact, by email (what the SDK's answers must match)."""
    store = Store(box.home / "sandbox" / "marketing.sqlite")
    try:
        return {b["properties"]["email"]: b for _, _, body in store.page_after("contacts", None, 10**6)
                for b in [json.loads(body)]}  # fmt: skip
    finally:
        store.close()


def upsert(client: HubSpot, people: dict[str, dict]):
    inputs = [SimplePublicObjectBatchInputUpsert(id=email, id_property="email", properties=props)
              for email, props in people.items()]  # fmt: skip
    return client.crm.contacts.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs))


def search_all(client: HubSpot, filters: list[Filter], limit: int = 40) -> tuple[list, list[int]]:
    """Every contact the search finds, following `after`, and each page's `total`."""
    found, totals, after = [], [], None
    while True:
        page = client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=filters)], sorts=["lastmodifieddate"],
            properties=["email", "firstname", "lastname", "company"], limit=limit, after=after,
        ))  # fmt: skip
        found += page.results
        totals.append(page.total)
        if page.paging is None or page.paging.next is None:
            return found, totals
        after = page.paging.next.after


def own(contact) -> dict:
    return {k: v for k, v in contact.properties.items() if k not in SYSTEM_PROPERTIES}


def test_hubspot_sdk_upserts_by_email_and_searches_what_changed_since_with_after_pages(marketing):
    box, client = marketing
    people = {f"p{i:03d}@example.com": {"firstname": f"P{i}", "lastname": "Smith", "company": "Acme"}
              for i in range(250)}  # fmt: skip
    emails = list(people)
    first = [upsert(client, dict(list(people.items())[s : s + 100])) for s in range(0, 250, 100)]
    assert all(r.status == "COMPLETE" and all(o.new for o in r.results) for r in first)
    ids = {o.properties["email"]: o.id for r in first for o in r.results}
    assert len(set(ids.values())) == 250

    # Wait out the second the first writes were stamped in: lastmodifieddate is whole seconds here.
    written = max(o.updated_at for r in first for o in r.results)
    while dt.datetime.now(dt.UTC) < written + dt.timedelta(seconds=1):
        time.sleep(0.05)
    cutoff = dt.datetime.now(dt.UTC).replace(microsecond=0)
    time.sleep(0.01)
    changed = {e: people[e] | {"lastname": "Jones"} for e in emails[::5]}  # 50 updated, by email...
    changed |= {f"New{i}@Example.com": {"firstname": f"N{i}"} for i in range(10)}  # ...and 10 new
    again = upsert(client, changed)
    assert sorted(o.new for o in again.results) == [False] * 50 + [True] * 10
    assert {o.properties["email"]: o.id for o in again.results if not o.new} == {
        e: ids[e] for e in emails[::5]
    }

    since = [
        Filter(property_name="lastmodifieddate", operator="GTE", value=str(int(cutoff.timestamp() * 1000)))
    ]
    found, totals = search_all(client, since, limit=7)
    assert len(totals) == 9 and set(totals) == {60}
    assert [c.updated_at for c in found] == sorted(c.updated_at for c in found)
    assert {c.properties["email"]: own(c) for c in found} == {e.strip().lower(): {"email": e.strip().lower()} | p
                                                             for e, p in changed.items()}  # fmt: skip
    assert all(c.updated_at >= cutoff and c.properties["hs_object_id"] == c.id for c in found)

    # Before the cutoff: the 200 untouched; one contact by its email; a window with nothing in it.
    before, totals = search_all(client, [Filter(property_name="lastmodifieddate", operator="LT",
                                                value=cutoff.isoformat().replace("+00:00", "Z"))])  # fmt: skip
    assert sorted(c.properties["email"] for c in before) == sorted(set(emails) - set(emails[::5]))
    one, _ = search_all(client, [Filter(property_name="email", operator="EQ", value="P005@example.com")])
    assert [(c.id, own(c)) for c in one] == [
        (ids["p005@example.com"], changed["p005@example.com"] | {"email": "p005@example.com"})
    ]
    none, totals = search_all(client, [*since, Filter(property_name="lastmodifieddate", operator="LT",
                                                      value=str(int(cutoff.timestamp() * 1000)))])  # fmt: skip
    assert (none, totals) == ([], [0])

    # The whole list (get_all follows `after`) and the search agree with the stand-in's store.
    listed = {c.properties["email"]: c for c in client.crm.contacts.get_all()}
    truth = stored(box)
    assert len(listed) == len(truth) == 260
    assert {e: (c.id, c.properties) for e, c in listed.items()} == {
        e: (b["id"], b["properties"]) for e, b in truth.items()
    }
    assert {c.properties["email"]: c.properties["lastmodifieddate"] for c in found} == {
        e: truth[e]["properties"]["lastmodifieddate"] for e in (c.properties["email"] for c in found)
    }


def test_hubspot_sdk_reads_back_what_the_hub_writer_pushed(marketing):
    box, client = marketing
    writer = systems.writer("marketing", "contacts", base_url=box.url("marketing"))
    customers = {f"c{i}@example.com": {"email": f"c{i}@example.com", "firstname": f"C{i}", "lastname": "Hub"}
                 for i in range(150)}  # fmt: skip
    box.set_fault("marketing", "reject_writes", share=0.05)
    with httpx.Client(verify=tls.ssl_context(), timeout=30) as http:
        records = [Record(k, p, "") for k, p in customers.items()]
        outcomes = writer.write(http, records[:100]) + writer.write(http, records[100:])
    box.clear_faults("marketing")
    delivered = {o.key: o.remote_id for o in outcomes if o.ok}
    rejected = {o.key: o.error for o in outcomes if not o.ok}
    assert (
        rejected and set(delivered) | set(rejected) == set(customers) and not set(delivered) & set(rejected)
    )
    assert set(rejected.values()) == {"Property values were not valid (fault injection)"}

    found, totals = search_all(
        client, [Filter(property_name="lastmodifieddate", operator="GTE", value="0")], 200
    )
    assert totals == [len(delivered)]
    assert {c.properties["email"]: (c.id, own(c)) for c in found} == {
        k: (delivered[k], customers[k]) for k in delivered
    }


def test_errors_answer_in_hubspot_shape_and_the_writer_rides_out_429s(marketing):
    box, client = marketing
    api = client.crm.contacts.search_api
    with pytest.raises(ApiException) as refused:
        api.do_search(PublicObjectSearchRequest(limit=201))
    body = json.loads(refused.value.body)
    assert (
        refused.value.status == 400 and body["status"] == "error" and body["category"] == "VALIDATION_ERROR"
    )
    assert "limit" in body["message"] and body["correlationId"]

    wrong = HubSpot(access_token="pat-na1-wrong", host=box.url("marketing"), ssl_ca_cert=box.ca_bundle)
    with pytest.raises(ApiException) as unauthorized:
        wrong.crm.contacts.basic_api.get_page(limit=10)
    assert unauthorized.value.status == 401
    assert json.loads(unauthorized.value.body)["category"] == "INVALID_AUTHENTICATION"

    box.set_fault("marketing", "rate_limit", every=2, retry_after=0)
    statuses = []
    for _ in range(2):
        try:
            api.do_search(PublicObjectSearchRequest(limit=10))
            statuses.append(200)
        except ApiException as exc:
            statuses.append(exc.status)
            limited = exc
    assert statuses == [200, 429]
    assert json.loads(limited.body)["category"] == "RATE_LIMITS" and limited.headers["Retry-After"] == "0"

    writer = systems.writer("marketing", "contacts", base_url=box.url("marketing"))
    people = [{"email": f"r{i}@example.com", "firstname": f"R{i}"} for i in range(250)]
    confirmed = {}
    with httpx.Client(verify=tls.ssl_context(), timeout=30) as http:
        for start in range(0, len(people), 100):
            batch = [Record(p["email"], p, "") for p in people[start : start + 100]]
            while True:  # what the engine does with a TransientError: send the batch again
                try:
                    confirmed.update((o.key, o.remote_id) for o in writer.write(http, batch) if o.ok)
                    break
                except TransientError:
                    continue
    box.clear_faults("marketing")
    listed = {c.properties["email"]: c.id for c in client.crm.contacts.get_all()}
    assert listed == confirmed and len(listed) == 250
