"""Canonical tables for reconciliation tests, built by the real transform layer from the world.

The world's tables are written as dlt lands them (`tests/raw_world.py`), then the project's
own seeds, staging models, identity resolution and canonical models run on them, in layer
order. Reconciliation is then checked against the truth in seconds, without servers.
"""

from __future__ import annotations

from hub_sandbox.world import World

from integration_hub.engine import identity, model_build, order_identity, sql_models
from integration_hub.warehouse import Warehouse
from tests.raw_world import raw_tables

# Canonical models read the xref, the customer (invoices) and the product (order lines).
CANONICAL_ORDER = ("customer", "product", "sales_order", "invoice", "payment", "order_line")


def load_canonical(warehouse: Warehouse, world: World) -> dict[str, int]:
    """Raw → seeds → staging → customer_xref → canonical; returns rows per canonical table."""
    for system, resources in raw_tables(world).items():
        for resource, table in resources.items():
            warehouse.write_arrow(f"raw_{system}", resource, table, mode="replace")
    for seed in sql_models.seed_files():
        sql_models.load_seed(warehouse, seed)
    models = {(m.layer, m.name): m for m in sql_models.discover()}
    for (layer, _), model in models.items():
        if layer == "staging":
            model_build.build(warehouse, model)
    identity.build_xref(warehouse)
    order_identity.update(warehouse)
    return {
        name: model_build.build(warehouse, models[("canonical", name)]).row_count for name in CANONICAL_ORDER
    }


_built: dict[int, tuple[Warehouse, dict[str, int]]] = {}


def canonical_warehouse(world: World, tmp_path_factory) -> tuple[Warehouse, dict[str, int]]:
    """One DuckDB warehouse per world per session with the canonical layer built (tests use their own run ids)."""
    if id(world) not in _built:
        warehouse = Warehouse(path=str(tmp_path_factory.mktemp("recon_wh") / "warehouse.duckdb"))
        _built[id(world)] = (warehouse, load_canonical(warehouse, world))
    return _built[id(world)]


def test_the_transform_layer_yields_the_truths_expected_counts(tmp_path_factory, sandbox_world):
    _, counts = canonical_warehouse(sandbox_world, tmp_path_factory)
    for table in ("customer", "sales_order", "invoice", "payment", "product"):
        assert counts[table] == sandbox_world.truth["expected"][f"canonical.{table}"], table
