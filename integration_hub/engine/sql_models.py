"""The SQL-model runner: every `.sql` file under `dbt_like_sql/{staging,canonical}` is one table.

A model is plain DuckDB SQL plus one marker. `{{ union_staging('<entity>') }}` expands to
the `UNION ALL` of every `staging/<system>__<entity>.sql` model (a column missing in one
system is a typed NULL there), so a new system's staging file joins its entity's canonical
union with no edit anywhere else.

Upstream tables are read from the SQL with sqlglot, never listed by hand: `raw_shop.orders`
is asset `raw/shop/orders` (so is its dlt child table `raw_shop.orders__line_items`),
`staging.x` is `staging/x`, `canonical.y` is `canonical/y` and `seeds.z` (a CSV under
`dbt_like_sql/seeds/`) is `seeds/z`. On Postgres the same SQL is
transpiled by sqlglot. A model may declare that it builds incrementally, by key, in a
`{{ config(...) }}` line and a `{% changed_keys %}` block (`engine.incremental`). Building a
table, in full or by changes, is `engine.model_build`.
"""

from __future__ import annotations

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

from integration_hub.engine import incremental
from integration_hub.warehouse import Connection, Warehouse, quote

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

    @cached_property
    def parsed(self) -> incremental.Parsed:
        """The file's config, its SQL and its changed-keys block (`engine.incremental`)."""
        return incremental.parse(self.template, where=str(self.path.name))

    @property
    def config(self) -> incremental.Config:
        return self.parsed.config

    @cached_property
    def changed_keys(self) -> str | None:
        """The changed-keys block, `union_changes` expanded (None for a model built in full)."""
        block = self.parsed.changed_keys
        return None if block is None else expand_changes(block, self.root)

    @property
    def hub_upstream(self) -> list[str]:
        """The hub-built tables it reads (`layer.name`): a full rebuild of one makes this build full."""
        return [f"{k[0]}.{k[1]}" for k in self.upstream if k[0] in LAYERS]

    @cached_property
    def fingerprint(self) -> str:
        seeds = [self.root / "seeds" / f"{k[1]}.csv" for k in self.upstream if k[0] == SEEDS_SCHEMA]
        sql = expand(self.parsed.body, self.root) + (self.changed_keys or "") + repr(self.config)
        return incremental.fingerprint(sql, [p for p in seeds if p.exists()])

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
        """Asset keys of the tables this SQL reads (CTE names excluded), its changed-keys block's
        included; a block may read the model's own table (its rows before the build)."""
        keys = set(upstream_keys(expand(self.parsed.body, self.root)))
        if self.changed_keys:
            keys |= set(upstream_keys(expand(incremental.plain(self.changed_keys), self.root)))
        return sorted(keys - {self.key})


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


_UNION_CHANGES = re.compile(r"\{\{\s*union_changes\(\s*'(\w+)'\s*\)\s*\}\}")


def expand_changes(block: str, root: Path = SQL_DIR) -> str:
    """Replace every `{{ union_changes('e') }}` by the UNION ALL of the changes of e's incremental
    staging models (their keys are the same columns). A member that is not incremental logs no
    change: it is rebuilt in full each time, which makes its readers build in full
    (`incremental.window`'s `watch`)."""

    def union(match: re.Match) -> str:
        members = union_members(match.group(1), root)
        return (
            "(" + " UNION ALL ".join(f"SELECT * FROM {{{{ changes('staging.{m}') }}}}" for m in members) + ")"
        )

    return _UNION_CHANGES.sub(union, block)


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


def set_utc(con: Connection) -> None:
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


def upstream_schema(con: Connection, sql: str) -> dict:
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
