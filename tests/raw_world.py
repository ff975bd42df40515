"""Raw tables shaped as dlt lands them, straight from the world generator (no servers, no dlt).

Transform tests use this to start from a known truth in seconds: column names go through
dlt's snake_case naming, ISO timestamps become zoned timestamps (dlt's `iso_timestamp`
detection), shop orders are flattened with their line items in the child table
`orders__line_items` (`_dlt_parent_id`, `_dlt_list_idx`), billing's QuickBooks records are
flattened and split into their child tables as the hub's REST kit lands them (`invoices__line`,
`invoices__custom_field`, `payments__line`, `payments__line__linked_txn`), every row gets `_dlt_id`
and every root row the `_dlt_load_id` of one load (`LOAD_ID`).
"""

from __future__ import annotations

import dagster as dg
import duckdb
import pyarrow as pa
from dlt.common.normalizers.naming.snake_case import NamingConvention
from hub_sandbox.world import World

from integration_hub.systems import payments
from integration_hub.systems.kit.arrow import flatten, key_row_id, split_children
from integration_hub.warehouse import Warehouse

_naming = NamingConvention()
# REST fields the systems send as ISO 8601 strings.
_ISO = {"created_at", "updated_at", "created_date", "last_modified_date", "created"}
LOAD_ID = "1700000000.000001"  # one dlt load id for the whole world, older than any real load


def _dlt_shape(db: duckdb.DuckDBPyConnection, table: pa.Table, key: str) -> pa.Table:
    names = [_naming.normalize_path(n) for n in table.schema.names]  # as dlt names data fields
    db.register("t", table.rename_columns(names))
    cols = ", ".join(f"CAST({n} AS TIMESTAMPTZ) AS {n}" if n in _ISO else n for n in names)
    out = db.sql(
        f"SELECT {cols}, md5('{key}:' || CAST(row_number() OVER () AS VARCHAR)) AS _dlt_id, "
        f"'{LOAD_ID}' AS _dlt_load_id, CAST(NULL AS TIMESTAMP) AS _hub_deleted_at FROM t"
    )
    result = out.to_arrow_table()
    db.unregister("t")
    return result


def _quickbooks_shape(table: pa.Table, resource: str) -> dict[str, pa.Table]:
    """A QuickBooks entity's root and child tables, as `kit.arrow` lands them."""
    flat = flatten(table)
    flat = flat.append_column("_dlt_load_id", pa.array([LOAD_ID] * flat.num_rows, pa.string()))
    flat = flat.append_column(
        "_dlt_id", pa.array([key_row_id(v) for v in flat["Id"].to_pylist()], pa.string())
    )
    out = {}
    for name, part in split_children(flat, resource):
        part = part.rename_columns([_naming.normalize_path(n) for n in part.schema.names])
        for i, field in enumerate(part.schema):
            if field.name.startswith("meta_data__"):
                part = part.set_column(i, field.name, part[field.name].cast(pa.timestamp("us", "UTC")))
        if name == resource:
            part = part.append_column("_hub_deleted_at", pa.nulls(part.num_rows, pa.timestamp("us")))
        out[_naming.normalize_path(name)] = part
    return out


def raw_tables(world: World) -> dict[str, dict[str, pa.Table]]:
    """The world's tables as `raw_<system>.<resource>` would hold them after a dlt load."""
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    out: dict[str, dict[str, pa.Table]] = {}
    for system, resources in world.tables.items():
        for resource, table in resources.items():
            if (system, resource) == ("shop", "orders"):
                continue
            if system == "billing":
                out.setdefault(system, {}).update(_quickbooks_shape(table, resource))
                continue
            if (
                system == "payments"
            ):  # Stripe's `payment_metadata[key]` columns, named as the source lands them
                table = table.rename_columns([payments.landed_name(c) for c in table.column_names])
            out.setdefault(system, {})[resource] = _dlt_shape(db, table, f"{system}.{resource}")
    db.register("o", world.tables["shop"]["orders"])
    orders = db.sql(
        """
        SELECT * EXCLUDE (customer, line_items, created_at, updated_at),
               CAST(created_at AS TIMESTAMPTZ) AS created_at, CAST(updated_at AS TIMESTAMPTZ) AS updated_at,
               customer.id AS customer__id, customer.email AS customer__email,
               customer.first_name AS customer__first_name, customer.last_name AS customer__last_name,
               customer.phone AS customer__phone, md5('shop.orders:' || CAST(id AS VARCHAR)) AS _dlt_id,
               '"""
        + LOAD_ID
        + """' AS _dlt_load_id, CAST(NULL AS TIMESTAMP) AS _hub_deleted_at
        FROM o"""
    ).to_arrow_table()
    lines = db.sql("""
        SELECT li.id, li.sku, li.quantity, li.price, li.total_discount, li.line_total,
               md5('shop.orders:' || CAST(o.id AS VARCHAR)) AS _dlt_parent_id,
               CAST(li_idx - 1 AS BIGINT) AS _dlt_list_idx,
               md5('shop.orders__line_items:' || CAST(li.id AS VARCHAR)) AS _dlt_id
        FROM (SELECT id, unnest(line_items) AS li, generate_subscripts(line_items, 1) AS li_idx FROM o) AS o
    """).to_arrow_table()
    out["shop"]["orders"] = orders
    out["shop"]["orders__line_items"] = lines
    db.close()
    return out


def load_raw_world(warehouse: Warehouse, world: World) -> None:
    """Replace every `raw_<system>` table with the world's data."""
    for system, resources in raw_tables(world).items():
        for resource, table in resources.items():
            warehouse.write_arrow(f"raw_{system}", resource, table, mode="replace")


def materialize_transforms(warehouse: Warehouse, extra: list | None = None) -> dg.ExecuteInProcessResult:
    """Every transform asset and check, in process, against `warehouse`."""
    from assets import transforms

    return dg.materialize(
        [*transforms.ASSETS, *transforms.CHECKS, *(extra or [])],
        resources={"warehouse": warehouse},
        instance=dg.DagsterInstance.ephemeral(),
    )
