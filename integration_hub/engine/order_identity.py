"""Order identity: which canonical order each system's order record is, with sticky ids.

Records of one order share a link key: the web-shop order id (the shop's own id, or the
ERP's external reference to it), else the record's own order id. A canonical order keeps the
id it was first given when its second source arrives: a web order the shop reported before
the ERP's nightly load is `SHOP-<id>` and stays so, with the ERP's record (which wins
survivorship) as its content and the ERP's number as `erp_order_number`. A new order takes the
order id of its best-ranked record (the ERP's number when the ERP holds it). Ids any member had
before survive in member rank order; an id a split leaves to two orders goes to the
best-ranked, the other takes its own record's id. The record ids that are no longer an
order's id are its aliases: reverse syncs retire what they pushed under them.

`canonical.order_xref` keeps one row per staged order record (`system`, `source_order_id`,
`link_key`, `order_id`, `member_rank`). It is updated from the staged orders' change logs:
the link groups a changed record left or joined are re-resolved whole, in one transaction
with the log of every canonical order id that gained or lost a record (`engine.incremental`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from integration_hub.engine import identity, identity_scope, incremental, model_build, sql_models
from integration_hub.warehouse import Connection, Warehouse, quote

LAYER, NAME = "canonical", "order_xref"
TABLE = f"{LAYER}.{NAME}"
SCHEMA = pa.schema(
    [("system", pa.string()), ("source_order_id", pa.string()), ("link_key", pa.string()),
     ("order_id", pa.string()), ("member_rank", pa.int64())]
)  # fmt: skip
_RECORDS = """SELECT source_system AS system, order_id AS source_order_id,
       coalesce(CAST(shop_order_id AS VARCHAR), order_id) AS link_key
FROM {{ union_staging('sales_order') }} AS o WHERE order_id IS NOT NULL"""
_CHANGED = "SELECT order_id FROM {{ union_changes('sales_order') }} AS c"


@dataclass
class OrderXrefUpdate:
    rows: int  # rows written
    records: int  # order records re-resolved
    orders_changed: int  # canonical order ids logged as changed
    incremental: bool
    reason: str


def update(warehouse: Warehouse, full: bool = False) -> OrderXrefUpdate:
    """Re-resolve the orders whose records changed since the last update (all of them the first
    time, or when `full`), and swap the result in with its change log."""
    warehouse.ensure_schema(LAYER)
    block = sql_models.expand_changes(_CHANGED)
    refs = incremental.references(block)
    fp = incremental.fingerprint(_RECORDS + block + repr(identity.ranked()), [])
    with warehouse.connect() as con, model_build.building(con, LAYER, NAME):
        incremental.ensure_state(con)
        exists = bool(con.rows(model_build.TABLE_EXISTS, [LAYER, NAME]))
        win = incremental.window(con, TABLE, refs, fp, exists, full=full, watch=_staged("sales_order"))
        records = sql_models.expand(_RECORDS, columns=lambda s, t: sql_models.table_columns(con, s, t))
        changed = (
            None
            if win.full
            else sql_models.expand(
                win.expand(block), columns=lambda s, t: sql_models.table_columns(con, s, t)
            )
        )
        members, before = _scope(con, records, changed, exists)
        rows = resolve(members, before)
        with con.transaction():
            written = _write(con, rows, members, before, win, fp)
    return OrderXrefUpdate(rows.num_rows, len(members), written, not win.full, win.reason)


def _scope(
    con: Connection, records: str, changed: str | None, exists: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(members, before): the current records of every link group a changed record is or was
    in, and the previous xref rows of those groups and records."""
    d = con.dialect
    previous = f"SELECT system, source_order_id, link_key, order_id FROM {quote(LAYER, NAME)}" if exists else (
        "SELECT CAST(NULL AS VARCHAR) AS system, CAST(NULL AS VARCHAR) AS source_order_id, "
        "CAST(NULL AS VARCHAR) AS link_key, CAST(NULL AS VARCHAR) AS order_id WHERE 1 = 0"
    )  # fmt: skip
    if changed is None:
        return con.df(sql_models.to_dialect(records, d)), con.df(sql_models.to_dialect(previous, d))
    links = f"""WITH r AS ({records}), p AS ({previous}), c AS ({changed}),
        l AS (SELECT link_key FROM r WHERE source_order_id IN (SELECT order_id FROM c)
              UNION SELECT link_key FROM p WHERE source_order_id IN (SELECT order_id FROM c))"""
    members = con.df(
        sql_models.to_dialect(f"{links} SELECT r.* FROM r WHERE link_key IN (SELECT link_key FROM l)", d)
    )
    before = con.df(sql_models.to_dialect(
        f"{links} SELECT p.* FROM p WHERE link_key IN (SELECT link_key FROM l) "
        "OR source_order_id IN (SELECT source_order_id FROM r WHERE link_key IN (SELECT link_key FROM l))", d
    ))  # fmt: skip
    return members, before


def resolve(members: pd.DataFrame, before: pd.DataFrame) -> pa.Table:
    """The xref rows of `members`, ids sticky to `before` (the previous rows of these records)."""
    ranked = identity.ranked()
    rank = {s: i for i, s in enumerate(ranked)}
    m = members.assign(rank=members["system"].map(lambda s: rank.get(s, len(ranked))))
    m = m.sort_values(["link_key", "rank", "source_order_id"], kind="stable").reset_index(drop=True)
    m["member_rank"] = m.groupby("link_key").cumcount()
    old = dict(zip(before["source_order_id"], before["order_id"], strict=True))
    # groups in the order of their best member, so the best-ranked group keeps a contested id
    firsts = m[m["member_rank"] == 0].sort_values(["rank", "source_order_id"], kind="stable")
    group_ids: dict[str, str] = {}
    used: set[str] = set()
    by_link = {k: g["source_order_id"].tolist() for k, g in m.groupby("link_key", sort=False)}
    for link, own in zip(firsts["link_key"], firsts["source_order_id"], strict=True):
        candidates = [old[r] for r in by_link[link] if r in old] + [own]
        chosen = next((c for c in candidates if c not in used), own)
        group_ids[link] = chosen
        used.add(chosen)
    m["order_id"] = m["link_key"].map(group_ids)
    return pa.Table.from_pandas(m[SCHEMA.names], schema=SCHEMA, preserve_index=False)


def _write(con: Connection, rows: pa.Table, members: pd.DataFrame, before: pd.DataFrame, win, fp: str) -> int:
    """Replace the scope's rows (all rows in a full update) and log the order ids they touched."""
    target = quote(LAYER, NAME)
    ids = sorted(set(before["order_id"].dropna()) | set(rows.column("order_id").to_pylist()))
    if win.full:
        con.execute(f"DROP TABLE IF EXISTS {target}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {target} (system VARCHAR, source_order_id VARCHAR, link_key VARCHAR, "
        "order_id VARCHAR, member_rank BIGINT)"
    )
    scope = sorted(set(members["source_order_id"]) | set(before["source_order_id"]))
    con.stage("_ox_scope", pa.table({"source_order_id": pa.array(scope, pa.string())}))
    con.stage("_ox_rows", rows)
    con.stage("_ox_ids", pa.table({"order_id": pa.array(ids, pa.string())}))
    if not win.full:
        con.execute(f"DELETE FROM {target} WHERE source_order_id IN (SELECT source_order_id FROM _ox_scope)")
    con.execute(f"INSERT INTO {target} SELECT * FROM _ox_rows")
    seq = incremental.next_seq(con)  # a full update logs no key: its readers rebuild in full
    incremental.log_keys(
        con, LAYER, NAME, "(SELECT order_id FROM _ox_ids WHERE 1 = 0) AS none" if win.full else "_ox_ids", seq
    )
    incremental.finish(con, TABLE, fp, seq, win)
    return len(ids)


def _staged(entity: str) -> list[str]:
    return [f"staging.{m}" for m in sql_models.union_members(entity)]


# ---- the customer map's change log -----------------------------------------------------------

CUSTOMER_XREF = "canonical.customer_xref"
_CHANGED_CUSTOMERS = "SELECT source_system, source_id FROM {{ union_changes('customer') }} AS c"


def update_customers(warehouse: Warehouse, full: bool = False) -> identity.XrefUpdate:
    """`identity.update_xref` on the customer records staged since its last run whose matching
    fields changed (every record the first time, or when `full`), then the log of every
    customer id that gained or lost a record, for the canonical models that read it.

    The xref and its log commit apart: if a run dies between them, the next one reads the same
    staged changes again, and the canonical customer model, whose own watermark did not move
    either, rebuilds those records' customers from their staged changes.
    """
    block = sql_models.expand_changes(_CHANGED_CUSTOMERS)
    fp = incremental.fingerprint(block + repr(identity.ranked()), [])
    with warehouse.connect() as con:
        incremental.ensure_state(con)
        exists = bool(con.rows(model_build.TABLE_EXISTS, ["canonical", "customer_xref"]))
        win = incremental.window(
            con,
            CUSTOMER_XREF,
            incremental.references(block),
            fp,
            exists,
            full=full,
            watch=_staged("customer"),
        )
        changed = None
        if not win.full:
            sql = sql_models.expand(
                win.expand(block), columns=lambda s, t: sql_models.table_columns(con, s, t)
            )
            changed = {(s, str(i)) for s, i in con.rows(sql_models.to_dialect(sql, con.dialect))}
            records = identity_scope.records_sql(con)
            changed = identity_scope.matching_changed(con, records, changed)
    update = identity.update_xref(warehouse, changed)
    ids = pa.table({"customer_id": pa.array(sorted(update.affected_customers), pa.string())})
    full_update = win.full or update.full
    with warehouse.connect() as con, con.transaction():
        identity_scope.remember_inputs(con, identity_scope.records_sql(con), None if full_update else changed)
        con.stage("_cx_ids", ids)
        seq = incremental.next_seq(con)
        incremental.log_keys(
            con,
            "canonical",
            "customer_xref",
            "(SELECT customer_id FROM _cx_ids WHERE 1 = 0) AS none" if full_update else "_cx_ids",
            seq,
        )
        incremental.finish(
            con,
            CUSTOMER_XREF,
            fp,
            seq,
            incremental.Window(True, win.reason, high=win.high) if full_update else win,
        )
    return update
