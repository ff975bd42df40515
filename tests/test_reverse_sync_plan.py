"""Reverse-sync plans and declarations: the diff against the pushed state, filters, the allow-list.

No destination is contacted here: a plan reads the warehouse only.
"""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pytest

from assets.syncs import SYNCS
from integration_hub.engine import sync_engine as rs
from integration_hub.warehouse import Warehouse


@pytest.fixture
def warehouse(tmp_path, monkeypatch) -> Warehouse:
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    wh = Warehouse()
    orders = pa.table(
        {
            "order_id": ["SO-1", "SO-2", "SO-3", "SO-3", None, "SO-4"],
            "status": ["open", "fulfilled", "open", "open", "open", "open"],
            "total_amount": pa.array(["10.00", "20.50", "30.00", "31.00", "5.00", "7.25"]).cast(
                pa.decimal128(18, 2)
            ),
            "customer_phone": ["+1555"] * 6,
        }
    )
    wh.write_arrow("canonical", "tiny_order", orders, mode="replace")
    return wh


def orders_sync(**overrides) -> rs.Sync:
    spec = dict(
        name="tiny_orders", source="canonical.tiny_order", destination="support", object="orders", mode="upsert",
        key="order_id",
        mapping={"external_id": "order_id", "status": "status", "total": "total_amount", "phone": "customer_phone"},
        allow=frozenset({"external_id", "status", "total"}),
    )  # fmt: skip
    return rs.Sync(**{**spec, **overrides})


def test_first_plan_inserts_every_keyed_row_and_counts_what_it_filters(warehouse):
    plan = rs.plan(orders_sync(), warehouse)
    assert [c.key for c in plan.changes] == ["SO-1", "SO-2", "SO-3", "SO-4"]
    assert {c.operation for c in plan.changes} == {"insert"}
    assert plan.counts["insert"] == 4 and plan.counts["filtered"] == 2
    assert plan.filtered == {"no order_id": 1, "duplicate order_id": 1}
    assert plan.changes[1].payload == {"external_id": "SO-2", "status": "fulfilled", "total": 20.5}


def test_a_field_off_the_allow_list_never_enters_a_payload(warehouse):
    plan = rs.plan(orders_sync(), warehouse)
    assert plan.withheld == ["phone"]
    assert all("phone" not in c.payload for c in plan.changes)
    assert "phone" not in plan.markdown() and "+1555" not in plan.markdown()


def test_plan_diffs_against_the_pushed_state(warehouse):
    sync = orders_sync()
    first = {c.key: c for c in rs.plan(sync, warehouse).changes}
    rs.ensure_tables(warehouse, sync)
    with warehouse.connect() as con:
        for key, digest in [("SO-1", first["SO-1"].hash), ("SO-2", "stale"), ("SO-9", "gone")]:
            con.execute(f"INSERT INTO {sync.state_table} VALUES (?, ?, NULL, 'r0', NULL)", [key, digest])
    plan = rs.plan(sync, warehouse)
    assert {(c.key, c.operation) for c in plan.changes} == {
        ("SO-2", "update"),
        ("SO-3", "insert"),
        ("SO-4", "insert"),
    }
    assert plan.counts["unchanged"] == 1 and plan.counts["delete"] == 0  # upsert mode never deletes


def test_insert_mode_sends_a_key_once_whatever_its_content_becomes(warehouse):
    sync = orders_sync(name="tiny_once", mode="insert")
    rs.ensure_tables(warehouse, sync)
    with warehouse.connect() as con:
        con.execute(f"INSERT INTO {sync.state_table} VALUES ('SO-2', 'older content', NULL, 'r0', NULL)")
    plan = rs.plan(sync, warehouse)
    assert "SO-2" not in {c.key for c in plan.changes}
    assert plan.counts["unchanged"] == 1
    # The idempotency key of an insert ignores the content, so a changed body cannot create a second record.
    assert sync.idempotency_key("SO-2", "a") == sync.idempotency_key("SO-2", "b")
    assert orders_sync().idempotency_key("SO-2", "a") != orders_sync().idempotency_key("SO-2", "b")


def test_a_discarded_dead_letter_is_not_sent_again_until_its_content_changes(warehouse):
    sync = orders_sync()
    change = next(c for c in rs.plan(sync, warehouse).changes if c.key == "SO-4")
    with warehouse.connect() as con:
        con.execute(
            "INSERT INTO sync.dead_letter VALUES ('dl1', ?, 'SO-4', 'insert', ?, '{}', 'HTTP 422', 1, NULL, NULL, "
            "'open', NULL, NULL)",
            [sync.name, change.hash],
        )
    with pytest.raises(ValueError, match="needs a reason"):
        rs.discard(warehouse, "dl1", "  ")
    rs.discard(warehouse, "dl1", "customer asked not to be contacted")
    with pytest.raises(ValueError, match="not open"):
        rs.discard(warehouse, "dl1", "again")
    plan = rs.plan(sync, warehouse)
    assert "SO-4" not in {c.key for c in plan.changes} and plan.counts["discarded"] == 1
    [letter] = rs.dead_letters(warehouse, sync.name, status=None)
    assert (letter["status"], letter["discard_reason"]) == ("discarded", "customer asked not to be contacted")


def test_update_mode_touches_only_keys_the_destination_holds(warehouse):
    warehouse.write_arrow(
        "raw_support", "orders", pa.table({"external_id": ["SO-2", "SO-4"]}), mode="replace"
    )
    sync = orders_sync(
        name="tiny_update", mode="update", existing="SELECT external_id FROM raw_support.orders"
    )
    plan = rs.plan(sync, warehouse)
    assert [c.key for c in plan.changes] == ["SO-2", "SO-4"]
    assert plan.filtered["not in destination (update mode)"] == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mode": "mirror"}, "cannot delete"),
        ({"mode": "update"}, "needs `existing`"),
        ({"mode": "replace"}, "mode must be one of"),
        ({"batch_size": 101}, "batch_size must be 1..100"),
        ({"allow": frozenset({"status"})}, "match field 'external_id' must be mapped and allowed"),
        ({"object": "tickets"}, "no writer for destination support.tickets"),
    ],
)
def test_a_wrong_declaration_fails_with_what_to_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        orders_sync(**overrides)


def test_the_declared_syncs_keep_pii_they_do_not_need_in_the_hub():
    assert SYNCS["marketing_contacts"].withheld == ["phone"]
    assert SYNCS["support_orders"].withheld == ["customer_phone"]
    assert SYNCS["crm_accounts"].withheld == [] and SYNCS["crm_accounts"].create_fields == [
        "BillingCountry",
        "Email__c",
        "Industry",
        "Phone",
    ]
    assert SYNCS["billing_invoices"].mode == "insert"


def test_which_fields_are_personal_follows_from_the_canonical_model():
    """Derived through each source's column lineage from the canonical PII flags (customer name,
    email, phone; invoice customer_email): exactly the sets once declared by hand per sync."""
    # BillingCountry comes from a seed the model does not describe: counted as personal (conservative).
    assert SYNCS["crm_accounts"].pii == {"Name", "Phone", "Email__c", "BillingCountry"}
    assert SYNCS["marketing_contacts"].pii == {"email", "firstname", "lastname", "phone"}
    assert SYNCS["support_orders"].pii == {"customer_email", "customer_name", "customer_phone"}
    assert SYNCS["billing_invoices"].pii == {"customer_email"}, "a literal ('usd') is nobody's data"
    # Split or transformed, a flagged column stays personal; an aggregate of an unflagged one does not.
    assert SYNCS["marketing_contacts"].mapping["firstname"] == "first_name"
    assert "lifetime_value" not in SYNCS["marketing_contacts"].pii


def test_a_field_whose_origin_cannot_be_traced_to_the_canonical_model_counts_as_personal(warehouse):
    # `canonical.tiny_order` is no canonical entity: the model cannot vouch for any of its columns.
    assert orders_sync().pii == {"external_id", "status", "total", "phone"}
    assert rs.plan(orders_sync(), warehouse).pii == ["external_id", "status", "total"]
    traced = orders_sync(
        source="SELECT order_id, status, total_amount, '+1555' AS customer_phone FROM canonical.sales_order"
    )
    assert traced.pii == set(), "sales_order has no personal field, and a literal is nobody's"


def test_a_source_without_a_mapped_column_fails_with_both_column_lists(warehouse):
    sync = orders_sync(mapping={"external_id": "order_id", "status": "state", "total": "total_amount"})
    with pytest.raises(ValueError, match=r"its source has no column \['state'\]; it has \['order_id'"):
        rs.plan(sync, warehouse)


def test_mirror_mode_plans_a_delete_for_every_pushed_key_the_source_lost(warehouse, monkeypatch):
    from integration_hub import systems
    from integration_hub.systems.support import SupportOrders

    class DeletingOrders(SupportOrders):
        can_delete = True

    support = systems.get("support")
    monkeypatch.setitem(
        systems.registry(), "support", dataclasses.replace(support, writers={"orders": DeletingOrders})
    )
    sync = orders_sync(name="tiny_mirror", mode="mirror")
    rs.ensure_tables(warehouse, sync)
    with warehouse.connect() as con:
        con.execute(f"INSERT INTO {sync.state_table} VALUES ('SO-9', 'gone', NULL, 'r0', NULL)")
    plan = rs.plan(sync, warehouse)
    assert plan.counts["delete"] == 1
    assert [(c.key, c.payload) for c in plan.changes if c.operation == "delete"] == [
        ("SO-9", {"external_id": "SO-9"})
    ]


def test_dead_letter_payloads_are_shown_without_personal_data_unless_asked():
    from integration_hub.cli.audit import masked_letter

    payload = {"external_id": "SO-1", "total": 12.5, "customer_email": "ada@x.test", "customer_name": "Ada L"}
    letter = {"sync": "support_orders", "key": "SO-1", "payload": json.dumps(payload)}
    shown = json.loads(masked_letter(letter, SYNCS)["payload"])
    assert shown == {"external_id": "SO-1", "total": 12.5, "customer_email": "•••", "customer_name": "•••"}
    assert json.loads(letter["payload"]) == payload, "the stored payload (what a replay sends) is untouched"
