"""Retention: how long each warehouse table keeps its rows, declared once, enforced daily.

`RULES` is the one place that says it. The `audit/retention` asset (`assets/retention.py`)
deletes what has expired by each table's timestamp column and writes one
`audit.data_movement` row (direction `retention`) per table it deleted from, so what was
removed, when and under which rule can be shown later; `hub retention apply --dry-run`
runs the same code without deleting. The first matching rule wins; tables no rule matches
(canonical, staging, sync state) are kept: they are rebuilt or current state, not history.

Current state is never expired by age, history is. A raw table dlt *merges* into (every
source resource with a primary key: CRM accounts, shop orders, invoices, ERP tables,
settlement lines) holds the current version of each record, and a record keeps the load id
of its last change: expiring it by load age would delete live records that simply did not
change for a while, and the cursor would never read them again. Only tables dlt *appends*
to (a history of loads, such as `settlement_files`) expire with their load
(`_dlt_load_id` → `_dlt_loads.inserted_at`); their child tables (`…__…`) go with their
parent row. A raw table dlt's stored schema does not describe is kept: when unsure, keep.
dlt's own tables (`_dlt_loads`, `_dlt_pipeline_state`, `_dlt_version`) are never touched:
cursors and schemas live there.
"""

import datetime as dt
import fnmatch
import json
from dataclasses import dataclass

from integration_hub.engine import audit
from integration_hub.warehouse import Connection, Warehouse, quote

LOAD_ID = "_dlt_load_id"  # the timestamp is the load's `_dlt_loads.inserted_at`
HISTORY = "append"  # dlt's write disposition of a table that is a history of loads


@dataclass(frozen=True)
class Rule:
    """Rows of `schema.table` (glob patterns) older than `days` by `column` expire.

    `keep_if` is a SQL condition of rows that never expire under this rule (an open
    dead letter waits for a person, however old it is).
    """

    schema: str
    table: str
    days: int
    column: str
    keep_if: str | None = None

    @property
    def name(self) -> str:
        """How reports name the rule: `<schema>.<table> after <days> days by <column>`."""
        return f"{self.schema}.{self.table} after {self.days} days by {self.column}"

    def matches(self, schema: str, table: str) -> bool:
        return fnmatch.fnmatchcase(schema, self.schema) and fnmatch.fnmatchcase(table, self.table)

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}: {self.days} days by {self.column}"


RULES = [
    Rule("raw_*", "*", days=30, column=LOAD_ID),  # appended history only: see the module docstring
    Rule("sync", "changelog", days=90, column="changed_at"),
    Rule("sync", "dead_letter", days=90, column="resolved_at", keep_if="status = 'open'"),
    Rule("audit", "data_movement", days=7 * 365, column="finished_at"),
    Rule("quarantine", "*", days=30, column="quarantined_at"),
    Rule("recon", "*__results", days=400, column="run_at"),
    Rule("recon", "summary", days=400, column="run_at"),
]


@dataclass
class Deletion:
    """What a rule does to one table: the rows it deletes (or would, in a dry run), or why it keeps them."""

    schema: str
    table: str
    rule: Rule
    cutoff: dt.datetime
    rows_before: int
    rows_deleted: int
    kept: str | None = None  # why no row of this table can expire (current state)

    def to_dict(self) -> dict:
        rule = f"{self.rule} ({self.kept})" if self.kept else str(self.rule)
        return {"schema": self.schema, "table": self.table, "rule": rule,
                "cutoff": self.cutoff.isoformat(), "rows_deleted": self.rows_deleted}  # fmt: skip


def rule_for(schema: str, table: str, rules: list[Rule] = RULES) -> Rule | None:
    return next((r for r in rules if r.matches(schema, table)), None)


def _tables(con: Connection) -> list[tuple[str, str]]:
    return con.rows(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' ORDER BY 1, 2"
    )


def _columns(con: Connection, schema: str, table: str) -> set[str]:
    rows = con.rows(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    )
    return {r[0] for r in rows}


def dispositions(con: Connection, dataset: str) -> dict[str, str]:
    """How dlt loads each table of a dataset (`merge`, `append`, `replace`), from its newest stored
    schema of each name; a child table loads as its root does."""
    if not con.scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = '_dlt_version'",
        [dataset],
    ):
        return {}
    tables: dict[str, dict] = {}
    for (text,) in con.rows(
        f"SELECT schema FROM {quote(dataset, '_dlt_version')} v WHERE inserted_at = "
        f"(SELECT max(inserted_at) FROM {quote(dataset, '_dlt_version')} w WHERE w.schema_name = v.schema_name)"
    ):
        tables |= json.loads(text).get("tables", {})

    def disposition(name: str) -> str | None:
        table = tables.get(name, {})
        return table.get("write_disposition") or (
            disposition(table["parent"]) if table.get("parent") else None
        )

    return {name: found for name in tables if (found := disposition(name))}


def _expired(
    con: Connection, schema: str, table: str, rule: Rule, cutoff: dt.datetime, seen: dict, found: dict
):
    """(SQL condition, params) of expired rows, or (None, reason) when the table keeps every row.

    `found` holds the conditions of the tables already seen, so a child table's rows expire
    with their parent row's (or when their parent row is gone), in a dry run as well."""
    columns = _columns(con, schema, table)
    if rule.column != LOAD_ID:
        if rule.column not in columns:
            raise ValueError(
                f"Retention rule {rule.schema}.{rule.table} names column {rule.column!r}, which "
                f"{schema}.{table} does not have; fix the rule in integration_hub/engine/retention_rules.py."
            )
        return f"{quote(rule.column)} < ?", [cutoff]
    if schema not in seen:
        seen[schema] = dispositions(con, schema)
    loaded_as = seen[schema].get(table)
    if loaded_as != HISTORY:
        return None, f"current state: dlt {loaded_as or 'does not describe it'}, never expired by age"
    if LOAD_ID in columns:
        loads = quote(schema, "_dlt_loads")
        return f"{LOAD_ID} IN (SELECT load_id FROM {loads} WHERE inserted_at < ?)", [
            cutoff.replace(tzinfo=dt.UTC)
        ]
    parent = table.rsplit("__", 1)[0]
    if "_dlt_parent_id" not in columns:
        return None, "no load to date its rows by"
    parent_expired, params = found.get((schema, parent), ("FALSE", []))
    living = f"SELECT _dlt_id FROM {quote(schema, parent)} WHERE NOT ({parent_expired})"
    return f"_dlt_parent_id NOT IN ({living})", params


def apply_retention(
    warehouse: Warehouse, now: dt.datetime | None = None, rules: list[Rule] = RULES, dry_run: bool = False
) -> list[Deletion]:
    """Delete every expired row in one transaction (count them only, with `dry_run`); returns one
    `Deletion` per table a rule matches, including the tables whose rows cannot expire."""
    now = now or audit.now()
    deletions: list[Deletion] = []
    seen: dict[str, dict[str, str]] = {}
    found: dict[tuple[str, str], tuple[str, list]] = {}
    with warehouse.connect() as con, con.transaction():
        # Parents before children (`orders` before `orders__line_items`), so orphans are seen.
        for schema, table in sorted(_tables(con), key=lambda t: (t[0], t[1].count("__"), t[1])):
            rule = rule_for(schema, table, rules)
            # dlt's own tables, and its `<dataset>_staging` scratch schemas (emptied every merge load).
            if rule is None or table.startswith("_dlt_") or schema.endswith("_staging"):
                continue
            cutoff = now - dt.timedelta(days=rule.days)
            qualified = quote(schema, table)
            before = int(con.scalar(f"SELECT count(*) FROM {qualified}"))
            expired, params = _expired(con, schema, table, rule, cutoff, seen, found)
            if expired is None:
                deletions.append(Deletion(schema, table, rule, cutoff, before, 0, kept=params))
                continue
            if rule.keep_if:
                expired = f"({expired}) AND NOT ({rule.keep_if})"
            found[(schema, table)] = (expired, params)
            deleted = int(con.scalar(f"SELECT count(*) FROM {qualified} WHERE {expired}", params or None))
            if deleted and not dry_run:
                con.execute(f"DELETE FROM {qualified} WHERE {expired}", params or None)
            deletions.append(Deletion(schema, table, rule, cutoff, before, deleted))
    return deletions


def record_deletions(warehouse: Warehouse, run_id: str, deletions: list[Deletion]) -> None:
    """One audit row per table that lost rows: rows_in = rows before, rows_out = rows deleted."""
    audit.record(
        warehouse,
        *(
            audit.Movement(
                run_id=run_id,
                asset="audit/retention",
                system="hub",
                direction="retention",
                resource=f"{d.schema}.{d.table}",
                rows_in=d.rows_before,
                rows_out=d.rows_deleted,
                details={
                    "rule": d.rule.name,
                    "days": d.rule.days,
                    "column": d.rule.column,
                    "cutoff": d.cutoff.isoformat(),
                },
            )
            for d in deletions
            if d.rows_deleted
        ),
    )
