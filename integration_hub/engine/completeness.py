"""Completeness: what each source holds now vs what landed in raw vs what reached canonical.

Everything per system comes from its descriptor (`integration_hub.systems`): how to count its
records at the source (`count`), the SQL of a record's key in each raw table (`raw_keys`) and
the SQL counting its canonical rows (`canonical_rows`). A new system is counted, compared
and reported by declaring those; nothing here names a system.

A record deleted at its source stays in raw as a tombstone (`_hub_deleted_at` set,
`integration_hub/systems/kit/deletions.py`). The source no longer counts it, so neither does
the comparison with the source (`landed`); the comparison with canonical (`rows`) still does,
as the canonical models build from every raw row.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from integration_hub import systems
from integration_hub.engine.audit import now
from integration_hub.systems.kit.deletions import DELETED_AT
from integration_hub.warehouse import Catalog, Warehouse, literal, quote

SOURCE_COUNTS = pa.schema([("counted_at", pa.timestamp("us")), ("system", pa.string()),
                           ("resource", pa.string()), ("rows", pa.int64())])  # fmt: skip
NO_ROWS = "SELECT '' AS id, '' AS resource, 0 AS {column} WHERE FALSE"


def raw_keys() -> dict[tuple[str, str], str]:
    """(system, resource) -> SQL of its record key in raw_<system>.<resource>, for every system."""
    return {(s.name, r): key for s in systems.registry().values() for r, key in s.raw_keys.items()}


def canonical_rows() -> dict[tuple[str, str], tuple[str | None, str]]:
    """(system, resource) -> (canonical entity holding its rejects, SQL counting its canonical rows)."""
    return {(s.name, r): rows for s in systems.registry().values() for r, rows in s.canonical_rows.items()}


def count_sources(clients: Mapping[str, dict]) -> dict[tuple[str, str], int]:
    """Rows each countable source reports now, asked the way each reports it.

    `clients` maps a system to its client keyword arguments (location and credentials).
    """
    counts: dict[tuple[str, str], int] = {}
    for name, system in systems.registry().items():
        if system.count is None:
            continue
        kwargs = clients[name]
        try:
            counts |= {(name, r): int(n) for r, n in system.count(**kwargs).items()}
        except Exception as exc:  # any failure to count is the same answer: not counted now
            where = next(iter(kwargs.values()), "")
            where = where if system.location != "database" else "its database"
            raise RuntimeError(
                f"could not count {name}'s rows at {where}: {type(exc).__name__}: {str(exc)[:200]}. "
                "Source completeness asks every source; retry when it answers."
            ) from exc
    return counts


def record_counts(warehouse: Warehouse, counts: Mapping[tuple[str, str], int]) -> None:
    """Append one `recon.source_counts` row per (system, resource), all stamped alike."""
    at = now()
    rows = [{"counted_at": at, "system": s, "resource": r, "rows": n} for (s, r), n in counts.items()]
    warehouse.write_arrow("recon", "source_counts", pa.Table.from_pylist(rows, schema=SOURCE_COUNTS))


def _quarantined(warehouse: Catalog | Warehouse | None, table: str | None, latest_run: bool = False) -> str:
    """SQL counting distinct rejected records of a quarantine table (0 when nothing was ever rejected)."""
    if warehouse is None or table is None or not warehouse.table_exists("quarantine", table):
        return "0"
    only = (f" WHERE run_id = (SELECT run_id FROM quarantine.{table} ORDER BY quarantined_at DESC LIMIT 1)"
            if latest_run else "")  # fmt: skip
    return f"(SELECT count(DISTINCT source_key) FROM quarantine.{table}{only})"


def _refused_now(warehouse: Catalog | Warehouse | None, system: str, resource: str) -> str:
    """SQL counting the rows the latest load of a raw table refused: the refusals outstanding now.

    A refused row holds its source's cursor and is read again by every load until it lands, so
    the latest load's refusals are exactly the rows still kept out; one refused once and loaded
    since is not counted again (nor is a key a malformed row garbled). A source without a cursor
    (dropped files) is not read again: its refusals count until a corrected file replaces them.
    """
    table = f"{system}__{resource}"
    if warehouse is None or not warehouse.table_exists("quarantine", table):
        return "0"
    if not warehouse.table_exists("audit", "data_movement"):
        return _quarantined(warehouse, table)
    latest = (
        "SELECT run_id FROM audit.data_movement WHERE direction = 'load' "
        f"AND system = {literal(system)} AND resource = {literal(resource)} ORDER BY finished_at DESC LIMIT 1"
    )
    incremental = systems.registry().get(system)
    if incremental is not None and not incremental.incremental:
        return _quarantined(warehouse, table)
    return f"(SELECT count(*) FROM quarantine.{table} WHERE run_id = ({latest}))"


def present(warehouse: Catalog | Warehouse | None) -> list[tuple[str, str]]:
    """The (system, resource) raw tables that exist (all declared ones without a warehouse)."""
    keys = raw_keys()
    return sorted(k for k in keys if warehouse is None or warehouse.table_exists(f"raw_{k[0]}", k[1]))


def _alive(warehouse: Catalog | Warehouse | None, system: str, resource: str) -> str:
    """SQL condition of the raw rows not deleted at the source (TRUE when the table has no tombstones)."""
    if warehouse is None or DELETED_AT not in {c for c, _ in warehouse.columns(f"raw_{system}", resource)}:
        return "TRUE"
    return f"{quote(DELETED_AT)} IS NULL"


def landed_sql(warehouse: Warehouse | None = None) -> str:
    """One row per raw table: its distinct records (`rows`, tombstones included, as canonical
    counts them) and those the source still holds plus the ones quarantined at load (`landed`).
    Both counts come from one scan of the table."""
    keys, warehouse = raw_keys(), warehouse and warehouse.catalog()
    parts = [
        f"SELECT '{s}.{r}' AS id, '{s}.{r}' AS resource, c.alive + {_refused_now(warehouse, s, r)} AS landed, "
        f"c.every AS rows FROM (SELECT count(DISTINCT {keys[(s, r)]}) FILTER (WHERE {_alive(warehouse, s, r)}) "
        f"AS alive, count(DISTINCT {keys[(s, r)]}) AS every FROM raw_{s}.{r}) AS c"
        for s, r in present(warehouse)
    ]
    return " UNION ALL ".join(parts) or NO_ROWS.format(column="landed, 0 AS rows")


def kept_sql(warehouse: Warehouse | None = None) -> str:
    """One row per raw table with canonical rows: those rows plus the ones canonical validation quarantined."""
    warehouse = warehouse and warehouse.catalog()
    tables = set(present(warehouse))
    parts = [
        f"SELECT '{s}.{r}' AS id, '{s}.{r}' AS resource, ({sql}) + "
        f"{_quarantined(warehouse, entity and f'canonical_{entity}', latest_run=True)} AS rows FROM (SELECT 1) one"
        for (s, r), (entity, sql) in sorted(canonical_rows().items())
        if (s, r) in tables
    ]
    return " UNION ALL ".join(parts) or NO_ROWS.format(column="rows")


LATEST_COUNTS = """
    SELECT system || '.' || resource AS id, system || '.' || resource AS resource, rows AS landed
    FROM recon.source_counts WHERE counted_at = (SELECT max(counted_at) FROM recon.source_counts)"""
