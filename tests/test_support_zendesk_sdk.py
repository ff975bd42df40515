"""The judge of the support desk: Zendesk's Python SDK (`zenpy`), unmodified, against the stand-in.

zenpy builds `https://{subdomain}.zendesk.com`, but reads its own `ZENPY_FORCE_NETLOC` and
`ZENPY_FORCE_SCHEME` for the host and scheme, so pointing it at the stand-in takes no patch.
It bulk-creates and updates tickets and polls their job statuses, finds a ticket by
`external_id`, and reads back, through the cursor-based incremental export, what the hub's
own writer pushed.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest
from hub_sandbox import secret
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, CustomField, Ticket

from integration_hub import systems
from integration_hub.systems.kit import tls
from integration_hub.systems.kit.writer import Record, TransientError
from integration_hub.systems.support import FIELDS


@pytest.fixture
def desk(make_sandbox, monkeypatch):
    box = make_sandbox()
    where = urlsplit(box.url("support"))
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", where.netloc)
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", where.scheme)
    client = Zenpy(
        subdomain="acme",
        email=secret("HUB_SUPPORT_EMAIL"),
        token=secret("HUB_SUPPORT_API_TOKEN"),
        disable_cache=True,
    )
    return box, client


def completed(client: Zenpy, job):
    """The job status once it completed, polled as a zenpy user would."""
    for _ in range(100):
        job = client.job_status(id=job.id)
        if job.status in ("completed", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.id} still {job.status}")


def test_zenpy_creates_updates_and_reads_back_tickets_through_jobs_and_the_incremental_export(desk):
    box, client = desk
    field_ids = {f.title: f.id for f in client.ticket_fields()}
    assert set(FIELDS.values()) <= set(field_ids)
    total_field = field_ids["Order total"]
    tickets = [
        Ticket(external_id=f"SO-Z{i:03d}", subject=f"Order SO-Z{i:03d}", comment=Comment(body="an order"),
               status="open", tags=["integration_hub"], custom_fields=[CustomField(id=total_field, value=i + 0.25)])
        for i in range(30)
    ]  # fmt: skip
    job = completed(client, client.tickets.create(tickets))
    assert job.status == "completed" and job.total == 30
    assert [(r.index, r.status, r.success) for r in job.results] == [(i, "Created", True) for i in range(30)]
    ids = {f"SO-Z{r.index:03d}": r.id for r in job.results}

    job = completed(client, client.tickets.update([Ticket(id=ids["SO-Z007"], status="solved",
                                                           tags=["integration_hub", "order_deleted"])]))  # fmt: skip
    assert [(r.id, r.status) for r in job.results] == [(ids["SO-Z007"], "Updated")]
    assert [t.id for t in client.tickets(external_id="SO-Z007")] == [ids["SO-Z007"]]

    held = {t.external_id: t for t in client.tickets.incremental(start_time=0)}
    assert sorted(held) == sorted(ids)
    assert (held["SO-Z007"].status, sorted(held["SO-Z007"].tags)) == (
        "solved",
        ["integration_hub", "order_deleted"],
    )
    assert {
        e: float(next(f["value"] for f in t.custom_fields if f["id"] == total_field)) for e, t in held.items()
    } == {f"SO-Z{i:03d}": i + 0.25 for i in range(30)}


def test_zenpy_reads_back_what_the_hub_writer_pushed(desk):
    box, client = desk
    writer = systems.writer("support", "orders", base_url=box.url("support"))
    orders = {
        f"SO-H{i:03d}": {"external_id": f"SO-H{i:03d}", "status": "fulfilled", "total": 10.5 + i, "currency": "USD",
                         "order_date": "2026-11-30", "channel": "shop", "customer_email": f"c{i}@example.com",
                         "customer_name": f"Customer {i}"}
        for i in range(150)
    }  # fmt: skip
    # The TLS context the hub's pushes use, so the test follows its certificate configuration.
    with httpx.Client(verify=tls.ssl_context(), timeout=30) as http:
        records = [Record(k, p, "") for k, p in orders.items()]
        outcomes = writer.write(http, records[:100]) + writer.write(http, records[100:])
        assert sorted(o.key for o in outcomes if o.ok) == sorted(orders)
        ids = {o.key: o.remote_id for o in outcomes}
        # An update by the stored ticket id, a retirement (the sync's archive), and a record the
        # hub has no id for but the desk holds: it is found by external_id, not created twice.
        later = systems.writer("support", "orders", base_url=box.url("support"))
        again = later.write(http, [
            Record("SO-H001", orders["SO-H001"] | {"total": 99.0}, "", ids["SO-H001"]),
            Record("SO-H002", {"external_id": "SO-H002", "status": "deleted"}, "", ids["SO-H002"]),
            Record("SO-H003", orders["SO-H003"] | {"status": "cancelled"}, ""),
        ])  # fmt: skip
        assert sorted((o.key, o.ok, o.remote_id) for o in again) == sorted(
            (k, True, ids[k]) for k in ("SO-H001", "SO-H002", "SO-H003")
        )

    titles = {f.id: f.title for f in client.ticket_fields()}
    by_title = {title: name for name, title in FIELDS.items()}
    held = list(client.tickets.incremental(start_time=0))
    assert len(held) == len(orders)
    read = {
        t.external_id: {by_title[titles[f["id"]]]: f["value"] for f in t.custom_fields if f["id"] in titles}
        for t in held
    }
    expected = {k: {f: p[f] for f in FIELDS} for k, p in orders.items()}
    expected["SO-H001"]["total"] = 99.0
    expected["SO-H002"]["status"] = "deleted"
    expected["SO-H003"]["status"] = "cancelled"
    assert {k: v | {"total": float(v["total"])} for k, v in read.items()} == expected
    statuses = {t.external_id: (t.status, tuple(sorted(t.tags))) for t in held}
    assert statuses["SO-H002"] == ("solved", ("integration_hub", "order_deleted"))
    assert {s for k, s in statuses.items() if k != "SO-H002"} == {("open", ("integration_hub",))}
    assert {t.subject for t in held if t.external_id == "SO-H005"} == {"Order SO-H005"}


def test_the_hub_writer_rides_out_429s_without_a_ticket_twice(desk):
    """Every third request answered 429 with Zendesk's body and `Retry-After`: the writer waits
    its reads and job polls out, a batch whose write was refused is sent again, and each order
    is one ticket at the end, as zenpy reads it back."""
    box, client = desk
    box.set_fault("support", "rate_limit", every=3, retry_after=0)
    refused = httpx.get(f"{box.url('support')}/api/v2/tickets/count.json", auth=("x/token", "y"))
    refused = next(
        r
        for r in [refused, *(httpx.get(f"{box.url('support')}/api/v2/tickets/count.json") for _ in range(3))]
        if r.status_code == 429
    )
    assert refused.json()["error"] == "APIRateLimitExceeded" and "Retry-After" in refused.headers
    writer = systems.writer("support", "orders", base_url=box.url("support"))
    orders = [{"external_id": f"SO-R{i:03d}", "status": "open", "total": float(i)} for i in range(250)]
    confirmed = {}
    box.reset_stats()
    with httpx.Client(verify=tls.ssl_context(), timeout=30) as http:
        for start in range(0, len(orders), 100):
            batch = [Record(o["external_id"], o, "") for o in orders[start : start + 100]]
            while True:  # what the engine does with a TransientError: send the batch again
                try:
                    confirmed.update((o.key, o.remote_id) for o in writer.write(http, batch) if o.ok)
                    break
                except TransientError:
                    continue
    box.clear_faults("support")
    # Unrefused: the fields, the count and a write and a poll per batch (8); every third refused.
    assert box.stats("support")["requests"] >= 12
    held = list(client.tickets.incremental(start_time=0))
    assert sorted(t.external_id for t in held) == sorted(o["external_id"] for o in orders)
    assert {t.external_id: str(t.id) for t in held} == confirmed
