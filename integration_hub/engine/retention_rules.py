"""Retention: how long each warehouse table keeps its rows, declared once, enforced daily.

`RULES` is the one place that says it. The `audit/retention` asset (`assets/retention.py`) deletes what has
expired by each table's timestamp column and writes one `audit.data_movement` row
(direction `retention`) per table it deleted from, so what was removed, when and under
which rule can be shown later. The first matching rule wins; tables no rule matches
(canonical, staging, sync state) are kept: they are rebuilt or current state, not history.

dlt raw tables carry no timestamp of their own that means "loaded at": their rows expire
with their load (`_dlt_load_id` → `_dlt_loads.inserted_at`), and child tables
(`orders__line_items`) go with their parent row (`_dlt_parent_id` → parent `_dlt_id`).
"""

import datetime as dt
import fnmatch
from dataclasses import dataclass

from integration_hub.engine import audit
from integration_hub.warehouse import Connection, Warehouse

LOAD_ID = "_dlt_load_id"  # the timestamp is the load's `_dlt_loads.inserted_at`


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

    def matches(self, schema: str, table: str) -> bool:
        return fnmatch.fnmatchcase(schema, self.schema) and fnmatch.fnmatchcase(table, self.table)


RULES = [
    Rule("raw_*", "*", days=30, column=LOAD_ID),
    Rule("sync", "changelog", days=90, column="changed_at"),
    Rule("sync", "dead_letter", days=90, column="resolved_at", keep_if="status = 'open'"),
    Rule("audit", "data_movement", days=7 * 365, column="finished_at"),
    Rule("quarantine", "*", days=30, column="quarantined_at"),
    Rule("recon", "*__results", days=400, column="run_at"),
    Rule("recon", "summary", days=400, column="run_at"),
]


@dataclass
class Deletion:
    schema: str
    table: str
    rule: Rule
    cutoff: dt.datetime
    rows_before: int
    rows_deleted: int


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


def _count(con: Connection, qualified: str) -> int:
    return int(con.scalar(f"SELECT count(*) FROM {qualified}"))


def apply_retention(
    warehouse: Warehouse, now: dt.datetime | None = None, rules: list[Rule] = RULES
) -> list[Deletion]:
    """Delete every expired row, in one transaction; returns what was deleted per table."""
    now = now or audit.now()
    deletions: list[Deletion] = []
    with warehouse.connect() as con:
        tables = _tables(con)
        present = set(tables)
        # Parents before children (`orders` before `orders__line_items`), so orphans are seen.
        for schema, table in sorted(tables, key=lambda t: (t[0], t[1].count("__"), t[1])):
            rule = rule_for(schema, table, rules)
            # dlt's own tables, and its `<dataset>_staging` scratch schemas (emptied every merge load).
            if rule is None or table.startswith("_dlt_") or schema.endswith("_staging"):
                continue
            cutoff = now - dt.timedelta(days=rule.days)
            qualified = f'"{schema}"."{table}"'
            columns = _columns(con, schema, table)
            if rule.column == LOAD_ID and LOAD_ID in columns and (schema, "_dlt_loads") in present:
                expired = f'{LOAD_ID} IN (SELECT load_id FROM "{schema}"._dlt_loads WHERE inserted_at < ?)'
                params = [cutoff.replace(tzinfo=dt.UTC)]  # dlt stores it WITH TIME ZONE
            elif rule.column == LOAD_ID:
                parent = table.rsplit("__", 1)[0]
                if "_dlt_parent_id" not in columns or (schema, parent) not in present:
                    continue  # no load to date it by: kept
                expired = f'_dlt_parent_id NOT IN (SELECT _dlt_id FROM "{schema}"."{parent}")'
                params = []
            elif rule.column in columns:
                expired = f'"{rule.column}" < ?'
                params = [cutoff]
            else:
                raise ValueError(
                    f"Retention rule {rule.schema}.{rule.table} names column {rule.column!r}, which "
                    f"{schema}.{table} does not have; fix the rule in integration_hub/engine/retention_rules.py."
                )
            if rule.keep_if:
                expired = f"({expired}) AND NOT ({rule.keep_if})"
            before = _count(con, qualified)
            deleted = int(con.scalar(f"SELECT count(*) FROM {qualified} WHERE {expired}", params or None))
            if deleted:
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
                details={"days": d.rule.days, "column": d.rule.column, "cutoff": d.cutoff.isoformat()},
            )
            for d in deletions
            if d.rows_deleted
        ),
    )
