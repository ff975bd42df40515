"""Write the generated world into each system's own store under `$HUB_HOME/sandbox/`.

The ERP goes to SQLite (`erp.sqlite`) or, given a `postgresql://` URL, to schema `erp`
of that database by COPY; each REST system to its record store (`<system>.sqlite`);
the processor's settlement lines to one CSV per day in `landing/payments/`.
`world.json` is written last, so a seed that was interrupted is redone by the next `up`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import multiprocessing
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from hub_sandbox import tls
from hub_sandbox.store import INDEXES, TABLES
from hub_sandbox.truth import RECORD, write_record
from hub_sandbox.world import World, build_world

REST_SYSTEMS = ["crm", "shop", "billing", "support", "marketing"]
# resource -> (id, updated-at and match-key (or None) expressions over the record) each REST store serves.
RESOURCES = {
    "crm": {
        "accounts": ("Id", "LastModifiedDate", "AccountNumber"),
        "contacts": ("Id", "LastModifiedDate", None),
    },
    "shop": {"orders": ("id", "updated_at", None), "customers": ("id", "updated_at", None)},
    # QuickBooks' records keep their change time in `MetaData`, with the company's offset.
    "billing": dict.fromkeys(
        ("invoices", "payments"), ('"Id"', """replace("MetaData"."LastUpdatedTime", '+00:00', 'Z')""", None)
    ),
    "support": {"tickets": ("id", "updated_at", "external_id")},
    "marketing": {"contacts": ("id", "updatedAt", "email")},
}
ERP_KEYS = {
    "customers": ["customer_id"],
    "products": ["product_id"],
    "sales_orders": ["order_id"],
    "sales_order_lines": ["order_id", "line_number"],
}
BATCH_ROWS = 100_000
Progress = Callable[[str], None]


def sandbox_home(home: Path) -> Path:
    return home / "sandbox"


def read_world_info(home: Path) -> dict | None:
    path = sandbox_home(home) / "world.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_world_info(home: Path, info: dict) -> None:
    path = sandbox_home(home) / "world.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(path)


def is_seeded(home: Path, scale: float, seed: int, erp_url: str | None) -> bool:
    """True when the stores hold this very world (same scale, seed and ERP target) intact."""
    info = read_world_info(home)
    if not info or (info["scale"], info["seed"], info.get("erp_url")) != (scale, seed, erp_url):
        return False
    files = [f"{s}.sqlite" for s in REST_SYSTEMS] + [RECORD] + ([] if erp_url else ["erp.sqlite"])
    return all((sandbox_home(home) / f).exists() for f in files) and (
        not erp_url or _erp_in_postgres(erp_url, info.get("world_id"))
    )


def _world_mark(world_id: str) -> str:
    return f"integration-hub sandbox world {world_id}"


def _erp_in_postgres(url: str, world_id: str | None) -> bool:
    """Schema `erp` is complete and carries this home's world mark: a Postgres database can be
    shared, and another home seeding it since would otherwise pass for this home's world."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as con:
            complete, mark = con.execute(
                "SELECT to_regclass('erp.sales_order_lines') IS NOT NULL,"
                " obj_description(to_regnamespace('erp'), 'pg_namespace')"
            ).fetchone()
    except psycopg.OperationalError:
        return False
    return complete and world_id is not None and mark == _world_mark(world_id)


def seed(
    home: Path, scale: float, seed: int, erp_url: str | None = None, progress: Progress | None = None
) -> dict:
    """Generate the world and write every store; returns the new `world.json` content."""
    if not scale > 0:
        raise ValueError(f"scale must be positive (got {scale}); try --scale 0.01")
    say = progress or (lambda _msg: None)
    box = sandbox_home(home)
    box.mkdir(parents=True, exist_ok=True)
    (box / "world.json").unlink(missing_ok=True)
    say(f"generating the world (TPC-H scale {scale:g}, seed {seed})")
    return write_world(home, build_world(scale, seed, box / "tpch"), erp_url, say)


def write_world(
    home: Path, world: World, erp_url: str | None = None, progress: Progress | None = None
) -> dict:
    """Write an already generated world into every store, `world.json` last."""
    say = progress or (lambda _msg: None)
    box = sandbox_home(home)
    box.mkdir(parents=True, exist_ok=True)
    (box / "world.json").unlink(missing_ok=True)
    tls.ensure(home)  # the stand-ins' CA is part of the world: every copy of a home trusts the same one
    say("writing the ERP" + (" (Postgres, schema erp)" if erp_url else "") + " and the REST stores")
    world_id = uuid.uuid4().hex
    erp = (
        in_child(write_erp_postgres, world, erp_url, world_id)
        if erp_url
        else in_child(write_erp_sqlite, world, box / "erp.sqlite")
    )
    for system in REST_SYSTEMS:
        write_rest_store(world, system, box / f"{system}.sqlite")
    erp()
    say("writing settlement files")
    write_settlements(world.tables["payments"]["settlement"], home / "landing" / "payments", clear=True)
    write_record(home, world.truth)
    info = {
        "scale": world.scale,
        "seed": world.seed,
        "anchor": world.anchor.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "erp_url": erp_url,
        "world_id": world_id,
        "ports": None,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ticks": 0,
    }
    write_world_info(home, info)
    return info


def in_child(target: Callable, *args) -> Callable[[], None]:
    """Run `target(*args)` in a forked process (the world is shared, not copied); call the result to join.

    The ERP and the REST stores are written at once, on two cores. The join re-raises a
    failure of the child with its message.
    """
    ctx = multiprocessing.get_context("fork")
    errors = ctx.SimpleQueue()

    def run() -> None:
        try:
            target(*args)
        except BaseException as exc:
            errors.put(f"{type(exc).__name__}: {exc}")
            raise SystemExit(1) from None

    process = ctx.Process(target=run, daemon=True)
    process.start()

    def join() -> None:
        process.join()
        if process.exitcode != 0:
            detail = errors.get() if not errors.empty() else f"exit code {process.exitcode}"
            raise RuntimeError(f"writing the ERP failed: {detail}")

    return join


def _sqlite_ready(table: pa.Table) -> pa.RecordBatchReader:
    """The table in batches sqlite3 can bind: decimals as float, timestamps and dates as text."""
    exprs = []
    for f in table.schema:
        if pa.types.is_decimal(f.type):
            exprs.append(f"{f.name}::DOUBLE")
        elif pa.types.is_timestamp(f.type):
            exprs.append(f"strftime({f.name}, '%Y-%m-%d %H:%M:%S') AS {f.name}")
        elif pa.types.is_date(f.type):
            exprs.append(f"strftime({f.name}, '%Y-%m-%d') AS {f.name}")
        else:
            exprs.append(f.name)
    db = duckdb.connect()
    db.register("t", table)
    return db.sql(f"SELECT {', '.join(exprs)} FROM t").to_arrow_reader(BATCH_ROWS)


def _sql_type(t: pa.DataType, postgres: bool) -> str:
    if pa.types.is_integer(t):
        return "BIGINT" if postgres else "INTEGER"
    if pa.types.is_decimal(t):
        return f"NUMERIC({t.precision}, {t.scale})"
    if pa.types.is_floating(t):
        return "DOUBLE PRECISION" if postgres else "REAL"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    return "TEXT"


def erp_ddl(name: str, schema: pa.Schema, postgres: bool, prefix: str = "") -> str:
    cols = ", ".join(f"{f.name} {_sql_type(f.type, postgres)}" for f in schema)
    return f"CREATE TABLE {prefix}{name} ({cols}, PRIMARY KEY ({', '.join(ERP_KEYS[name])}))"


@contextmanager
def fresh_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """A new SQLite database built without a journal in one transaction, then switched to WAL
    and moved into place (so a bulk load is written once, not once to the WAL and again)."""
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp, isolation_level=None)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-262144")
    con.execute("BEGIN")
    try:
        yield con
        con.execute("COMMIT")
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
    for suffix in ["-wal", "-shm"]:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    tmp.replace(path)


def write_erp_sqlite(world: World, path: Path) -> None:
    with fresh_sqlite(path) as con:
        for name, table in world.tables["erp"].items():
            con.execute(erp_ddl(name, table.schema, postgres=False))
            marks = ", ".join("?" * table.num_columns)
            for batch in _sqlite_ready(table):
                rows = zip(*(c.to_pylist() for c in batch.columns), strict=True)
                con.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
            con.execute(f"CREATE INDEX {name}_updated_at ON {name} (updated_at)")


def write_erp_postgres(world: World, url: str, world_id: str) -> None:
    """Recreate schema `erp` and COPY every table in as CSV, in one transaction; the schema's
    comment marks which seeding (`world.json`'s `world_id`) wrote it."""
    import psycopg

    with psycopg.connect(url) as con, con.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS erp CASCADE")
        cur.execute("CREATE SCHEMA erp")
        cur.execute(f"COMMENT ON SCHEMA erp IS '{_world_mark(world_id)}'")
        for name, table in world.tables["erp"].items():
            cur.execute(erp_ddl(name, table.schema, postgres=True, prefix="erp."))
            with cur.copy(f"COPY erp.{name} FROM STDIN (FORMAT csv)") as copy:
                for batch in table.to_batches(BATCH_ROWS):
                    buf = io.BytesIO()
                    pacsv.write_csv(
                        batch, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed")
                    )
                    copy.write(buf.getvalue())
            cur.execute(f"CREATE INDEX {name}_updated_at ON erp.{name} (updated_at)")
            cur.execute(f"ANALYZE erp.{name}")


def run_script(con: sqlite3.Connection, script: str) -> None:
    """Each statement of `script` inside the open transaction (`executescript` would commit it)."""
    for statement in filter(str.strip, script.split(";")):
        con.execute(statement)


def write_rest_store(world: World, system: str, path: Path) -> None:
    db = duckdb.connect()
    with fresh_sqlite(path) as con:
        run_script(con, TABLES)
        for resource, (id_field, updated_field, key_field) in RESOURCES[system].items():
            table = world.tables.get(system, {}).get(resource)
            if table is None:  # a destination: it starts empty
                continue
            db.register("t", table)
            key = f"{key_field}::VARCHAR" if key_field else "NULL"
            query = f"SELECT '{resource}', {id_field}, {key}, {updated_field}, to_json(t) FROM t"
            for batch in db.sql(query).to_arrow_reader(BATCH_ROWS):
                rows = zip(*(c.to_pylist() for c in batch.columns), strict=True)
                con.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", rows)
            db.unregister("t")
        run_script(con, INDEXES)
    db.close()


def write_settlements(lines: pa.Table, folder: Path, clear: bool = False, suffix: str = "") -> list[Path]:
    """One CSV per payout date (the processor's itemized payout reconciliation report of the
    day, lines as `make_settlement` gives them); returns the files written.

    `suffix` names a further report for a date that already has one (the processor sends
    a new file rather than rewriting a delivered one).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if clear:
        for old in folder.glob("settlement_*.csv"):
            old.unlink()
    lines = lines.sort_by(
        [("automatic_payout_effective_at", "ascending"), ("balance_transaction_id", "ascending")]
    )
    dates = [d[:10] for d in lines.column("automatic_payout_effective_at").to_pylist()]
    written, start = [], 0
    for i in range(1, len(dates) + 1):
        if i == len(dates) or dates[i] != dates[start]:
            path = folder / f"settlement_{dates[start]}{suffix}.csv"
            tmp = path.with_suffix(".part")
            pacsv.write_csv(lines.slice(start, i - start), tmp, pacsv.WriteOptions(quoting_style="needed"))
            tmp.replace(path)  # the sensor never sees a half-written file
            written.append(path)
            start = i
    return written
