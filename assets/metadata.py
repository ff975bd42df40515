"""What every layer shows in the Dagster UI: column schema, a preview of a few rows, lineage, and
the engine's plain results (keys, built tables, check outcomes) as Dagster values.

A staging or canonical table's column schema carries, per column the canonical model documents,
its meaning and owning system as the description and a `pii` tag on personal data
(`canonical/_field.py`), so the asset page's Columns table reads like `canonical/README.md`.

One module so a raw table, a staging model and a canonical entity look alike on their asset
pages, and so the engine never imports Dagster. Previews mask personal data, since the UI is
read by more people than the warehouse is: in staging and canonical tables, the columns the
canonical model flags as PII (`integration_hub.engine.pii`); in any other table (raw), the
columns whose name says personal data (`pii.PERSONAL_NAME`). A raw table keeps the vendor's field
names and fields the canonical model never takes in (addresses, notes), which no canonical
flag can point at, so there the name is the only guide.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from canonical import MODELS
from integration_hub.engine import pii
from integration_hub.engine.checks import CheckOutcome
from integration_hub.engine.model_build import Built
from integration_hub.engine.sql_models import Key
from integration_hub.warehouse import Warehouse, quote

PREVIEW_ROWS = 5
MAX_CELL = 40
MASK = pii.MASK


PII_TAG = "pii"  # a column tag: the canonical model flags the column as personal data


def column_schema(warehouse: Warehouse, schema: str, table: str) -> dg.TableSchema:
    """The table's columns and types as the warehouse reports them."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name=n, type=t) for n, t in warehouse.columns(schema, table)]
    )


def documented_schema(columns: list[tuple[str, str]], entity: str | None) -> dg.TableSchema:
    """`columns` (name, type), each the canonical `entity`'s model documents with its meaning and
    owner as the description and, when it is personal data, the `pii` tag."""
    fields = MODELS[entity].to_schema().columns if entity in MODELS else {}
    out = []
    for name, type_ in columns:
        field = fields.get(name)
        meta = (field.metadata or {}) if field is not None else {}
        description = None
        if field is not None and field.description:
            description = f"{field.description} Owner: {meta.get('owner', 'hub')}."
            if meta.get("pii"):
                description += " Personal data."
        tags = {PII_TAG: "true"} if meta.get("pii") else None
        out.append(dg.TableColumn(name=name, type=type_, description=description, tags=tags))
    return dg.TableSchema(columns=out)


def model_schema(entity: str) -> dg.TableSchema:
    """The canonical entity's documented columns with the model's types: the schema an asset
    declares before its table is built."""
    columns = MODELS[entity].to_schema().columns
    return documented_schema([(n, str(c.dtype)) for n, c in columns.items()], entity)


def preview_md(warehouse: Warehouse, schema: str, table: str, n: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first `n` rows as a Markdown table (dlt's bookkeeping columns left out, PII masked)."""
    with warehouse.connect() as con:
        names = [
            name
            for (name,) in con.rows(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                "ORDER BY ordinal_position",
                [schema, table],
            )
            if not name.startswith("_dlt")
        ]
        if not names:
            return dg.MetadataValue.md(f"_{schema}.{table} has no columns to show_")
        select = ", ".join(quote(name) for name in names)
        rows = con.rows(f"SELECT {select} FROM {quote(schema, table)} LIMIT {int(n)}")
    masked = _masked(schema, table, names)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in rows:
        cells = [
            MASK if hide and value is not None else _cell(value)
            for value, hide in zip(row, masked, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if not rows:
        lines += ["", f"_{schema}.{table} is empty_"]
    return dg.MetadataValue.md("\n".join(lines))


def _masked(schema: str, table: str, names: list[str]) -> list[bool]:
    """Which of a table's columns a preview masks (see the module docstring)."""
    hide = pii.personal_columns(schema, table, names)
    return [name in hide for name in names]


def table_metadata(warehouse: Warehouse, schema: str, table: str) -> dict[str, Any]:
    """`dagster/column_schema` and `preview` of one table, for a materialization's metadata."""
    return {
        "dagster/column_schema": column_schema(warehouse, schema, table),
        "preview": preview_md(warehouse, schema, table),
    }


def _cell(value: Any) -> str:
    text = "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def asset_key(path: Key) -> dg.AssetKey:
    return dg.AssetKey(list(path))


def built_metadata(built: Built, entity: str | None = None) -> dict[str, Any]:
    """Row count, rejects, column schema and column lineage of a built SQL model; the columns of a
    table of canonical `entity` (a staging or canonical model) documented from its model."""
    meta: dict[str, Any] = {
        "dagster/row_count": built.row_count,
        "rows_rejected": built.rows_rejected,
        "build": "incremental" if built.incremental else "full",
        "build_reason": built.reason,
        **({"keys_recomputed": built.keys_recomputed} if built.keys_recomputed is not None else {}),
        **({"keys_changed": built.keys_changed} if built.keys_changed is not None else {}),
        "dagster/column_schema": documented_schema(list(built.columns), entity),
    }
    if built.lineage:
        meta["dagster/column_lineage"] = dg.TableColumnLineage(
            deps_by_column={
                col: [dg.TableColumnDep(asset_key=asset_key(k), column_name=c) for k, c in deps]
                for col, deps in built.lineage.items()
            }
        )
    return meta


def check_result(outcome: CheckOutcome, asset: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    """The engine's verdict as Dagster's check result (dicts and lists shown as JSON)."""
    metadata = {
        k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v for k, v in outcome.metadata.items()
    }
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity[outcome.severity],
        description=outcome.description,
        metadata=metadata,
    )
