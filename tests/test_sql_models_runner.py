"""The SQL-model runner: dependencies from the SQL, discovery of new systems and fields, atomic builds."""

from __future__ import annotations

import shutil

import dagster as dg
import pyarrow as pa
import pytest

from assets import transforms
from integration_hub.engine import model_build, sql_models
from integration_hub.warehouse import Warehouse
from tests.raw_world import raw_tables


def keys(*names: str) -> list[tuple[str, ...]]:
    return sorted(tuple(n.split("/")) for n in names)


def test_dependencies_are_read_from_the_sql():
    models = {"/".join(m.key): m for m in sql_models.discover()}
    assert models["canonical/customer"].upstream == keys(
        "canonical/customer_xref", "staging/crm__customer", "staging/erp__customer", "staging/shop__customer"
    )
    # dlt's child table orders__line_items is loaded by the orders asset.
    assert models["staging/shop__order_line"].upstream == keys("raw/shop/orders")
    assert models["canonical/order_line"].upstream == keys(
        "canonical/order_xref", "canonical/product", "staging/erp__order_line", "staging/shop__order_line"
    )
    # The changed-keys block's tables are read too, but never the model's own table.
    assert models["canonical/invoice"].upstream == keys(
        "canonical/customer", "canonical/order_xref", "staging/billing__invoice"
    )
    # CTE names are not tables; schema-less names are not assets.
    sql = "WITH recent AS (SELECT * FROM raw_crm.accounts) SELECT * FROM recent JOIN seeds.fx_rates ON true"
    assert sql_models.upstream_keys(sql) == keys("raw/crm/accounts", "seeds/fx_rates")


def test_every_model_transpiles_to_postgres():
    for model in sql_models.discover():
        sql = sql_models.to_dialect(sql_models.expand(model.parsed.body, model.root), "postgres")
        assert "DISTINCT ON" in sql or model.layer != "canonical" or model.name == "customer"
        assert "{{" not in sql
        block = sql_models.expand(sql_models.incremental.plain(model.changed_keys or "SELECT 1"), model.root)
        assert "{{" not in sql_models.to_dialect(block, "postgres")


def test_an_unknown_entity_in_a_union_says_what_to_add(tmp_path):
    (tmp_path / "staging").mkdir()
    with pytest.raises(sql_models.SqlModelError, match=r"staging/<system>__widget\.sql"):
        sql_models.expand("SELECT * FROM {{ union_staging('widget') }} AS w", tmp_path)


@pytest.fixture
def product_world(tmp_path, sandbox_world):
    """A private copy of dbt_like_sql and a warehouse holding the ERP products and the seeds."""
    root = tmp_path / "dbt_like_sql"
    shutil.copytree(sql_models.SQL_DIR, root)
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.write_arrow("raw_erp", "products", raw_tables(sandbox_world)["erp"]["products"], mode="replace")
    for seed in sql_models.seed_files(root):
        sql_models.load_seed(warehouse, seed)
    return root, warehouse


def product_assets(root) -> list:
    return [transforms.sql_asset(m) for m in sql_models.discover(root) if m.entity == "product"]


def test_a_new_system_and_a_new_field_need_no_python(product_world):
    root, warehouse = product_world
    # A throw-away system: one raw table, one staging file. Nothing else is edited.
    warehouse.write_arrow("raw_acme", "items", pa.table({
        "item_no": [1, 2], "code": ["SKU-90000001", "SKU-90000002"], "title": ["Anvil", "Rocket"],
        "price_usd": ["10.50", "99.00"],
    }), mode="replace")  # fmt: skip
    (root / "staging" / "acme__product.sql").write_text(
        "-- Acme's catalogue.\n"
        "SELECT 900000000 + item_no AS product_id, code AS sku, title AS name, CAST(NULL AS VARCHAR) AS brand,\n"
        "       CAST(NULL AS VARCHAR) AS category, CAST(price_usd AS DECIMAL(18, 2)) AS unit_price,\n"
        "       'USD' AS currency, 'acme' AS source_system\n"
        "FROM raw_acme.items\n"
    )
    # A new field in an existing staging model.
    erp = root / "staging" / "erp__product.sql"
    erp.write_text(
        erp.read_text().replace("    p.brand,\n", "    p.brand,\n    length(p.name) AS name_length,\n")
    )

    assets = product_assets(root)
    canonical = next(a for a in assets if a.key == dg.AssetKey(["canonical", "product"]))
    assert dg.AssetKey(["staging", "acme__product"]) in canonical.asset_deps[canonical.key]
    result = dg.materialize(
        assets, resources={"warehouse": warehouse}, instance=dg.DagsterInstance.ephemeral()
    )
    meta = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    columns = [c.name for c in meta[canonical.key]["dagster/column_schema"].schema.columns]
    assert "name_length" in columns
    with warehouse.connect() as con:
        by_system = dict(con.rows("SELECT source_system, count(*) FROM canonical.product GROUP BY 1"))
        acme = con.rows("SELECT sku, unit_price, name_length, updated_at FROM canonical.product "
                        "WHERE source_system = 'acme' ORDER BY sku")  # fmt: skip
    assert by_system == {"erp": warehouse.row_count("raw_erp", "products"), "acme": 2}
    assert [(r[0], float(r[1]), r[2], r[3]) for r in acme] == [
        ("SKU-90000001", 10.5, None, None), ("SKU-90000002", 99.0, None, None)
    ]  # fmt: skip


def test_a_failed_build_leaves_the_previous_table_whole(product_world):
    root, warehouse = product_world
    models = {"/".join(m.key): m for m in sql_models.discover(root)}
    model_build.build(warehouse, models["staging/erp__product"])
    before = model_build.build(warehouse, models["canonical/product"]).row_count
    (root / "canonical" / "product.sql").write_text(
        "-- broken on purpose\nSELECT CAST(name AS INTEGER) AS product_id FROM staging.erp__product\n"
    )
    with pytest.raises(sql_models.SqlModelError, match=r"canonical\.product \(product\.sql\)"):
        model_build.build(warehouse, _model(root, "canonical", "product"))

    def vet_that_fails(con, schema, table):
        raise RuntimeError("validation blew up")

    (root / "canonical" / "product.sql").write_text(models["canonical/product"].template)
    with pytest.raises(sql_models.SqlModelError, match="validation blew up"):
        model_build.build(warehouse, _model(root, "canonical", "product"), vet=vet_that_fails)
    assert warehouse.row_count("canonical", "product") == before
    with warehouse.connect() as con:
        leftovers = con.scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '\\_build\\_%' ESCAPE '\\'"
        )
    assert leftovers == 0


def _model(root, layer: str, name: str) -> sql_models.SqlModel:
    return sql_models.SqlModel(layer, name, root / layer / f"{name}.sql", root)


def test_a_model_is_a_query_or_a_table_by_one_rule():
    for query in ("SELECT 1", "\n  with t AS (SELECT 1) SELECT * FROM t", "(select 1)", "FROM t SELECT a"):
        assert sql_models.is_query(query), query
    for table in ("canonical.customer", "withdrawals", 'raw_x."select"', "selections"):
        assert not sql_models.is_query(table), table


def test_a_build_killed_before_its_swap_leaves_no_scratch_table_behind(product_world):
    """A process killed mid-build cannot clean up; the next build of the table drops what it left."""
    root, warehouse = product_world
    models = {"/".join(m.key): m for m in sql_models.discover(root)}
    product = models["canonical/product"]
    model_build.build(warehouse, models["staging/erp__product"])
    model_build.build(warehouse, product)
    with warehouse.connect() as con:
        con.execute("CREATE TABLE canonical._build_product_0badc0de AS SELECT * FROM canonical.product")
        con.execute("CREATE TABLE canonical._build_product_kept AS SELECT 1 AS not_a_scratch_table")
    model_build.build(warehouse, product)
    with warehouse.connect() as con:
        tables = {
            t
            for (t,) in con.rows(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'canonical'"
            )
        }
    assert "_build_product_0badc0de" not in tables
    assert {"product", "_build_product_kept"} <= tables
