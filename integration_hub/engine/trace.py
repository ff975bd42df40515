"""`hub audit trace`: one record's path through the hub, end to end.

Given a canonical id (`SO-0000000042`, `SHOP-1234`, `in_…`, `py_…`, a customer id) or a
system's own id (`shop:1234`, `erp:42`, `billing:in_…`, `crm:001…`), it gathers:
the canonical rows, the source rows they came from (raw tables), the reconciliation
findings that name them, every push to a destination with its outcome (changelog and
dead letters), and the runs that touched any of these rows with their audit entries.

Lookups are declared as data below, read against the table contract
(docs/warehouse-tables.md); a table that does not exist yet is simply skipped.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from dataclasses import dataclass, field

from integration_hub import systems
from integration_hub.warehouse import Connection, Warehouse, quote


def _sources() -> list[tuple[str, str, str]]:
    """Source rows that name a record: (kind of key, raw table, column holding that key)."""
    return [
        (kind, f"raw_{s.name}.{resource}", column)
        for s in systems.registry().values()
        for kind, resource, column in s.trace.raw
    ]


def _system_keys(system: str) -> list[tuple[str, str]]:
    """How a system's own id names a canonical record: [(canonical table, column)]."""
    found = systems.registry().get(system)
    return list(found.trace.ids) if found else []


def _customer_table(system: str) -> tuple[str, str] | None:
    """(raw table, key column) of a system's customer records, as `customer_xref.source_id` names them."""
    found = systems.registry().get(system)
    if found is None or found.trace.customers is None:
        return None
    resource, column = found.trace.customers
    return f"raw_{system}.{resource}", column


# Keys under which other layers (recon findings, sync changelog) may name the record.
FINDING_KEYS = ("order_id", "erp_order_id", "shop_order_id", "invoice_id", "payment_id", "customer_id")


class TraceError(LookupError):
    pass


@dataclass
class Trace:
    ref: str
    subject: dict  # {"entity": ..., "id": ...}
    canonical: dict[str, list[dict]] = field(default_factory=dict)
    sources: dict[str, list[dict]] = field(default_factory=dict)
    findings: dict[str, list[dict]] = field(default_factory=dict)
    pushes: list[dict] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(self.__dict__, default=_jsonable))


def _jsonable(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


class _Reader:
    """Queries that tolerate tables or columns another layer has not created yet."""

    def __init__(self, con: Connection):
        self.con = con
        rows = con.rows("SELECT table_schema, table_name, column_name FROM information_schema.columns")
        self.columns: dict[str, set[str]] = {}
        for schema, table, column in rows:
            self.columns.setdefault(f"{schema}.{table}", set()).add(column)

    def has(self, table: str, column: str | None = None) -> bool:
        return table in self.columns and (column is None or column in self.columns[table])

    def tables(self, schema: str, suffix: str = "") -> list[str]:
        return sorted(t for t in self.columns if t.startswith(f"{schema}.") and t.endswith(suffix))

    def where_in(self, table: str, column: str, values) -> list[dict]:
        values = sorted({str(v) for v in values if v is not None})
        if not values or not self.has(table, column):
            return []
        schema, name = table.split(".")
        marks = ", ".join("?" for _ in values)
        arrow = self.con.arrow(
            f"SELECT * FROM {quote(schema, name)} WHERE CAST({quote(column)} AS VARCHAR) IN ({marks})", values
        )
        return arrow.to_pylist()


def _resolve(reader: _Reader, ref: str) -> list[tuple[str, dict]]:
    """(canonical entity, row) pairs the reference names."""
    if ":" in ref:
        system, source_id = ref.split(":", 1)
        found = [
            (table, row)
            for table, column in _system_keys(system)
            for row in reader.where_in(f"canonical.{table}", column, [source_id])
        ]
        xrefs = [
            x
            for x in reader.where_in("canonical.customer_xref", "source_id", [source_id])
            if x.get("system") == system
        ]
        found += [
            ("customer", row)
            for row in reader.where_in("canonical.customer", "customer_id", [x["customer_id"] for x in xrefs])
        ]
        return found
    for table, column in (
        ("sales_order", "order_id"),
        ("invoice", "invoice_id"),
        ("payment", "payment_id"),
        ("customer", "customer_id"),
        ("product", "product_id"),
    ):
        rows = reader.where_in(f"canonical.{table}", column, [ref])
        if rows:
            return [(table, row) for row in rows]
    return []


def _canonical_family(reader: _Reader, entity: str, row: dict) -> dict[str, list[dict]]:
    """The record and the canonical rows that hang off it (lines, invoices, payments, customer)."""
    family: dict[str, list[dict]] = {entity: [row]}
    if entity == "payment":
        family["invoice"] = reader.where_in("canonical.invoice", "invoice_id", [row.get("invoice_id")])
    if entity == "invoice":
        family["sales_order"] = reader.where_in("canonical.sales_order", "order_id", [row.get("order_id")])
    orders = family.get("sales_order", [])
    if orders:
        ids = [o["order_id"] for o in orders]
        family["order_line"] = reader.where_in("canonical.order_line", "order_id", ids)
        family.setdefault("invoice", reader.where_in("canonical.invoice", "order_id", ids))
    if family.get("invoice") and entity != "payment":
        invoice_ids = [i["invoice_id"] for i in family["invoice"]]
        family["payment"] = reader.where_in("canonical.payment", "invoice_id", invoice_ids)
    customers = {r.get("customer_id") for rows in family.values() for r in rows if r.get("customer_id")}
    if entity != "customer" and customers:
        family["customer"] = reader.where_in("canonical.customer", "customer_id", customers)
    if customers:
        family["customer_xref"] = reader.where_in("canonical.customer_xref", "customer_id", customers)
    return {k: v for k, v in family.items() if v}


def _keys(family: dict[str, list[dict]]) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {k: set() for k in FINDING_KEYS}
    for rows in family.values():
        for row in rows:
            for k in FINDING_KEYS:
                if row.get(k) is not None:
                    keys[k].add(str(row[k]))
    return keys


def trace(warehouse: Warehouse, ref: str) -> list[Trace]:
    """Every record `ref` names, each with its path; raises `TraceError` when none is found."""
    with warehouse.connect() as con:
        reader = _Reader(con)
        subjects = _resolve(reader, ref)
        if not subjects:
            named = ", ".join(f"{s}:" for s in systems.registry())
            raise TraceError(
                f"No canonical record matches {ref!r}. Give a canonical id (SO-…, SHOP-…, in_…, py_…, "
                f"a customer id) or a system id as system:id ({named}), and check "
                "that the nightly job has built canonical.*."
            )
        return [_trace_one(reader, ref, entity, row) for entity, row in subjects]


def _trace_one(reader: _Reader, ref: str, entity: str, row: dict) -> Trace:
    id_column = {"sales_order": "order_id", "customer": "customer_id", "product": "product_id"}.get(
        entity, f"{entity}_id"
    )
    result = Trace(ref=ref, subject={"entity": entity, "id": row.get(id_column)})
    result.canonical = _canonical_family(reader, entity, row)
    keys = _keys(result.canonical)
    for kind, table, column in _sources():
        rows = reader.where_in(table, column, keys.get(kind, ()))
        if rows:
            result.sources[table] = rows
    for xref in result.canonical.get("customer_xref", []):
        found = _customer_table(xref.get("system"))
        if found:
            table, column = found
            result.sources.setdefault(table, []).extend(reader.where_in(table, column, [xref["source_id"]]))
    every_key = set().union(*keys.values())
    for table in reader.tables("recon", "__results"):
        found = reader.where_in(table, "left_key", every_key) + reader.where_in(table, "right_key", every_key)
        if found:
            result.findings[table] = _unique(found)
    result.pushes = reader.where_in("sync.changelog", "key", every_key)
    result.dead_letters = reader.where_in("sync.dead_letter", "key", every_key)
    result.runs = _runs(reader, result)
    return result


def _unique(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        marker = json.dumps(r, sort_keys=True, default=str)
        if marker not in seen:
            seen.add(marker)
            out.append(r)
    return out


def _runs(reader: _Reader, result: Trace) -> list[dict]:
    """The audit rows of every run that left its mark on the record's rows.

    Pushes, dead letters and findings carry their run id. A raw row carries its dlt load
    id, a Unix timestamp taken while the load ran: the run is the one whose `load` audit
    row for that table spans it (or whose details name the load id). Each such run is
    shown with all its hops, since one run moves the record from extract to push.
    """
    if not reader.has("audit.data_movement"):
        return []
    run_ids = {r["run_id"] for r in result.pushes + result.dead_letters if r.get("run_id")}
    run_ids |= {r["run_id"] for rows in result.findings.values() for r in rows if r.get("run_id")}
    for table, rows in result.sources.items():
        schema, name = table.split(".")
        for load_id in sorted({r["_dlt_load_id"] for r in rows if r.get("_dlt_load_id")}):
            at = dt.datetime.fromtimestamp(float(load_id), dt.UTC).replace(tzinfo=None)
            found = reader.con.rows(
                "SELECT DISTINCT run_id FROM audit.data_movement WHERE details LIKE ? "
                "OR (direction = 'load' AND system = ? AND resource = ? AND started_at <= ? AND finished_at >= ?)",
                [f"%{load_id}%", schema.removeprefix("raw_"), name.split("__")[0], at, at],
            )
            run_ids |= {r[0] for r in found}
    movements = reader.where_in("audit.data_movement", "run_id", run_ids)
    return sorted(_unique(movements), key=lambda m: (str(m.get("started_at")), m.get("asset") or ""))
