"""The sandbox world: one truth (TPC-H at a scale factor), every system derived from it.

`build_world` makes the world in four steps, each in its own module: the ERP from
`tpchgen-cli` (`world_erp.py`), the keys of the planted discrepancies (`world_plants.py`),
what the web shop, the CRM, billing and the payment processor hold (`world_systems.py`),
and the truth that records every plant (`world_truth.py`). Everything is set-based SQL in
an in-memory DuckDB; picks are made by ranking keys on `md5(seed, kind, key)`, so a given
`--seed` and `--scale` always plant the same keys.

The result is a set of Arrow tables per system plus the truth; `seed.py` writes them into
each system's own store.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from hub_sandbox.world_erp import erp_tables, make_erp
from hub_sandbox.world_plants import pick_planted_keys, plant_shared_phones
from hub_sandbox.world_systems import make_billing, make_crm, make_settlement, make_shop
from hub_sandbox.world_truth import record_truth

# Seeded records were last touched within this many days before the anchor.
UPDATED_SPREAD_DAYS = 14
# ...and at least this long before it, so that what derives from a record (its shop copy
# +3 min, invoice +5 min, payment +65 min) is before the anchor too. A tick stamps its
# changes with the wall clock; a seeded record after the anchor would put an incremental
# cursor ahead of the tick's records whenever seeding runs just after midnight.
UPDATED_MARGIN = dt.timedelta(hours=2)


@dataclass
class World:
    scale: float
    seed: int
    anchor: dt.datetime
    tables: dict[str, dict[str, pa.Table]] = field(default_factory=dict)  # system -> resource -> table
    truth: dict = field(default_factory=dict)


def tpch_dir(cache: Path, scale: float) -> Path:
    """Generate (once) the TPC-H tables at `scale` as Parquet; reused across seeds."""
    out = cache / f"sf{scale:g}"
    tables = ["customer", "orders", "lineitem", "part", "nation"]
    if all((out / f"{t}.parquet").exists() for t in tables):
        return out
    out.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("tpchgen-cli")
    cmd = [str(exe) if exe.exists() else "tpchgen-cli", "parquet", "-s", f"{scale:g}",
           "--tables", ",".join(tables), "-o", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def build_world(scale: float, seed: int, cache: Path, anchor: dt.datetime | None = None) -> World:
    """The world of `scale` and `seed`, its records last touched before `anchor` (default: today 00:00 UTC).

    The same scale, seed and anchor always give the same tables and truth.
    """
    anchor = anchor or dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    src = tpch_dir(cache, scale)
    db = _generator(seed, anchor)
    make_erp(db, src, anchor)
    pick_planted_keys(db)
    plant_shared_phones(db)
    shop = make_shop(db, anchor)
    crm = make_crm(db)
    billing = make_billing(db)
    world = World(scale=scale, seed=seed, anchor=anchor)
    world.tables = {
        "erp": erp_tables(db),
        "shop": shop,
        "crm": crm,
        "billing": billing,
        "payments": make_settlement(db),
    }
    world.truth = record_truth(db, world)
    db.close()
    return world


def _generator(seed: int, anchor: dt.datetime) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the macros every step uses.

    `u(kind, k)`: a stable number in [0, 1) per seed, kind and key; `touched(kind, k)`: when a
    seeded record was last changed; `ts(x)`: a timestamp as the APIs write it; `initcap(x)`.
    """
    db = duckdb.connect()
    db.execute("SET threads TO 2")
    db.execute("SET enable_progress_bar = false")
    db.execute(f"""
        CREATE MACRO u(kind, k) AS (md5_number('{int(seed)}:' || kind || ':' || k::VARCHAR) % 1000000) / 1000000.0;
        CREATE MACRO initcap(x) AS array_to_string(
            list_transform(string_split(lower(x), ' '), lambda w: upper(w[1]) || w[2:]), ' ');
        CREATE MACRO ts(x) AS strftime(x, '%Y-%m-%dT%H:%M:%S');
        CREATE MACRO touched(kind, k) AS TIMESTAMP '{anchor:%Y-%m-%d %H:%M:%S}'
            - to_seconds((u(kind, k) * {UPDATED_SPREAD_DAYS} * 86400)::BIGINT)
            - to_seconds({int(UPDATED_MARGIN.total_seconds())});
    """)
    return db
