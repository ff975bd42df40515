"""Canonical validation: the pandera models of `canonical/` applied to the warehouse.

Three kinds of rule, each where it is cheapest and most useful:

- **keys and types** (blocking asset check): key columns unique and not null, every model
  column present with a compatible type. Checked in SQL on the whole table, since a key
  is a property of the table, not of a chunk.
- **row rules** (hard field and row checks): run by pandera on bounded chunks while the
  canonical table is built; a failing row goes to `quarantine.canonical_<entity>` with the
  checks it failed and is left out of the table. Reported as a warning check with counts
  and a sample.
- **soft rules** (fields declared `soft=True`, checks with `raise_warning`): reported in the
  same warning check; the row stays.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
from pandera.errors import SchemaErrors

from canonical import MODELS, MONEY_TOLERANCE
from integration_hub.engine import quarantine, sql_models
from integration_hub.engine.checks import CheckOutcome
from integration_hub.warehouse import Connection, Warehouse, quote

CHUNK_ROWS = 250_000
SAMPLE_SIZE = 5
# Warehouse type families each pandera dtype accepts (DuckDB and Postgres spellings).
_TYPE_FAMILIES = {
    "string": ("VARCHAR", "TEXT", "CHARACTER VARYING"),
    "int": ("BIGINT", "INTEGER", "SMALLINT", "HUGEINT", "INT"),
    "float": ("DECIMAL", "NUMERIC", "DOUBLE", "REAL", "FLOAT"),
    "datetime": ("TIMESTAMP", "DATE"),
    "bool": ("BOOLEAN",),
}


def key_columns(entity: str) -> list[str]:
    schema = MODELS[entity].to_schema()
    if schema.unique:
        return list(schema.unique)
    return [name for name, col in schema.columns.items() if col.unique]


def _strict(check: pa.Check) -> pa.Check:
    hard = copy.deepcopy(check)
    hard.raise_warning = False
    return hard


def row_schemas(entity: str) -> tuple[pa.DataFrameSchema, pa.DataFrameSchema]:
    """(hard, soft) row-level schemas of an entity: uniqueness is left to the table-wide check."""
    full = MODELS[entity].to_schema()
    hard_cols, soft_cols = {}, {}
    for name, col in full.columns.items():
        hard = copy.deepcopy(col)
        hard.checks = [c for c in col.checks if not c.raise_warning]
        hard.unique = False
        hard_cols[name] = hard
        soft = [_strict(c) for c in col.checks if c.raise_warning]
        if soft:
            soft_cols[name] = pa.Column(checks=soft, nullable=True, name=name)
    hard_schema = pa.DataFrameSchema(
        hard_cols, checks=[c for c in full.checks if not c.raise_warning], coerce=True, name=entity
    )
    soft_schema = pa.DataFrameSchema(
        soft_cols, checks=[_strict(c) for c in full.checks if c.raise_warning], name=entity
    )
    return hard_schema, soft_schema


def to_frame(batch: pa_arrow.RecordBatch) -> pd.DataFrame:
    """An Arrow batch as pandas: decimals as float (checks compare, they do not sum)."""
    columns = [
        col.cast(pa_arrow.float64()) if pa_arrow.types.is_decimal(col.type) else col for col in batch.columns
    ]
    table = pa_arrow.Table.from_arrays(columns, names=batch.schema.names)
    return table.to_pandas(date_as_object=False)


def _failures(schema: pa.DataFrameSchema, df: pd.DataFrame) -> tuple[dict[int, list[str]], list[str]]:
    """(failed checks per row index, table-level problems) of `df` against `schema`."""
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as err:
        rows: dict[int, list[str]] = {}
        problems: list[str] = []
        for case in err.failure_cases.itertuples(index=False):
            table_level = case.schema_context == "DataFrameSchema" or case.column is None
            what = str(case.check) if table_level else f"{case.column}: {case.check}"
            if pd.isna(case.index):
                problems.append(f"{what} ({case.failure_case})")
            else:
                rows.setdefault(int(case.index), []).append(what)
        return rows, sorted(set(problems))
    return {}, []


@dataclass
class RowReport:
    """What row validation found while building one canonical table."""

    entity: str
    rows_checked: int = 0
    quarantined: int = 0
    by_check: Counter = field(default_factory=Counter)
    soft_by_check: Counter = field(default_factory=Counter)
    sample: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.quarantined and not self.soft_by_check

    def check_result(self) -> CheckOutcome:
        return CheckOutcome(
            name="row_rules",
            passed=self.passed,
            severity="WARN",
            metadata={
                "rows_checked": self.rows_checked,
                "quarantined": self.quarantined,
                "quarantine_table": f"quarantine.canonical_{self.entity}",
                "failures_by_check": dict(self.by_check),
                "soft_failures_by_check": dict(self.soft_by_check),
                "sample": self.sample,
                "validation_seconds": round(self.seconds, 3),
            },
        )


class RowValidator:
    """The `vet` step of a canonical build: quarantine failing rows, drop them from the scratch table."""

    def __init__(self, warehouse: Warehouse, entity: str, run_id: str, chunk_rows: int = CHUNK_ROWS):
        self.warehouse, self.entity, self.run_id, self.chunk_rows = warehouse, entity, run_id, chunk_rows
        self.hard, self.soft = row_schemas(entity)
        self.keys = key_columns(entity)
        self.report = RowReport(entity)

    def __call__(self, con: Connection, schema: str, table: str) -> int:
        started = time.perf_counter()
        rejects: list[tuple[str, str, dict]] = []
        reject_keys: list[tuple] = []
        for batch in sql_models.batches(con, f"SELECT * FROM {quote(schema, table)}", self.chunk_rows):
            df = to_frame(batch)
            self.report.rows_checked += len(df)
            failed, problems = _failures(self.hard, df)
            if problems:
                raise ValueError(
                    f"canonical.{self.entity} breaks its model as a whole: {'; '.join(problems)}. "
                    f"Fix the SQL model (dbt_like_sql/canonical/{self.entity}.sql) or canonical/{self.entity}.py."
                )
            for index, checks in failed.items():
                row = df.loc[index]
                key = tuple(row[k] for k in self.keys)
                reject_keys.append(key)
                reason = "; ".join(sorted(set(checks)))
                payload = json.loads(row.to_json(date_format="iso"))
                rejects.append(("|".join(str(k) for k in key), reason, payload))
                self.report.by_check.update(set(checks))
                if len(self.report.sample) < SAMPLE_SIZE:
                    self.report.sample.append({"key": rejects[-1][0], "reason": reason})
            good = self.hard.validate(df.drop(index=list(failed))) if failed else self.hard.validate(df)
            soft_failed, _ = _failures(self.soft, good)
            for checks in soft_failed.values():
                self.report.soft_by_check.update(set(checks))
        self.report.quarantined = quarantine.quarantine(
            self.warehouse, f"canonical_{self.entity}", self.run_id, rejects, asset=f"canonical/{self.entity}"
        )
        _delete_keys(con, schema, table, self.keys, reject_keys)
        self.report.seconds = time.perf_counter() - started
        return len(reject_keys)


def _delete_keys(con: Connection, schema: str, table: str, keys: list[str], values: list[tuple]) -> None:
    """Delete rows by key, a bounded number per statement."""
    match = " AND ".join(f"{quote(k)} IS NOT DISTINCT FROM ?" for k in keys)
    for start in range(0, len(values), 200):
        chunk = values[start : start + 200]
        where = " OR ".join(f"({match})" for _ in chunk)
        params = [
            None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for key in chunk for v in key
        ]
        con.execute(f"DELETE FROM {quote(schema, table)} WHERE {where}", params)


def _family(dtype: str) -> str:
    d = dtype.lower()
    if d == "bool":
        return "bool"
    if "int" in d:
        return "int"
    if "float" in d:
        return "float"
    if "datetime" in d or "timestamp" in d:
        return "datetime"
    return "string"


KEYS_AND_TYPES = "keys_and_types"


def keys_and_types(warehouse: Warehouse, entity: str) -> CheckOutcome:
    """The blocking check: the table has every model column in a compatible type, and a clean key.

    Named, since it is evaluated in the model's own step beside its other checks."""
    schema = MODELS[entity].to_schema()
    if not warehouse.table_exists("canonical", entity):
        return CheckOutcome(
            name=KEYS_AND_TYPES,
            passed=False,
            severity="ERROR",
            metadata={"problem": f"canonical.{entity} does not exist"},
        )
    actual = {name: t.upper() for name, t in warehouse.columns("canonical", entity)}
    problems = []
    for name, col in schema.columns.items():
        family = _family(str(col.dtype))
        if name not in actual:
            problems.append(f"column {name} is missing")
        elif not actual[name].startswith(_TYPE_FAMILIES[family]):
            problems.append(f"column {name} is {actual[name]}, the model wants {family}")
    keys = key_columns(entity)
    cols = ", ".join(quote(k) for k in keys)
    null_keys = " OR ".join(f"{quote(k)} IS NULL" for k in keys)
    table = quote("canonical", entity)
    with warehouse.connect() as con:
        rows = int(con.scalar(f"SELECT count(*) FROM {table}"))
        nulls = int(con.scalar(f"SELECT count(*) FROM {table} WHERE {null_keys}"))
        dupes = int(
            con.scalar(
                f"SELECT count(*) FROM (SELECT {cols} FROM {table} GROUP BY {cols} HAVING count(*) > 1) AS d"
            )
        )
        sample = con.rows(
            f"SELECT {cols}, count(*) FROM {table} GROUP BY {cols} HAVING count(*) > 1 "
            f"ORDER BY {cols} LIMIT {SAMPLE_SIZE}"
        )
    if nulls:
        problems.append(f"{nulls} rows with an empty key ({', '.join(keys)})")
    if dupes:
        problems.append(f"{dupes} key values occur more than once ({', '.join(keys)})")
    return CheckOutcome(
        name=KEYS_AND_TYPES,
        passed=not problems,
        severity="ERROR",
        metadata={
            "rows": rows,
            "key": ", ".join(keys),
            "null_keys": nulls,
            "duplicate_keys": dupes,
            "problems": problems,
            "sample_duplicates": [[str(v) for v in r] for r in sample],
        },
    )


def order_totals(warehouse: Warehouse) -> CheckOutcome:
    """Soft cross-table rule: an order's total equals the sum of its lines, within a cent."""
    sql = f"""
        SELECT o.order_id, o.total_amount, coalesce(l.lines_total, 0) AS lines_total
        FROM canonical.sales_order AS o
        LEFT JOIN (SELECT order_id, sum(line_amount) AS lines_total FROM canonical.order_line GROUP BY order_id) AS l
          ON l.order_id = o.order_id
        WHERE abs(o.total_amount - coalesce(l.lines_total, 0)) > {MONEY_TOLERANCE}
    """
    with warehouse.connect() as con:
        count = int(con.scalar(f"SELECT count(*) FROM ({sql}) AS off"))
        sample = con.rows(f"SELECT * FROM ({sql}) AS off ORDER BY order_id LIMIT {SAMPLE_SIZE}")
    return CheckOutcome(
        passed=count == 0,
        severity="WARN",
        metadata={
            "orders_off": count,
            "tolerance_usd": MONEY_TOLERANCE,
            "sample": [[r[0], str(r[1]), str(r[2])] for r in sample],
        },
    )
