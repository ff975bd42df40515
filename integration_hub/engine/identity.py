"""Identity resolution: which canonical customer each system's customer record is.

Rules, strongest first (a record takes the first rule that finds a match):

1. `external_id`: the same account number (the CRM's AccountNumber is the ERP's account_number);
2. `email`: the same normalised email (staging lower-cases and trims it);
3. `phone_name`: the same E.164 phone *and* a similar name, because a phone alone is shared
   by households and companies (two ERP customers with one phone stay two customers).

A record only matches one that ranks before it (by system precedence, then source id), so
every match points towards the anchor of its customer and one pass in rank order assigns
the clusters. Records of the master system (the ERP) never merge with each other: its key
is authoritative. Candidate pairs come from the warehouse in SQL; pandas compares names
only for phone candidates, in bounded chunks.

Customer ids are deterministic and sticky: a cluster keeps the id any of its records had in
the previous `canonical.customer_xref`; a new cluster's id is a hash of its anchor record.

`update_xref` resolves again only what a change can affect (identity_scope finds it) and
replaces just those rows; it equals a full resolution from the same previous xref. A staged
record marked `is_deleted` takes no part.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

import pandas as pd
import pyarrow as pa

from integration_hub import systems
from integration_hub.engine import identity_scope as scope
from integration_hub.engine import model_build, sql_models
from integration_hub.warehouse import Connection, Warehouse

RULES = ("external_id", "email", "phone_name")
CONFIDENCE = {"anchor": 1.0, "external_id": 1.0, "email": 0.95}
MIN_NAME_SIMILARITY = 0.85
CHUNK_ROWS = 50_000

SCHEMA = pa.schema(
    [
        ("system", pa.string()), ("source_id", pa.string()), ("customer_id", pa.string()),
        ("match_rule", pa.string()), ("confidence", pa.float64()), ("matched_to", pa.string()),
        ("precedence", pa.int64()), ("member_rank", pa.int64()),
    ]
)  # fmt: skip

_CANDIDATES = """
SELECT a.source_system, a.source_id, b.source_system AS to_system, b.source_id AS to_id,
       '{rule}' AS rule, a.name, b.name AS to_name
FROM r AS a JOIN r AS b ON a.{column} = b.{column}
WHERE a.{column} IS NOT NULL AND NOT (a.source_system = b.source_system AND a.source_id = b.source_id)
"""
_RULE_COLUMN = {"external_id": "account_number", "email": "email", "phone_name": "phone"}


def ranked() -> tuple[str, ...]:
    """Survivorship order of customer master data: the systems that declare an `identity_rank`,
    lowest first (rank 0, the ERP, is the master)."""
    declared = [s for s in systems.registry().values() if s.identity_rank is not None]
    return tuple(s.name for s in sorted(declared, key=lambda s: s.identity_rank))


def precedence(system: str, present: list[str]) -> int:
    """Rank of a system among those present: the ranked ones first, then any other by name."""
    first = ranked()
    order = [s for s in first if s in present] + sorted(s for s in present if s not in first)
    return order.index(system)


def normalise_name(name: str | None) -> str:
    return re.sub(r"\s+", " ", (name or "").strip().lower())


def name_similarity(a: pd.Series, b: pd.Series) -> pd.Series:
    """Similarity 0..1 of normalised names, exact equality short-circuited."""
    na, nb = a.map(normalise_name), b.map(normalise_name)
    sim = (na == nb).astype(float)
    todo = sim < 1
    sim[todo] = [SequenceMatcher(None, x, y).ratio() for x, y in zip(na[todo], nb[todo], strict=True)]
    return sim


def customer_id_for(system: str, source_id: str) -> str:
    return "cus_" + hashlib.sha256(f"{system}:{source_id}".encode()).hexdigest()[:16]


def candidates(warehouse: Warehouse) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records, candidate pairs): every staged customer record and every pair sharing a key."""
    with warehouse.connect() as con:
        return _read(con, scope.records_sql(con))


def _read(con: Connection, records_sql: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The records `records_sql` selects and their candidate pairs (all of them: a pair's two
    records are both selected, as every record is, or as the scope holds whole components)."""
    pairs_sql = f"WITH r AS ({records_sql}) " + " UNION ALL ".join(
        _CANDIDATES.format(rule=rule, column=_RULE_COLUMN[rule]) for rule in RULES
    )
    records = con.df(sql_models.to_dialect(records_sql, con.dialect))
    pairs = con.df(sql_models.to_dialect(pairs_sql, con.dialect))
    return records, pairs


def resolve(
    records: pd.DataFrame,
    pairs: pd.DataFrame,
    previous: pd.DataFrame | None = None,
    present: list[str] | None = None,
) -> pa.Table:
    """The customer_xref table for `records`, given candidate `pairs` and the previous xref.

    `present`: the systems with staged records, when `records` are only some of them (precedence
    ranks the systems present, not those in a subset)."""
    present = sorted(records["source_system"].unique()) if present is None else sorted(present)
    rank = {s: precedence(s, present) for s in present}
    records = records.assign(precedence=records["source_system"].map(rank))
    records = records.sort_values(["precedence", "source_id"], kind="stable").reset_index(drop=True)
    order = {
        (s, i): n for n, (s, i) in enumerate(zip(records["source_system"], records["source_id"], strict=True))
    }
    master = [s for s in present if rank[s] == 0]

    best = _best_matches(pairs, order, master)
    cluster: dict[tuple[str, str], tuple[str, str]] = {}
    for key in order:  # rank order: a match target is always resolved before its followers
        target = best.get(key)
        cluster[key] = cluster[target[0]] if target else key

    ids = _cluster_ids(cluster, order, previous)
    rows = []
    member_rank: dict[tuple[str, str], int] = {}
    for key in order:
        root = cluster[key]
        member_rank[root] = member_rank.get(root, -1) + 1
        target = best.get(key)
        rule, confidence = (target[1], target[2]) if target else ("anchor", CONFIDENCE["anchor"])
        rows.append(
            {
                "system": key[0], "source_id": key[1], "customer_id": ids[root], "match_rule": rule,
                "confidence": confidence, "matched_to": f"{target[0][0]}:{target[0][1]}" if target else None,
                "precedence": rank[key[0]], "member_rank": member_rank[root],
            }
        )  # fmt: skip
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _best_matches(
    pairs: pd.DataFrame, order: dict[tuple[str, str], int], master: list[str]
) -> dict[tuple[str, str], tuple[tuple[str, str], str, float]]:
    """Per record, its strongest match among records ranked before it: (target, rule, confidence)."""
    if pairs.empty:
        return {}
    pairs = pairs.assign(
        src=[order.get(k) for k in zip(pairs["source_system"], pairs["source_id"], strict=True)],
        dst=[order.get(k) for k in zip(pairs["to_system"], pairs["to_id"], strict=True)],
    )
    same_master = pairs["source_system"].isin(master) & pairs["to_system"].isin(master)
    pairs = pairs[(pairs["dst"] < pairs["src"]) & ~same_master].copy()
    pairs["confidence"] = pairs["rule"].map(CONFIDENCE)
    phone = pairs["rule"] == "phone_name"
    scored = []
    for start in range(0, int(phone.sum()), CHUNK_ROWS):
        chunk = pairs[phone].iloc[start : start + CHUNK_ROWS]
        scored.append(name_similarity(chunk["name"], chunk["to_name"]))
    if scored:
        sim = pd.concat(scored)
        pairs.loc[sim.index, "confidence"] = (0.9 * sim).round(3)
        pairs = pairs.drop(sim[sim < MIN_NAME_SIMILARITY].index)
    pairs["rule_rank"] = pairs["rule"].map({r: i for i, r in enumerate(RULES)})
    pairs = pairs.sort_values(["src", "rule_rank", "confidence", "dst"], ascending=[True, True, False, True])
    pairs = pairs.drop_duplicates("src")
    return {
        (s, i): ((ts, ti), rule, float(conf))
        for s, i, ts, ti, rule, conf in zip(
            pairs["source_system"], pairs["source_id"], pairs["to_system"], pairs["to_id"],
            pairs["rule"], pairs["confidence"], strict=True,
        )
    }  # fmt: skip


def _cluster_ids(
    cluster: dict[tuple[str, str], tuple[str, str]],
    order: dict[tuple[str, str], int],
    previous: pd.DataFrame | None,
) -> dict[tuple[str, str], str]:
    """Each cluster root's customer id: an id one of its records had before, else a hash of the root."""
    before: dict[tuple[str, str], str] = {}
    if previous is not None and not previous.empty:
        before = dict(
            zip(
                zip(previous["system"], previous["source_id"], strict=True),
                previous["customer_id"],
                strict=True,
            )
        )
    ids: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    for key in order:  # rank order: the best-ranked record decides which old id survives
        root = cluster[key]
        old = before.get(key)
        if root not in ids and old and old not in used:
            ids[root] = old
            used.add(old)
    for root in set(cluster.values()):
        ids.setdefault(root, customer_id_for(*root))
    return ids


def previous_xref(warehouse: Warehouse) -> pd.DataFrame | None:
    if not warehouse.table_exists("canonical", "customer_xref"):
        return None
    with warehouse.connect() as con:
        return con.df("SELECT system, source_id, customer_id FROM canonical.customer_xref")


@dataclass
class XrefUpdate:
    """What an identity update changed: downstream rebuilds exactly the `affected_customers`."""

    rows: int  # xref rows written
    changed_records: set[tuple[str, str]] = field(default_factory=set)  # row added, removed or changed
    affected_customers: set[str] = field(default_factory=set)  # every id such a record had before or has now
    resolved_records: int = 0  # records resolved again
    full: bool = False  # every record was resolved (asked for, or a system came or went)


def build_xref(warehouse: Warehouse) -> pa.Table:
    """Resolve identities from the staged customers and swap in `canonical.customer_xref`."""
    return _full(warehouse)[1]


def update_xref(warehouse: Warehouse, changed: set[tuple[str, str]] | None) -> XrefUpdate:
    """Resolve again the records a change can affect and replace just their xref rows.

    `changed`: the (system, source_id) records whose staged row changed since the last
    resolution (new, updated or now deleted); `None` resolves every record. Records new to
    staging or gone from it are found even when `changed` misses them. The result equals a
    full resolution from the same previous xref (identity_scope says why).
    """
    if changed is not None and warehouse.table_exists("canonical", "customer_xref"):
        with warehouse.connect() as con:
            update = _incremental(con, changed)
        if update is not None:
            return update
    return _full(warehouse)[0]


def _incremental(con: Connection, changed: set[tuple[str, str]]) -> XrefUpdate | None:
    """The update on the scope of `changed`; None when precedence moved and every row changes."""
    scope.lock(con)
    records_sql = scope.records_sql(con)
    present = scope.present_systems(con, records_sql)
    if scope.previous_precedence(con) != {s: precedence(s, present) for s in present}:
        return None
    scope.close(con, records_sql, changed)
    records, pairs = _read(con, scope.in_scope(records_sql))
    before = scope.previous_rows(con, SCHEMA.names)
    after = resolve(records, pairs, before.to_pandas(), present)
    moved, affected = _diff(before, after)
    written = after.filter(_holds(after, moved))
    scope.replace_rows(con, moved, written)
    return XrefUpdate(written.num_rows, moved, affected, len(records))


def _full(warehouse: Warehouse) -> tuple[XrefUpdate, pa.Table]:
    records, pairs = candidates(warehouse)
    before = SCHEMA.empty_table()
    if warehouse.table_exists("canonical", "customer_xref"):
        with warehouse.connect() as con:
            before = con.arrow(f"SELECT {', '.join(SCHEMA.names)} FROM {scope.XREF}")
    xref = resolve(records, pairs, before.to_pandas())
    moved, affected = _diff(before, xref)
    model_build.replace_table(warehouse, "canonical", "customer_xref", xref)
    return XrefUpdate(xref.num_rows, moved, affected, len(records), full=True), xref


def _diff(before: pa.Table, after: pa.Table) -> tuple[set[tuple[str, str]], set[str]]:
    """(records whose row was added, removed or changed; every id those rows held)."""
    old, new = _by_record(before), _by_record(after)
    moved = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
    affected = {rows[key][0] for rows in (old, new) for key in moved if key in rows}
    return moved, affected


def _by_record(xref: pa.Table) -> dict[tuple[str, str], tuple]:
    """Each record's row, customer id first."""
    names = ["customer_id"] + [n for n in SCHEMA.names if n not in ("system", "source_id", "customer_id")]
    values = zip(*(xref.column(n).to_pylist() for n in names), strict=True)
    keys = zip(xref.column("system").to_pylist(), xref.column("source_id").to_pylist(), strict=True)
    return dict(zip(keys, values, strict=True))


def _holds(xref: pa.Table, records: set[tuple[str, str]]) -> pa.Array:
    keys = zip(xref.column("system").to_pylist(), xref.column("source_id").to_pylist(), strict=True)
    return pa.array([key in records for key in keys], pa.bool_())
