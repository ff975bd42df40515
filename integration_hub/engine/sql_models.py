"""The SQL-model runner: every `.sql` file under `dbt_like_sql/{staging,canonical}` is one table.

A model is plain DuckDB SQL plus one marker. `{{ union_staging('<entity>') }}` expands to
the `UNION ALL` of every `staging/<system>__<entity>.sql` model (a column missing in one
system is a typed NULL there), so a new system's staging file joins its entity's canonical
union with no edit anywhere else.

Upstream tables are read from the SQL with sqlglot, never listed by hand: `raw_shop.orders`
is asset `raw/shop/orders` (so is its dlt child table `raw_shop.orders__line_items`),
`staging.x` is `staging/x`, `canonical.y` is `canonical/y` and `seeds.z` (a CSV under
`dbt_like_sql/seeds/`) is `seeds/z`. On Postgres the same SQL is
transpiled by sqlglot. A model is built into a scratch table, optionally vetted (the
canonical validation removes rejected rows there), then swapped in within one transaction,
so a failed build never leaves a half table behind.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlglot
from sqlglot import exp
from sqlglot.lineage import lineage

from integration_hub.engine.dependent_views import dependent_views
from integration_hub.warehouse import Connection, Warehouse, literal, quote

SQL_DIR = Path(__file__).resolve().parents[2] / "dbt_like_sql"
LAYERS = ("staging", "canonical")
SEEDS_SCHEMA = "seeds"
_UNION = re.compile(r"\{\{\s*union_staging\(\s*'(\w+)'\s*\)\s*\}\}")


Key = tuple[
    str, ...
]  # an asset key's path, e.g. ("staging", "erp__customer"): the assets layer makes the AssetKey


class SqlModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class SqlModel:
    """One SQL file: its table is `<layer>.<name>`, its asset key `[layer, name]`."""

    layer: str
    name: str
    path: Path
    root: Path

    @property
    def key(self) -> Key:
        return (self.layer, self.name)

    @property
    def table(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def entity(self) -> str:
        """The canonical entity: `customer` for both `canonical/customer` and `staging/erp__customer`."""
        return self.name.split("__")[-1]

    @property
    def system(self) -> str | None:
        return self.name.split("__")[0] if "__" in self.name else None

    @cached_property
    def template(self) -> str:
        return self.path.read_text()

    @property
    def description(self) -> str:
        """The file's leading `--` comment block."""
        lines = []
        for line in self.template.splitlines():
            if not line.startswith("--"):
                break
            lines.append(line[2:].strip())
        return " ".join(lines)

    @cached_property
    def upstream(self) -> list[Key]:
        """Asset keys of the tables this SQL reads (CTE names excluded)."""
        return upstream_keys(expand(self.template, self.root))


def discover(root: Path = SQL_DIR) -> list[SqlModel]:
    """Every model under `root`, staging first, each layer in file-name order."""
    return [
        SqlModel(layer, path.stem, path, root)
        for layer in LAYERS
        for path in sorted((root / layer).glob("*.sql"))
    ]


def in_build_order(models: list[SqlModel]) -> list[SqlModel]:
    """Models ordered so each comes after the models it reads (ties in discovery order)."""
    pending, done, ordered = list(models), set(), []
    keys = {m.key for m in models}
    while pending:
        ready = [m for m in pending if all(k in done or k not in keys for k in m.upstream)]
        if not ready:
            raise SqlModelError(f"models read each other in a cycle: {[m.table for m in pending]}")
        for m in ready:
            ordered.append(m)
            done.add(m.key)
            pending.remove(m)
    return ordered


def seed_files(root: Path = SQL_DIR) -> list[Path]:
    return sorted((root / "seeds").glob("*.csv"))


def union_members(entity: str, root: Path = SQL_DIR) -> list[str]:
    """Staging tables of one entity, one per system, in name order."""
    members = [p.stem for p in sorted((root / "staging").glob(f"*__{entity}.sql"))]
    if not members:
        raise SqlModelError(
            f"union_staging('{entity}') found no staging model: add dbt_like_sql/staging/<system>__{entity}.sql"
        )
    return members


ColumnLookup = Callable[[str, str], list[tuple[str, str]]]


def expand(template: str, root: Path = SQL_DIR, columns: ColumnLookup | None = None) -> str:
    """Replace every `{{ union_staging('e') }}` by a parenthesised UNION ALL of e's staging tables.

    Without `columns` (at definition time) each branch is `SELECT *`, enough to read the
    dependencies; with it (at run time) columns are aligned by name across systems.
    """

    def union(match: re.Match) -> str:
        members = union_members(match.group(1), root)
        if columns is None:
            return "(" + " UNION ALL ".join(f"SELECT * FROM staging.{m}" for m in members) + ")"
        cols = {m: dict(columns("staging", m)) for m in members}
        names: dict[str, str] = {}
        for m in members:
            for name, type_ in cols[m].items():
                names.setdefault(name, type_)
        branches = []
        for m in members:
            select = ", ".join(
                quote(n) if n in cols[m] else f"CAST(NULL AS {t}) AS {quote(n)}" for n, t in names.items()
            )
            branches.append(f"SELECT {select} FROM staging.{m}")
        return "(" + " UNION ALL ".join(branches) + ")"

    return _UNION.sub(union, template)


def table_key(schema: str, table: str) -> Key:
    """The asset key (path) of a warehouse table, by the layer naming convention.

    A dlt child table (`raw_shop.orders__line_items`) is loaded by its parent resource's asset.
    """
    if schema.startswith("raw_"):
        return ("raw", schema.removeprefix("raw_"), table.split("__")[0])
    return (schema, table)


def upstream_keys(sql: str) -> list[Key]:
    """The asset keys (paths) of the tables `sql` reads, CTE names excluded."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return sorted({table_key(t.db, t.name) for t in tree.find_all(exp.Table) if t.db and t.name not in ctes})


def to_dialect(sql: str, dialect: str) -> str:
    """`sql`, written in DuckDB's dialect, for the warehouse's `dialect` (sqlglot transpiles it
    for Postgres): the one place the hub's SQL is translated."""
    return sql if dialect == "duckdb" else sqlglot.transpile(sql, read="duckdb", write=dialect)[0]


_QUERY = re.compile(r"\s*\(*\s*(select|with|from|values)\b", re.IGNORECASE)


def is_query(sql_or_table: str) -> bool:
    """Whether a declaration's model (a reconciliation side, a sync's source) is a query rather
    than a table name: it starts with SELECT, WITH, FROM or VALUES (a table name cannot, unquoted)."""
    return _QUERY.match(sql_or_table) is not None


def table_columns(con: Connection, schema: str, table: str) -> list[tuple[str, str]]:
    rows = con.rows(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    )
    if not rows:
        raise SqlModelError(f"table {schema}.{table} does not exist: materialize it first")
    return [(name, _sql_type(t, p, s)) for name, t, p, s in rows]


def _sql_type(data_type: str, precision: int | None, scale: int | None) -> str:
    """A type name both dialects accept in `CAST(NULL AS …)`."""
    t = data_type.upper()
    if t == "NUMERIC" and precision is not None:
        return f"DECIMAL({precision},{scale or 0})"
    return {"CHARACTER VARYING": "VARCHAR", "TEXT": "VARCHAR", "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP",
            "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ", "DOUBLE PRECISION": "DOUBLE"}.get(t, t)  # fmt: skip


def _set_utc(con: Connection) -> None:
    """Timestamps are UTC everywhere: casting a zoned source time must not depend on the host."""
    con.execute("SET TimeZone = 'UTC'" if con.dialect == "duckdb" else "SET TIME ZONE 'UTC'")


def batches(con: Connection, sql: str, size: int = 250_000) -> Iterator[pa.RecordBatch]:
    """Stream a query as Arrow batches of at most `size` rows: memory stays bounded."""
    if con.dialect == "duckdb":
        reader = con.raw.sql(sql).to_arrow_reader(size)
        yield from reader
        return
    with con.raw.cursor(name=f"stream_{uuid.uuid4().hex[:8]}") as cur:
        cur.execute(sql)
        names: list[str] = []
        while rows := cur.fetchmany(size):
            names = names or [d.name for d in cur.description]
            yield pa.RecordBatch.from_pydict({n: [r[i] for r in rows] for i, n in enumerate(names)})


@dataclass
class Built:
    """What a build produced, for metadata and the audit trail."""

    rows_built: int
    rows_rejected: int
    row_count: int
    columns: list[tuple[str, str]]
    lineage: dict[str, list[tuple[Key, str]]]  # output column -> (upstream table's key, column)


Vet = Callable[[Connection, str, str], int]


def build(warehouse: Warehouse, model: SqlModel, vet: Vet | None = None) -> Built:
    """Build `model` into a scratch table, let `vet(con, schema, scratch)` remove rejects, then swap.

    `vet` returns how many rows it rejected (and must have kept them somewhere, e.g. quarantine).
    """
    warehouse.ensure_schema(model.layer)
    scratch = _scratch_name(model.name)
    with warehouse.connect() as con, _building(con, model.layer, model.name):
        _set_utc(con)
        sql = expand(model.template, model.root, columns=lambda s, t: table_columns(con, s, t))
        try:
            # Built, then vetted, in a transaction each: DuckDB commits a table that was created
            # and then deleted from (the vet's rejects) in one transaction far more slowly.
            with con.transaction():
                con.execute(f"CREATE TABLE {quote(model.layer, scratch)} AS {to_dialect(sql, con.dialect)}")
                rows_built = int(con.scalar(f"SELECT count(*) FROM {quote(model.layer, scratch)}"))
            with con.transaction():
                rejected = vet(con, model.layer, scratch) if vet else 0
            _swap(con, model.layer, scratch, model.name)
        except Exception as exc:
            _drop(con, model.layer, scratch)
            reads = ", ".join("/".join(k) for k in model.upstream)
            raise SqlModelError(
                f"model {model.table} ({model.path.name}) failed: {exc}\n"
                f"It reads {reads}: materialize those first if one is missing, or fix the SQL file."
            ) from exc
        columns = table_columns(con, model.layer, model.name)
        row_count = int(con.scalar(f"SELECT count(*) FROM {quote(model.layer, model.name)}"))
        upstream_schema = _upstream_schema(con, sql)
    return Built(rows_built, rejected, row_count, columns, column_lineage(sql, upstream_schema, columns))


def _swap(con: Connection, schema: str, scratch: str, table: str) -> None:
    """Replace `schema.table` by `schema.scratch` in one transaction: readers see old or new, never half.

    On Postgres the views that read the table (directly or through other views: analysts' and
    BI tools' views on canonical tables) would block the drop. They are dropped with it and
    created again on the new table in the same transaction, with their grants, comments and,
    for materialized views, indexes. A view the new table cannot serve (a column it reads is
    gone) fails the swap, which leaves the old table and every view as they were. DuckDB binds
    views by name when they are queried: nothing to do there.
    """
    with con.transaction():
        views = dependent_views(con, schema, table) if con.dialect == "postgres" else []
        con.execute(f"DROP TABLE IF EXISTS {quote(schema, table)}" + (" CASCADE" if views else ""))
        con.execute(f"ALTER TABLE {quote(schema, scratch)} RENAME TO {quote(table)}")
        for view in views:
            view.create(con)


SCRATCH = "_build_{table}_"  # + 8 hex digits: one build's table before it is swapped in


def _scratch_name(table: str) -> str:
    return SCRATCH.format(table=table) + uuid.uuid4().hex[:8]


@contextlib.contextmanager
def _building(con: Connection, schema: str, table: str) -> Iterator[None]:
    """While a table is (re)built: the only build of it, with the scratch tables of builds that
    died before their swap (a killed process) dropped first, so they cannot pile up.

    DuckDB has one writer, so no other build runs meanwhile; on Postgres a session lock per table
    keeps a second build of the same table waiting, so a live build's scratch is never taken
    for a dead one's.
    """
    lock = f"hashtext({literal('hub.build:' + schema + '.' + table)})"
    if con.dialect == "postgres":
        con.execute(f"SELECT pg_advisory_lock({lock})")
        con.raw.commit()
    try:
        prefix = SCRATCH.format(table=table)
        leftovers = [
            name
            for (name,) in con.rows(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
            )
            if name.startswith(prefix) and len(name) == len(prefix) + 8
        ]
        for name in leftovers:
            _drop(con, schema, name)
        yield
    finally:
        if con.dialect == "postgres":
            con.raw.rollback()  # a failed statement leaves the session in an aborted transaction
            con.execute(f"SELECT pg_advisory_unlock({lock})")
            con.raw.commit()


def _drop(con: Connection, schema: str, scratch: str) -> None:
    """Drop the scratch table of a failed vet or swap (a failed build left none)."""
    with con.transaction():
        con.execute(f"DROP TABLE IF EXISTS {quote(schema, scratch)}")


def replace_table(warehouse: Warehouse, schema: str, table: str, data: pa.Table) -> int:
    """Atomically replace a table with Arrow data (written to a scratch table first)."""
    scratch = _scratch_name(table)
    warehouse.ensure_schema(schema)
    with warehouse.connect() as con, _building(con, schema, table):
        warehouse.write_arrow(schema, scratch, data, mode="replace")
        try:
            _swap(con, schema, scratch, table)
        except Exception:
            _drop(con, schema, scratch)
            raise
    return data.num_rows


def _upstream_schema(con: Connection, sql: str) -> dict:
    tree = sqlglot.parse_one(sql, read="duckdb")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    schema: dict = {}
    for t in tree.find_all(exp.Table):
        if t.db and t.name not in ctes:
            schema.setdefault(t.db, {})[t.name] = dict(table_columns(con, t.db, t.name))
    return schema


def column_lineage(
    sql: str, schema: dict, columns: list[tuple[str, str]]
) -> dict[str, list[tuple[Key, str]]]:
    """Upstream (asset key, column) pairs of each output column, where sqlglot can trace them."""
    out: dict[str, list[tuple[Key, str]]] = {}
    for name, _ in columns:
        try:
            node = lineage(name, sql, schema=schema, dialect="duckdb")
        except Exception:  # lineage is best effort: the model itself already ran
            continue
        deps = {(table_key(s[0], s[1]), s[2]) for s in _sources(node) if s is not None and s[0]}
        if deps:
            out[name] = sorted(deps)
    return out


Source = tuple[str, str, str]  # (schema, table, column) an output column's value is read from


def column_sources(sql: str, schema: dict, columns: Iterable[str]) -> dict[str, set[Source | None]]:
    """Where each of `columns` of `sql`'s output comes from, by sqlglot's column lineage over
    `schema` ({schema: {table: {column: type}}}): the source columns it reads; `None` among
    them for a source sqlglot cannot trace (a star over a table `schema` does not describe, an
    ambiguous name, a column `sql` does not have); no source at all for a value computed from no
    column (a literal, `count(*)`)."""
    try:
        nodes = lineage(None, sql, schema=schema, dialect="duckdb")
    except Exception:  # nothing traced: every column's origin is unknown
        nodes = {}
    return {name: _sources(nodes[name]) if name in nodes else {None} for name in columns}


def _sources(node) -> set[Source | None]:
    found: set[Source | None] = set()
    for leaf in node.walk():
        if leaf.downstream:
            continue
        if isinstance(leaf.expression, exp.Table):
            found.add((leaf.expression.db, leaf.expression.name, leaf.name.split(".")[-1].strip('"')))
        elif isinstance(leaf.expression, exp.Placeholder):  # a column sqlglot could not place
            found.add(None)
    return found


def load_seed(warehouse: Warehouse, path: Path) -> int:
    """Replace `seeds.<file stem>` with the CSV's rows (types inferred by Arrow)."""
    return warehouse.write_arrow(SEEDS_SCHEMA, path.stem, pacsv.read_csv(path), mode="replace")
