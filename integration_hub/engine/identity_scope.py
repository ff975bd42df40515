"""Which customer records an identity update re-resolves, read and written on the warehouse.

The scope of a change is closed, to a fixpoint in SQL, under two relations: a candidate pair
(the same account number, email or phone, over the current staged records) and a shared id in
the previous `canonical.customer_xref`. Closed under the first, it holds whole connected
components of the candidate graph, so every best match and cluster in it is the one a full
resolution finds; closed under the second, every record that can claim one of its old ids is
in it, so the sticky ids come out the same too, and a cluster that splits or merges is
resolved whole. Records outside the scope keep their rows.

The scope also starts from every id two clusters hold (two anchors): the id rules can give a
new cluster the hash of its anchor while another cluster keeps that same id from before, and a
full resolution then moves one of them to another id, whatever changed.

A staged record with `is_deleted` true takes no part (a table without the column has none).
"""

from __future__ import annotations

import functools

import pyarrow as pa

from integration_hub.engine import model_build, sql_models
from integration_hub.warehouse import Connection, literal, quote

XREF = quote("canonical", "customer_xref")
SCOPE = "_identity_scope"  # temporary tables, each update's connection's own
CHANGED = "_identity_changed"
GONE = "_identity_gone"
KEY_COLUMNS = ("account_number", "email", "phone")  # the candidate rules' columns
LOCK = f"hashtext({literal('hub.build:canonical.customer_xref')})"  # the key replace_table locks

_RECORDS = (
    "SELECT source_system, source_id, account_number, email, phone, name "
    "FROM {{ union_staging('customer') }} AS r"
)
_SEED = """
INSERT INTO {scope} (system, source_id, hop)
WITH r AS ({records})
SELECT system, source_id, 0 FROM {changed}
UNION SELECT r.source_system, r.source_id, 0 FROM r
    WHERE NOT EXISTS (SELECT 1 FROM {xref} AS x WHERE x.system = r.source_system AND x.source_id = r.source_id)
UNION SELECT x.system, x.source_id, 0 FROM {xref} AS x
    WHERE NOT EXISTS (SELECT 1 FROM r WHERE x.system = r.source_system AND x.source_id = r.source_id)
UNION SELECT x.system, x.source_id, 0 FROM {xref} AS x WHERE x.customer_id IN (
    SELECT customer_id FROM {xref} WHERE match_rule = 'anchor' GROUP BY customer_id HAVING count(*) > 1
)
"""
_HOP = """
INSERT INTO {scope} (system, source_id, hop)
WITH r AS ({records}),
frontier AS (
    SELECT r.* FROM r JOIN {scope} AS s ON s.system = r.source_system AND s.source_id = r.source_id
    WHERE s.hop = {hop}
),
found AS (
    {linked}
    UNION SELECT x.system, x.source_id FROM {xref} AS x WHERE x.customer_id IN (
        SELECT p.customer_id FROM {xref} AS p
        JOIN {scope} AS s ON s.system = p.system AND s.source_id = p.source_id WHERE s.hop = {hop}
    )
)
SELECT found.system, found.source_id, {hop} + 1 FROM found
WHERE NOT EXISTS (SELECT 1 FROM {scope} AS s WHERE s.system = found.system AND s.source_id = found.source_id)
"""
_LINKED = (
    "SELECT r.source_system AS system, r.source_id FROM r WHERE r.{column} IN (SELECT {column} FROM frontier)"
)
_IN_SCOPE = (
    "SELECT r0.* FROM ({records}) AS r0 "
    "JOIN {scope} AS s ON s.system = r0.source_system AND s.source_id = r0.source_id"
)
_PG_TYPES = {"string": "text", "large_string": "text", "double": "double precision", "int64": "bigint"}


def records_sql(con: Connection) -> str:
    """The staged customer records that take part in resolution (DuckDB dialect)."""
    lookup = functools.cache(lambda schema, table: sql_models.table_columns(con, schema, table))
    deleted = any(
        name == "is_deleted" for m in sql_models.union_members("customer") for name, _ in lookup("staging", m)
    )
    where = " WHERE NOT coalesce(r.is_deleted, false)" if deleted else ""
    return sql_models.expand(_RECORDS + where, columns=lookup)


def sql(con: Connection, text: str) -> str:
    return sql_models.to_dialect(text, con.dialect)


def lock(con: Connection) -> None:
    """Postgres: one xref writer at a time, full builds included, until this transaction ends."""
    if con.dialect == "postgres":
        con.execute(f"SELECT pg_advisory_xact_lock({LOCK})")


def present_systems(con: Connection, records: str) -> list[str]:
    return sorted(s for (s,) in con.rows(sql(con, f"SELECT DISTINCT source_system FROM ({records}) AS r")))


def previous_precedence(con: Connection) -> dict[str, int]:
    """Each system's precedence in the previous xref (they all change when a system comes or goes)."""
    return dict(con.rows(f"SELECT DISTINCT system, precedence FROM {XREF}"))


def close(con: Connection, records: str, changed: set[tuple[str, str]]) -> int:
    """Fill the scope table: the changed records, the records new to or gone from staging, those
    of an id two clusters hold, and their closure; hop by hop from the last hop's records only.
    Returns its size."""
    upload(con, CHANGED, keys_table(changed))
    con.execute(f"CREATE TEMP TABLE {SCOPE} (system VARCHAR, source_id VARCHAR, hop INTEGER)")
    con.execute(sql(con, _SEED.format(scope=SCOPE, records=records, changed=CHANGED, xref=XREF)))
    linked = " UNION ".join(_LINKED.format(column=c) for c in KEY_COLUMNS)
    hop = 0
    while con.scalar(f"SELECT count(*) FROM {SCOPE} WHERE hop = {hop}"):
        con.execute(sql(con, _HOP.format(scope=SCOPE, records=records, linked=linked, xref=XREF, hop=hop)))
        hop += 1
    return int(con.scalar(f"SELECT count(*) FROM {SCOPE}"))


def in_scope(records: str) -> str:
    """`records` restricted to the scope: whole components, so their candidate pairs are all there."""
    return _IN_SCOPE.format(records=records, scope=SCOPE)


def previous_rows(con: Connection, columns: list[str]) -> pa.Table:
    """The previous xref rows of the scope's records."""
    select = ", ".join(f"x.{quote(c)}" for c in columns)
    return con.arrow(
        f"SELECT {select} FROM {XREF} AS x "
        f"JOIN {SCOPE} AS s ON s.system = x.system AND s.source_id = x.source_id"
    )


def replace_rows(con: Connection, gone: set[tuple[str, str]], rows: pa.Table) -> None:
    """Delete the `gone` records' rows and insert `rows`, in one transaction: readers see the
    previous xref or the new one, and a process killed meanwhile leaves the previous one."""
    upload(con, GONE, keys_table(gone))
    with con.transaction():
        con.execute(
            f"DELETE FROM {XREF} WHERE EXISTS "
            f"(SELECT 1 FROM {GONE} AS g WHERE g.system = {XREF}.system AND g.source_id = {XREF}.source_id)"
        )
        insert(con, XREF, rows)


def keys_table(keys: set[tuple[str, str]]) -> pa.Table:
    ordered = sorted(keys)
    return pa.table(
        {"system": pa.array([k[0] for k in ordered], pa.string()),
         "source_id": pa.array([k[1] for k in ordered], pa.string())}
    )  # fmt: skip


def upload(con: Connection, name: str, data: pa.Table) -> None:
    """A temporary table `name` holding `data` (the connection is new: no such table yet)."""
    cols = ", ".join(f"{quote(f.name)} {_PG_TYPES.get(str(f.type), 'text')}" for f in data.schema)
    con.execute(f"CREATE TEMP TABLE {name} ({cols})")
    insert(con, name, data)


def insert(con: Connection, table: str, data: pa.Table) -> None:
    """Append Arrow rows to `table` (quoted), inside the caller's transaction."""
    names = ", ".join(quote(n) for n in data.schema.names)
    if con.dialect == "duckdb":
        con.raw.register("_identity_rows", data)
        try:
            con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _identity_rows")
        finally:
            con.raw.unregister("_identity_rows")
        return
    with con.raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in zip(*(column.to_pylist() for column in data.columns), strict=True):
            copy.write_row(row)


# ---- which changed records changed what the resolution reads ---------------------------------

INPUTS = quote("_hub", "identity_inputs")  # (system, source_id, fp) of each record as last resolved
_FP_COLUMNS = (*KEY_COLUMNS, "name")  # every field resolution reads (`_RECORDS`)


def _fingerprint(alias: str) -> str:
    """SQL of a record's matching fields as one value; NULL for a record not staged (or deleted)."""
    fields = ", '|', ".join(f"coalesce(CAST({alias}.{c} AS VARCHAR), '∅')" for c in _FP_COLUMNS)
    return f"CASE WHEN {alias}.source_id IS NULL THEN NULL ELSE md5(concat({fields})) END"


def matching_changed(con: Connection, records: str, changed: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of the `changed` records, those whose matching fields differ from when they were last
    resolved, or that came or went: a record touched in a field resolution does not read (its
    `updated_at`, a field the hub itself pushed) re-resolves nothing. Without a record of the
    last resolution, all of them."""
    if not changed or not con.rows(model_build.TABLE_EXISTS, ["_hub", "identity_inputs"]):
        return changed
    with con.transaction():
        con.stage("_identity_touched", keys_table(changed))
        rows = con.rows(
            sql(
                con,
                "SELECT t.system, t.source_id FROM _identity_touched AS t "
                f"LEFT JOIN ({records}) AS r ON r.source_system = t.system AND r.source_id = t.source_id "
                f"LEFT JOIN {INPUTS} AS p ON p.system = t.system AND p.source_id = t.source_id "
                f"WHERE {_fingerprint('r')} IS DISTINCT FROM p.fp",
            )
        )
    return {(s, str(i)) for s, i in rows}


def remember_inputs(con: Connection, records: str, changed: set[tuple[str, str]] | None) -> None:
    """Record the matching fields of the `changed` records (every record when None) as resolved,
    inside the caller's transaction."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {INPUTS} (system VARCHAR, source_id VARCHAR, fp VARCHAR)")
    current = f"SELECT r.source_system, r.source_id, {_fingerprint('r')} FROM ({records}) AS r"
    if changed is None:
        con.execute(f"DELETE FROM {INPUTS}")
        con.execute(sql(con, f"INSERT INTO {INPUTS} {current}"))
        return
    con.stage("_identity_remember", keys_table(changed))
    con.execute(
        f"DELETE FROM {INPUTS} WHERE EXISTS (SELECT 1 FROM _identity_remember AS t "
        f"WHERE t.system = {INPUTS}.system AND t.source_id = {INPUTS}.source_id)"
    )
    con.execute(
        sql(
            con,
            f"INSERT INTO {INPUTS} {current} WHERE EXISTS (SELECT 1 FROM _identity_remember AS t "
            "WHERE t.system = r.source_system AND t.source_id = r.source_id)",
        )
    )
