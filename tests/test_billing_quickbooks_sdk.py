"""The judge of the billing stand-in: Intuit's own Python clients, `python-quickbooks` and the
`intuitlib` it authenticates with, pointed at the stand-in and otherwise unmodified.

`intuitlib.AuthClient` takes a discovery document URL as its `environment` (documented: "App
Environment … or a discovery document URL"), so the refresh-token grant reaches the stand-in's
token endpoint. `QuickBooks` builds every API URL from its `api_url_v3` attribute (production or
sandbox host + `/v3`); setting that attribute on the client is the one change that points it at
another host: no library code is patched.
"""

from __future__ import annotations

import json

import pytest
from hub_sandbox import CREDENTIALS as CREDS

from tests.test_sandbox_api import changed_at

pytest.importorskip("quickbooks")

from intuitlib.client import AuthClient  # noqa: E402
from quickbooks import QuickBooks  # noqa: E402
from quickbooks.cdc import change_data_capture  # noqa: E402
from quickbooks.objects.base import CustomField, Ref  # noqa: E402
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail  # noqa: E402
from quickbooks.objects.invoice import Invoice  # noqa: E402
from quickbooks.objects.payment import Payment  # noqa: E402

MINOR_VERSION = 75
PAGE = 100


@pytest.fixture(autouse=True)
def plain_http_allowed(monkeypatch, sandbox):
    """oauthlib refuses bearer tokens over plain HTTP unless told (its documented
    `OAUTHLIB_INSECURE_TRANSPORT`); a stand-in served over HTTPS needs nothing."""
    if sandbox.url("billing").startswith("http://"):
        monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def quickbooks(box) -> QuickBooks:
    base = box.url("billing")
    auth = AuthClient(
        client_id=CREDS["HUB_BILLING_CLIENT_ID"],
        client_secret=CREDS["HUB_BILLING_CLIENT_SECRET"],
        redirect_uri=f"{base}/callback",
        environment=f"{base}/.well-known/openid_configuration",
    )
    client = QuickBooks(
        auth_client=auth,
        refresh_token=CREDS["HUB_BILLING_REFRESH_TOKEN"],
        company_id=CREDS["HUB_BILLING_REALM_ID"],
        minorversion=MINOR_VERSION,
    )
    client.api_url_v3 = f"{base}/v3"
    return client


def test_sdk_pages_invoices_and_payments_changed_since_a_time(sandbox, sandbox_world):
    qb = quickbooks(sandbox)
    world = sandbox_world.tables["billing"]["invoices"].to_pylist()
    stamps = sorted(i["MetaData"]["LastUpdatedTime"] for i in world)
    since = stamps[len(stamps) // 2]
    want = {i["Id"]: i for i in world if i["MetaData"]["LastUpdatedTime"] > since}
    where = f"MetaData.LastUpdatedTime > '{since}'"
    got, start = [], 1
    while True:
        page = Invoice.where(
            where, order_by="MetaData.LastUpdatedTime", start_position=start, max_results=PAGE, qb=qb
        )
        got += page
        if len(page) < PAGE:
            break
        start += PAGE
    assert start > 1, "the answer took more than one page"
    assert len(got) == len({i.Id for i in got}) == len(want) == Invoice.count(where, qb=qb)
    for invoice in got:
        row = want[invoice.Id]
        assert (invoice.DocNumber, invoice.TotalAmt, invoice.Balance, invoice.TxnDate) == (
            row["DocNumber"], row["TotalAmt"], row["Balance"], row["TxnDate"])  # fmt: skip
        assert invoice.CurrencyRef.value == row["CurrencyRef"]["value"]
        assert invoice.CustomField[0].StringValue == row["CustomField"][0]["StringValue"]
        assert invoice.Line[0].Amount == row["TotalAmt"]
    assert [changed_at(i.to_dict()) for i in got] == sorted(changed_at(i.to_dict()) for i in got)

    payments = {p["Id"]: p for p in sandbox_world.tables["billing"]["payments"].to_pylist()}
    first = Payment.where("", start_position=1, max_results=PAGE, qb=qb)
    assert len(first) == PAGE
    for payment in first:
        row = payments[payment.Id]
        assert payment.TotalAmt == row["TotalAmt"]
        assert payment.Line[0].LinkedTxn[0].TxnId == row["Line"][0]["LinkedTxn"][0]["TxnId"]
        assert payment.Line[0].LinkedTxn[0].TxnType == "Invoice"


def new_invoice(order_ref: str, amount: float) -> Invoice:
    line = SalesItemLine()
    line.Amount = amount
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = Ref()
    line.SalesItemLineDetail.ItemRef.value, line.SalesItemLineDetail.ItemRef.name = "1", "Goods"
    field = CustomField()
    field.DefinitionId, field.Name, field.Type, field.StringValue = "1", "Order Ref", "StringType", order_ref
    invoice = Invoice()
    invoice.CustomerRef = Ref()
    invoice.CustomerRef.value, invoice.CustomerRef.name = "42", "judge@example.com"
    invoice.TxnDate = "2026-11-30"
    invoice.Line.append(line)
    invoice.CustomField.append(field)
    return invoice


def test_sdk_writes_once_per_requestid_reads_back_and_sees_a_deletion_in_cdc(make_sandbox):
    box = make_sandbox()
    qb = quickbooks(box)
    before = Invoice.count(qb=qb)

    created = new_invoice("SO-9000000007", 123.45).save(qb=qb, request_id="judge-create-1")
    again = new_invoice("SO-9000000007", 123.45).save(qb=qb, request_id="judge-create-1")
    assert again.Id == created.Id and again.SyncToken == created.SyncToken == "0"
    assert Invoice.count(qb=qb) == before + 1, "a repeated requestid creates nothing"
    assert (created.TotalAmt, created.Balance, created.DocNumber.startswith("INV-N")) == (
        123.45,
        123.45,
        True,
    )

    # `Invoice.save` decides create or update by `int(Id)`, and the world's ids are not numbers
    # (`in_…`): the update goes through the client's own `update_object`.
    change = {"Id": created.Id, "SyncToken": created.SyncToken, "sparse": True, "TxnDate": "2026-12-01"}
    first = qb.update_object("Invoice", json.dumps(change), request_id="judge-update-1")["Invoice"]
    replay = qb.update_object("Invoice", json.dumps(change), request_id="judge-update-1")["Invoice"]
    assert first == replay and first["SyncToken"] == "1"
    read = Invoice.get(created.Id, qb=qb)
    assert (read.SyncToken, read.TxnDate, read.TotalAmt) == ("1", "2026-12-01", 123.45)
    assert read.CustomField[0].StringValue == "SO-9000000007"
    assert Invoice.where(f"Id = '{created.Id}'", qb=qb)[0].TxnDate == "2026-12-01"

    stale = {"Id": created.Id, "SyncToken": "0", "sparse": True, "TxnDate": "2026-12-02"}
    with pytest.raises(Exception, match="Stale Object"):
        qb.update_object("Invoice", json.dumps(stale))

    since = read.MetaData.LastUpdatedTime
    read.delete(qb=qb, request_id="judge-delete-1")
    assert Invoice.count(qb=qb) == before
    changes = change_data_capture([Invoice, Payment], since, qb=qb)
    deleted = [i for i in changes.Invoice if getattr(i, "status", None) == "Deleted"]
    assert [i.Id for i in deleted] == [created.Id]
