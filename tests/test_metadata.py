"""What an asset page shows: a preview of a few rows, with personal data masked."""

from __future__ import annotations

import pyarrow as pa

from assets.metadata import MASK, column_schema, preview_md
from integration_hub.warehouse import Warehouse


def test_preview_masks_personal_data_and_hides_dlt_columns(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    rows = pa.table({
        "id": [1, 2, 3, 4, 5, 6, 7],
        "email": ["ana@example.com", None, "c@example.com", "d@x.io", "e@x.io", "f@x.io", "g@x.io"],
        "phone": ["+1 555 0100"] * 7,
        "total": ["10.50", "a|b", "x" * 80, "1", "2", "3", "4"],
        "_dlt_id": ["h1", "h2", "h3", "h4", "h5", "h6", "h7"],
    })  # fmt: skip
    warehouse.write_arrow("raw_x", "t", rows, mode="replace")

    text = preview_md(warehouse, "raw_x", "t", n=3).value
    lines = text.splitlines()

    assert lines[0] == "| id | email | phone | total |"
    assert len(lines) == 2 + 3
    assert lines[2] == f"| 1 | {MASK} | {MASK} | 10.50 |"
    assert lines[3] == f"| 2 |  | {MASK} | a\\|b |", (
        "a null stays visibly empty; a pipe cannot break the table"
    )
    assert lines[4].endswith("… |") and "x" * 40 not in lines[4]
    assert "example.com" not in text and "555" not in text and "_dlt" not in text
    assert [c.name for c in column_schema(warehouse, "raw_x", "t").columns] == [
        "id", "email", "phone", "total", "_dlt_id"
    ]  # fmt: skip


def test_every_sql_model_materialization_has_a_preview(canonical_world):
    _, result = canonical_world
    previews = {
        e.asset_key.to_user_string(): e.materialization.metadata["preview"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[0] in ("staging", "canonical") and e.asset_key.path[-1] != "customer_xref"
    }
    assert len(previews) == 17  # the SQL models and the order map
    customer = previews["canonical/customer"]
    assert customer.splitlines()[0].startswith("| customer_id |")
    assert len(customer.splitlines()) == 2 + 5
    assert "@" not in customer, "emails are masked"


def test_staging_and_canonical_previews_mask_what_the_canonical_model_flags(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    people = {"name": ["Ana Lima"], "email": ["ana@example.com"], "phone": ["+15550100"]}
    warehouse.write_arrow(
        "canonical",
        "customer",
        pa.table({"customer_id": ["c1"], **people, "segment": ["RETAIL"]}),
        mode="replace",
    )
    warehouse.write_arrow(
        "staging", "shop__customer", pa.table({"source_id": ["7"], **people}), mode="replace"
    )
    warehouse.write_arrow(
        "canonical", "product", pa.table({"product_id": [1], "name": ["Steel widget"]}), mode="replace"
    )

    assert preview_md(warehouse, "canonical", "customer").value.splitlines()[2] == (
        f"| c1 | {MASK} | {MASK} | {MASK} | RETAIL |"
    )
    assert preview_md(warehouse, "staging", "shop__customer").value.splitlines()[2] == (
        f"| 7 | {MASK} | {MASK} | {MASK} |"
    )
    # A product's name is nobody's personal data: the model does not flag it, so it shows.
    assert preview_md(warehouse, "canonical", "product").value.splitlines()[2] == "| 1 | Steel widget |"


def test_canonical_columns_carry_the_models_meaning_owner_and_pii_flag(canonical_world):
    """The asset page's Columns table: each field's meaning from `canonical/`, PII tagged, both on
    the definition (before any build) and on each build of a staging or canonical table."""
    import dagster as dg

    from canonical import MODELS
    from integration_hub.definitions import defs

    _, result = canonical_world
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    built = {
        e.asset_key: e.materialization.metadata["dagster/column_schema"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[0] in ("staging", "canonical")
        and "dagster/column_schema" in e.materialization.metadata
    }
    fields = MODELS["customer"].to_schema().columns
    for schema in (
        specs[dg.AssetKey(["canonical", "customer"])].metadata["dagster/column_schema"],
        built[dg.AssetKey(["canonical", "customer"])],
        built[dg.AssetKey(["staging", "erp__customer"])],
    ):
        columns = {c.name: c for c in schema.columns}
        assert columns["email"].description == f"{fields['email'].description} Owner: erp. Personal data."
        assert columns["email"].tags == {"pii": "true"}
        assert columns["segment"].description.startswith(fields["segment"].description)
        assert not columns["segment"].tags
    xref = specs[dg.AssetKey(["canonical", "customer_xref"])].metadata["dagster/column_schema"]
    assert {c.name for c in xref.columns} == set(MODELS["customer_xref"].to_schema().columns)
    for key, schema in built.items():  # every canonical table: each modelled column documented, PII tagged
        model = MODELS.get(key.path[-1]) if key.path[0] == "canonical" else None
        if model is None:
            continue
        fields = model.to_schema().columns
        assert all(c.description for c in schema.columns if c.name in fields), key
        personal = {n for n, f in fields.items() if (f.metadata or {}).get("pii")}
        assert {c.name for c in schema.columns if c.tags} == personal & {c.name for c in schema.columns}, key
