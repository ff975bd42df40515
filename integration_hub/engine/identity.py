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
"""

from __future__ import annotations

import hashlib
import re
from difflib import SequenceMatcher

import pandas as pd
import pyarrow as pa

from integration_hub import systems
from integration_hub.engine import model_build, sql_models
from integration_hub.warehouse import Warehouse

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

_RECORDS = "SELECT source_system, source_id, account_number, email, phone, name FROM {{ union_staging('customer') }} AS r"
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
        records_sql = sql_models.expand(_RECORDS, columns=lambda s, t: sql_models.table_columns(con, s, t))
        pairs_sql = f"WITH r AS ({records_sql}) " + " UNION ALL ".join(
            _CANDIDATES.format(rule=rule, column=_RULE_COLUMN[rule]) for rule in RULES
        )
        records = con.df(sql_models.to_dialect(records_sql, con.dialect))
        pairs = con.df(sql_models.to_dialect(pairs_sql, con.dialect))
    return records, pairs


def resolve(records: pd.DataFrame, pairs: pd.DataFrame, previous: pd.DataFrame | None = None) -> pa.Table:
    """The customer_xref table for `records`, given candidate `pairs` and the previous xref."""
    present = sorted(records["source_system"].unique())
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


def build_xref(warehouse: Warehouse) -> pa.Table:
    """Resolve identities from the staged customers and swap in `canonical.customer_xref`."""
    records, pairs = candidates(warehouse)
    xref = resolve(records, pairs, previous_xref(warehouse))
    model_build.replace_table(warehouse, "canonical", "customer_xref", xref)
    return xref
