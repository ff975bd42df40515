"""Incremental identity resolution equals a full one from the same previous xref.

Small staging customer tables get random changes (inserts, key and name updates, soft and hard
deletes, merges and splits of clusters); after each step the xref `update_xref` leaves is
compared, row for row, with `resolve` over every current record from the previous xref.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pandas as pd
import pytest

from integration_hub.engine import identity, identity_scope
from integration_hub.warehouse import Warehouse

SYSTEMS = ("erp", "crm", "shop")
COLUMNS = (
    "source_system VARCHAR, source_id VARCHAR, account_number VARCHAR, name VARCHAR, email VARCHAR, "
    "phone VARCHAR, country_code VARCHAR, segment VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP, "
    "is_deleted BOOLEAN, deleted_at TIMESTAMP"
)
NAMES = (
    "Ada Lovelace",
    "ada  lovelace",
    "Ada Lovelac",
    "Grace Hopper",
    "Grace Hoper",
    "Alan Turing",
    "Edsger Dijkstra",
)
KEY_FIELDS = ("account_number", "email", "phone")


@dataclass
class World:
    """The staged customers, kept in step with their tables."""

    warehouse: Warehouse
    rng: random.Random
    rows: dict[tuple[str, str], dict] = field(default_factory=dict)
    serial: int = 0

    def fresh(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def key_value(self, column: str) -> str | None:
        """Mostly a value from a small pool (so records meet), sometimes none or a new one."""
        draw = self.rng.random()
        if draw < 0.3:
            return None
        if draw < 0.45:
            return self.fresh({"account_number": "N", "email": "new", "phone": "+49"}[column])
        pool = {"account_number": "C{}", "email": "p{}@x.org", "phone": "+4930{}"}[column]
        return pool.format(self.rng.randrange(25))

    def new_record(self, system: str | None = None) -> tuple[str, str]:
        system = system or self.rng.choice(SYSTEMS)
        fields = {c: self.key_value(c) for c in KEY_FIELDS}
        if system == "shop":
            fields["account_number"] = None
        fields["name"] = self.rng.choice(NAMES)
        key = (system, self.fresh(""))
        self.put(key, fields)
        return key

    def put(self, key: tuple[str, str], fields: dict, deleted: bool = False) -> None:
        row = {**self.rows.get(key, {}), **fields, "is_deleted": deleted}
        self.rows[key] = row
        self._write(key, row)

    def drop(self, key: tuple[str, str]) -> None:
        """The record vanishes from staging (a hard delete)."""
        del self.rows[key]
        self._write(key, None)

    def _write(self, key: tuple[str, str], row: dict | None) -> None:
        table = f"staging.{key[0]}__customer"
        with self.warehouse.connect() as con:
            con.execute(f"DELETE FROM {table} WHERE source_id = ?", [key[1]])
            if row is not None:
                con.execute(
                    f"INSERT INTO {table} (source_system, source_id, account_number, name, email, phone, "
                    "is_deleted, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
                    + ("CURRENT_TIMESTAMP)" if row["is_deleted"] else "NULL)"),
                    [*key, row["account_number"], row["name"], row["email"], row["phone"], row["is_deleted"]],
                )

    def live(self) -> list[tuple[str, str]]:
        return sorted(k for k, r in self.rows.items() if not r["is_deleted"])


def make_tables(warehouse: Warehouse, without_deleted: tuple[str, ...] = ()) -> None:
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS staging")
        for system in SYSTEMS:
            columns = COLUMNS.split(", ")
            if system in without_deleted:
                columns = [c for c in columns if not c.startswith(("is_deleted", "deleted_at"))]
            con.execute(f"CREATE TABLE staging.{system}__customer ({', '.join(columns)})")


def change(world: World, xref: pd.DataFrame) -> set[tuple[str, str]]:
    """One random change to one or two records; the records it touched."""
    rng, live = world.rng, world.live()
    kind = rng.choice(("insert", "update", "update", "delete", "drop", "undelete", "merge", "split"))
    if kind == "insert" or len(live) < 4:
        return {world.new_record()}
    key = rng.choice(live)
    if kind == "update":
        column = rng.choice(("name", *KEY_FIELDS))
        value = rng.choice(NAMES) if column == "name" else world.key_value(column)
        world.put(key, {column: None if (key[0] == "shop" and column == "account_number") else value})
    elif kind == "delete":
        world.put(key, {}, deleted=True)
    elif kind == "drop":
        world.drop(key)
    elif kind == "undelete":
        gone = sorted(k for k, r in world.rows.items() if r["is_deleted"])
        key = rng.choice(gone) if gone else key
        world.put(key, {})
    elif kind == "merge":  # take another record's key, joining its cluster
        other = rng.choice(live)
        column = "email" if key[0] == "shop" else rng.choice(KEY_FIELDS)
        world.put(key, {column: world.rows[other][column], "name": world.rows[other]["name"]})
        return {key}
    else:  # split: a member of a bigger cluster gets keys of its own
        sizes = xref.groupby("customer_id")["source_id"].transform("size")
        members = sorted(
            set(zip(xref["system"][sizes > 1], xref["source_id"][sizes > 1], strict=True)) & set(live)
        )
        key = rng.choice(members) if members else key
        world.put(key, {c: world.fresh("split") for c in KEY_FIELDS if world.rows[key][c] is not None})
    return {key}


def xref_rows(warehouse: Warehouse) -> pd.DataFrame:
    if not warehouse.table_exists("canonical", "customer_xref"):
        return identity.SCHEMA.empty_table().to_pandas()
    with warehouse.connect() as con:
        rows = con.df("SELECT * FROM canonical.customer_xref")
    return rows.sort_values(["system", "source_id"]).reset_index(drop=True)


def full_from(warehouse: Warehouse, previous: pd.DataFrame) -> pd.DataFrame:
    """What a full resolution from `previous` gives for the current staging."""
    records, pairs = identity.candidates(warehouse)
    xref = identity.resolve(records, pairs, previous).to_pandas()
    return xref.sort_values(["system", "source_id"]).reset_index(drop=True)


def row_tuples(xref: pd.DataFrame) -> list[tuple]:
    """The rows in SCHEMA's column order, by record, a missing value as None whatever its dtype."""
    rows = xref[list(identity.SCHEMA.names)].astype(object).itertuples(index=False)
    return sorted((tuple(None if pd.isna(v) else v for v in row) for row in rows), key=lambda r: r[:2])


def members(xref: pd.DataFrame) -> dict[str, frozenset]:
    return {
        cid: frozenset(zip(g["system"], g["source_id"], strict=True))
        for cid, g in xref.groupby("customer_id")
    }


def check_step(warehouse: Warehouse, touched: set[tuple[str, str]] | None) -> identity.XrefUpdate:
    """Update, then compare with a full resolution from the same previous xref."""
    before = xref_rows(warehouse)
    update = identity.update_xref(warehouse, touched)
    after = xref_rows(warehouse)
    expected = full_from(warehouse, before)
    assert row_tuples(after) == row_tuples(expected)

    old = {row[:2]: row for row in row_tuples(before)}
    new = {row[:2]: row for row in row_tuples(after)}
    differ = {k for k in old.keys() | new.keys() if (k in old) != (k in new) or old[k] != new[k]}
    assert update.changed_records == differ
    ids = {rows[k][2] for rows in (old, new) for k in differ if k in rows}  # customer_id
    assert update.affected_customers == ids
    m_before, m_after = members(before), members(after)
    moved = {cid for cid in m_before.keys() | m_after.keys() if m_before.get(cid) != m_after.get(cid)}
    assert moved <= update.affected_customers
    assert update.rows == (len(after) if update.full else len(differ & new.keys()))
    return update


def run_sequence(warehouse: Warehouse, seed: int, steps: int) -> list[identity.XrefUpdate]:
    world = World(warehouse, random.Random(seed))
    for _ in range(30):
        world.new_record()
    first = check_step(warehouse, None)
    assert first.full and first.resolved_records == 30
    updates = []
    for step in range(steps):
        touched: set[tuple[str, str]] = set()
        for _ in range(world.rng.choice((1, 1, 2, 3))):
            touched |= change(world, xref_rows(warehouse))
        updates.append(check_step(warehouse, None if step % 10 == 9 else touched))
    return updates


@pytest.fixture
def duck(tmp_path) -> Warehouse:
    warehouse = Warehouse(path=tmp_path / "warehouse.duckdb")
    make_tables(warehouse)
    return warehouse


@pytest.mark.parametrize("seed", range(8))
def test_incremental_equals_full_over_random_changes(duck, seed):
    with duck.session():
        updates = run_sequence(duck, seed, steps=25)
    incremental = [u for u in updates if not u.full]
    assert len(incremental) >= 15
    # the scope follows the change: most steps resolve a fraction of the records again
    assert sum(u.resolved_records < 20 for u in incremental) >= len(incremental) // 2
    assert any(u.changed_records for u in incremental)


def test_incremental_equals_full_on_postgres(pg_warehouse):
    make_tables(pg_warehouse)
    updates = run_sequence(pg_warehouse, seed=7, steps=12)
    assert any(not u.full and u.changed_records for u in updates)


def test_a_merge_and_a_split_name_the_old_and_new_ids(duck):
    world = World(duck, random.Random(0))
    ada = ("erp", "1")
    world.put(ada, {"account_number": "C1", "email": "ada@x.org", "phone": None, "name": "Ada Lovelace"})
    shop = ("shop", "9")
    world.put(shop, {"account_number": None, "email": "lovelace@y.org", "phone": None, "name": "Ada L"})
    world.put(("erp", "2"), {"account_number": "C2", "email": None, "phone": None, "name": "Alan Turing"})
    identity.update_xref(duck, None)
    xref = xref_rows(duck)
    ids = dict(zip(zip(xref["system"], xref["source_id"], strict=True), xref["customer_id"], strict=True))
    assert ids[ada] != ids[shop]

    world.put(shop, {"email": "ada@x.org"})  # merge: the shop record joins the ERP customer
    merged = check_step(duck, {shop})
    assert merged.changed_records == {shop} and merged.affected_customers == {ids[ada], ids[shop]}
    assert set(xref_rows(duck)["customer_id"]) == {ids[ada], ids[("erp", "2")]}

    world.put(shop, {"email": "other@y.org"})  # split again: the shop record gets its own id back
    split = check_step(duck, {shop})
    assert split.affected_customers == {ids[ada], ids[shop]}
    world.put(ada, {}, deleted=True)  # a deleted record loses its row
    gone = check_step(duck, {ada})
    assert gone.changed_records == {ada} and gone.rows == 0 and not gone.full
    assert gone.resolved_records == 0 and gone.affected_customers == {ids[ada]}
    assert list(xref_rows(duck)["source_id"]) == ["2", "9"]


def test_records_missing_from_changed_but_new_or_gone_are_resolved(duck):
    world = World(duck, random.Random(1))
    keys = [world.new_record(system) for system in SYSTEMS * 4]
    identity.update_xref(duck, None)
    world.drop(keys[0])
    world.new_record("shop")
    update = check_step(duck, set())
    assert keys[0] in update.changed_records and not update.full


def test_a_system_coming_or_going_resolves_everything(duck):
    world = World(duck, random.Random(2))
    for system in ("erp", "shop") * 5:
        world.new_record(system)
    identity.update_xref(duck, None)
    crm = world.new_record("crm")  # the shop's precedence moves from 1 to 2
    update = check_step(duck, {crm})
    assert update.full and update.rows == 11


def test_a_table_without_is_deleted_counts_as_nothing_deleted(tmp_path):
    warehouse = Warehouse(path=tmp_path / "warehouse.duckdb")
    make_tables(warehouse, without_deleted=("crm", "shop"))
    with warehouse.connect() as con:
        con.execute(
            "INSERT INTO staging.crm__customer (source_system, source_id, email) VALUES ('crm', 'a', 'x@y')"
        )
        con.execute(
            "INSERT INTO staging.shop__customer (source_system, source_id, email) VALUES ('shop', 'b', 'x@y')"
        )
        con.execute(
            "INSERT INTO staging.erp__customer (source_system, source_id, email, is_deleted) "
            "VALUES ('erp', 'c', 'x@y', true), ('erp', 'd', 'z@y', NULL)"
        )
    update = identity.update_xref(warehouse, None)
    xref = xref_rows(warehouse)
    assert list(zip(xref["system"], xref["source_id"], strict=True)) == [
        ("crm", "a"),
        ("erp", "d"),
        ("shop", "b"),
    ]
    assert xref["customer_id"][0] == xref["customer_id"][2] != xref["customer_id"][1]
    assert update.resolved_records == 3


def test_a_failed_write_leaves_the_previous_xref(duck, monkeypatch):
    world = World(duck, random.Random(3))
    keys = [world.new_record(system) for system in SYSTEMS * 3]
    identity.update_xref(duck, None)
    before = xref_rows(duck)
    world.put(keys[0], {}, deleted=True)

    real = identity_scope.insert

    def die(con, table, rows):
        if table == identity_scope.XREF:
            raise RuntimeError("killed between the delete and the insert")
        real(con, table, rows)

    monkeypatch.setattr(identity_scope, "insert", die)
    with pytest.raises(RuntimeError, match="killed"):
        identity.update_xref(duck, {keys[0]})
    pd.testing.assert_frame_equal(xref_rows(duck), before)


def test_an_id_two_clusters_hold_is_resolved_again_as_a_full_resolution_would(duck):
    """The id rules can leave one id on two clusters (a new cluster's anchor hash that another
    cluster kept from before); a full resolution moves one of them, so the update does too."""
    world = World(duck, random.Random(4))
    crm, shop = ("crm", "6"), ("shop", "13")
    world.put(("erp", "1"), {"account_number": "C1", "email": None, "phone": None, "name": "Alan Turing"})
    world.put(crm, {"account_number": None, "email": "a@x.org", "phone": None, "name": "Ada Lovelace"})
    world.put(shop, {"account_number": None, "email": "g@x.org", "phone": None, "name": "Grace Hopper"})
    identity.update_xref(duck, None)
    with duck.connect() as con:
        con.execute(
            "UPDATE canonical.customer_xref SET customer_id = ? WHERE system = 'shop'",
            [identity.customer_id_for(*crm)],
        )
    update = check_step(duck, set())
    assert update.changed_records == {shop}
    assert update.affected_customers == {identity.customer_id_for(*crm), identity.customer_id_for(*shop)}


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
def test_only_records_whose_matching_fields_changed_are_resolved_again(duck, dialect, request):
    """A record touched in a field resolution does not read (its `updated_at`, a field the hub
    pushed) is left out; one whose email changed, one deleted, one new are kept."""
    warehouse = duck if dialect == "duckdb" else request.getfixturevalue("pg_warehouse")
    if dialect == "postgres":
        make_tables(warehouse)
    world = World(warehouse, random.Random(5))
    keys = [world.new_record(system) for system in SYSTEMS * 3]
    identity.update_xref(warehouse, None)
    with warehouse.connect() as con, con.transaction():
        con.execute("CREATE SCHEMA IF NOT EXISTS _hub")
        identity_scope.remember_inputs(con, identity_scope.records_sql(con), None)
    touched, moved, deleted = keys[0], keys[1], keys[2]
    with warehouse.connect() as con:
        con.execute(
            f"UPDATE staging.{touched[0]}__customer SET updated_at = now() WHERE source_id = ?", [touched[1]]
        )
    world.put(moved, {"email": "someone.else@x.org"})
    world.put(deleted, {}, deleted=True)
    new = world.new_record("crm")
    with warehouse.connect() as con:
        records = identity_scope.records_sql(con)
        found = identity_scope.matching_changed(con, records, {touched, moved, deleted, new})
        assert found == {moved, deleted, new}
        with con.transaction():
            identity_scope.remember_inputs(con, records, found)
        assert identity_scope.matching_changed(con, records, {touched, moved, deleted, new}) == set()
