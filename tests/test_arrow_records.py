"""REST records as Arrow tables: the shapes dlt's JSON normalizer would land, and the contract."""

import datetime as dt

import pyarrow as pa

from integration_hub.systems.kit.arrow import (
    contracted_table,
    flatten,
    key_row_id,
    random_row_ids,
    records_table,
    split_children,
    type_timestamps,
)
from integration_hub.systems.kit.contract import INTEGER, TIMESTAMP, Contract

ORDERS = [
    {"id": 1, "updated_at": "2026-11-20T10:00:00Z", "customer": {"id": 7, "email": "a@x.org"},
     "line_items": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]},
    {"id": 2, "updated_at": "2026-11-20T11:00:00+01:00", "customer": None, "line_items": []},
    {"id": 3, "updated_at": "2026-11-20T12:00:00", "customer": {"id": 8}, "line_items": [{"sku": "C"}],
     "note": "later"},
]  # fmt: skip


def test_nested_objects_become_parent__child_columns_and_lists_child_tables():
    table, mixed = records_table(ORDERS)
    assert not mixed
    flat = flatten(table)
    assert flat.column_names == ["id", "updated_at", "customer__id", "customer__email", "line_items", "note"]
    assert flat["customer__id"].to_pylist() == [7, None, 8]
    flat = flat.append_column("_dlt_id", pa.array(["r1", "r2", "r3"]))

    (root_name, root), (child_name, child) = list(split_children(flat, "orders"))
    assert (root_name, child_name) == ("orders", "orders__line_items")
    assert "line_items" not in root.column_names
    assert child.select(
        ["sku", "quantity", "_dlt_parent_id", "_dlt_root_id", "_dlt_list_idx"]
    ).to_pylist() == [
        {"sku": "A", "quantity": 2, "_dlt_parent_id": "r1", "_dlt_root_id": "r1", "_dlt_list_idx": 0},
        {"sku": "B", "quantity": 1, "_dlt_parent_id": "r1", "_dlt_root_id": "r1", "_dlt_list_idx": 1},
        {"sku": "C", "quantity": None, "_dlt_parent_id": "r3", "_dlt_root_id": "r3", "_dlt_list_idx": 0},
    ]
    assert child["_dlt_id"].null_count == 0 and len(set(child["_dlt_id"].to_pylist())) == 3


def test_iso_timestamps_are_typed_utc_and_a_known_column_refuses_what_is_not_one():
    table = pa.table(
        {
            "updated_at": ["2026-11-20T10:00:00Z", "2026-11-20T11:00:00+01:00", "2026-11-20T12:00:00"],
            "created_at": ["2026-11-01T00:00:00Z", "soon", None],
            "sku": ["2026-11-20T10:00:00Z", "A", "B"],
        }
    )
    typed, bad = type_timestamps(table, known={"created_at"})
    utc = dt.UTC
    assert typed["updated_at"].to_pylist() == [
        dt.datetime(2026, 11, 20, 10, tzinfo=utc), dt.datetime(2026, 11, 20, 10, tzinfo=utc),
        dt.datetime(2026, 11, 20, 12, tzinfo=utc),
    ]  # fmt: skip
    assert typed.schema.field("sku").type == pa.string()  # not every value is a timestamp
    assert list(bad) == ["created_at"] and bad["created_at"].tolist() == [False, True, False]


def test_contract_refuses_the_records_that_mixed_a_column_and_keeps_the_rest_typed():
    contract = Contract("id", {"id": INTEGER, "updated_at": TIMESTAMP, "amount": INTEGER})
    records = [
        {"id": 1, "updated_at": "2026-11-20T10:00:00Z", "amount": 100},
        {"id": 2, "updated_at": "2026-11-20T10:00:00Z", "amount": "12,00"},
        {"updated_at": "2026-11-20T10:00:00Z", "amount": 5},
        "not an object",
    ]
    table, refused = contracted_table(records, contract)
    assert table.to_pylist() == [{"id": 1, "updated_at": "2026-11-20T10:00:00Z", "amount": 100}]
    assert table.schema.field("amount").type == pa.int64()
    assert sorted((key, reason) for key, reason, _ in refused) == [
        ("2", "field 'amount': expected integer, got '12,00'"),
        ("None", "expected an object, got str"),
        ("None", "missing field 'id'"),
    ]
    assert {"id": 2, "updated_at": "2026-11-20T10:00:00Z", "amount": "12,00"} in [r for _, _, r in refused]


def test_row_ids_keep_the_form_dlt_gives_them_so_stored_ids_stay_valid():
    # Rows loaded before the hub derived its own ids got them from dlt's `digest128`: a changed
    # row must get the same id again, or its old child rows would stay beside the new ones.
    from dlt.common.utils import digest128

    for key in ("1", "A-17", "ä€", "None", ""):
        assert key_row_id(key) == digest128(key)
    ids = random_row_ids(1000)
    assert len(set(ids)) == 1000 and {len(i) for i in ids} == {14}
    assert random_row_ids(0) == []
