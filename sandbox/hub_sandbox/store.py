"""The generic record store behind every REST system: one SQLite file per system.

Each record is a JSON body under (resource, id), with the timestamp the API filters and
orders on and an optional match key (the field upserts match on). Lists are ordered by
(updated_at, id), so keyset and offset paging are stable while the business ticks on.
Table `api_created` notes the records created through the API that the sandbox's truth
follows (billing invoices, CRM accounts: the hub's writes; seed and tick never write it), in
the transaction that creates them (`hub_sandbox.truth`).

Deletions, as the vendors keep them: a hard delete removes the record and logs it in
`deletions` (Shopify lists these as `destroy` events); a soft delete (Salesforce's
`IsDeleted`, listed by `queryAll`) keeps the record and notes it in `soft_deleted`. Lists and
counts leave soft-deleted records out unless asked for them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

TABLES = """
CREATE TABLE IF NOT EXISTS records (
    resource TEXT NOT NULL, id NOT NULL, match_key TEXT, updated_at TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (resource, id));
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, record_id NOT NULL);
CREATE TABLE IF NOT EXISTS api_created (
    resource TEXT NOT NULL, id NOT NULL, match_key TEXT, created_at TEXT NOT NULL, PRIMARY KEY (resource, id));
CREATE TABLE IF NOT EXISTS deletions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT NOT NULL, id NOT NULL, label TEXT, deleted_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS soft_deleted (
    resource TEXT NOT NULL, id NOT NULL, deleted_at TEXT NOT NULL, PRIMARY KEY (resource, id));
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS records_by_updated ON records (resource, updated_at, id);
CREATE INDEX IF NOT EXISTS records_by_match_key ON records (resource, match_key, id);
CREATE INDEX IF NOT EXISTS deletions_by_time ON deletions (resource, deleted_at, seq);
"""
# A record is listed and counted unless it is soft-deleted (`include_deleted` lists those too).
ALIVE = "NOT EXISTS (SELECT 1 FROM soft_deleted s WHERE s.resource = records.resource AND s.id = records.id)"
SOFT_DELETED_IDS = "SELECT id FROM soft_deleted s WHERE s.resource = records.resource"


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode: the servers read while `seed`/`tick` write from another process.

    Tuned as a stand-in, not a system of record: no fsync (`synchronous=OFF`: an OS crash may
    lose the last writes of a world that `hub sandbox seed` regenerates), a 64 MB page cache
    and memory-mapped reads, so that the hub, not the sandbox, sets the pace of a reverse sync
    at large scales.
    """
    con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-65536")
    con.execute("PRAGMA mmap_size=1073741824")
    con.execute("PRAGMA busy_timeout=30000")
    return con


class Store:
    """Reads and writes of one system's records; every method is one short transaction."""

    def __init__(self, path: Path):
        self.path = path
        self.con = connect(path)
        self.con.executescript(TABLES + INDEXES)
        # Counts are asked on every page (`total`, `total_size`) and cost a scan at scale 1:
        # they are cached until this store writes or another connection commits.
        self._counts: dict[tuple, int] = {}
        # The next number of a record created through the API, per resource: kept across this
        # store's own writes (a count per upsert batch made a bulk push quadratic).
        self._numbers: dict[str, int] = {}
        self._version = None

    def close(self) -> None:
        self.con.close()

    def _where(
        self, resource: str, since: str | None, before: str | None, include_deleted: bool = False
    ) -> tuple[str, list]:
        sql, args = "resource = ?" + ("" if include_deleted else f" AND {ALIVE}"), [resource]
        if since:
            sql, args = sql + " AND updated_at >= ?", [*args, since]
        if before:
            sql, args = sql + " AND updated_at < ?", [*args, before]
        return sql, args

    def _forget_if_others_wrote(self) -> None:
        version = self.con.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            self._counts, self._numbers, self._version = {}, {}, version

    def count(
        self,
        resource: str,
        since: str | None = None,
        before: str | None = None,
        include_deleted: bool = False,
    ) -> int:
        """Records in the window; soft-deleted ones only with `include_deleted`. All records minus
        the few soft-deleted ones: the index answers both, where a filter would read every row."""
        self._forget_if_others_wrote()
        key = (resource, since, before, include_deleted)
        if key not in self._counts:
            where, args = self._where(resource, since, before, include_deleted=True)
            total = self.con.execute(f"SELECT count(*) FROM records WHERE {where}", args).fetchone()[0]
            gone = f"SELECT count(*) FROM records WHERE {where} AND id IN ({SOFT_DELETED_IDS})"
            self._counts[key] = total - (0 if include_deleted else self.con.execute(gone, args).fetchone()[0])
        return self._counts[key]

    def page_after(
        self,
        resource: str,
        after: tuple | None,
        limit: int,
        since: str | None = None,
        before: str | None = None,
        include_deleted: bool = False,
    ) -> list[tuple]:
        """Up to `limit` (updated_at, id, body) rows after the keyset position `after`."""
        # A position lies within the filter, so `since` adds nothing past it; kept, it made SQLite
        # range over `updated_at >= since` and skip every earlier page again (quadratic paging).
        where, args = self._where(resource, None if after else since, before, include_deleted)
        if after:
            where, args = where + " AND (updated_at, id) > (?, ?)", [*args, *after]
        return self.con.execute(
            f"SELECT updated_at, id, body FROM records WHERE {where} ORDER BY updated_at, id LIMIT ?",
            [*args, limit],
        ).fetchall()

    def page_offset(
        self, resource: str, offset: int, limit: int, since: str | None = None, before: str | None = None
    ) -> list[tuple]:
        where, args = self._where(resource, since, before)
        return self.con.execute(
            f"SELECT updated_at, id, body FROM records WHERE {where} ORDER BY updated_at, id LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()

    def latest(self, resource: str) -> str | None:
        return self.con.execute(
            "SELECT max(updated_at) FROM records WHERE resource = ?", [resource]
        ).fetchone()[0]

    def get(self, resource: str, record_id) -> dict | None:
        row = self.con.execute(
            "SELECT body FROM records WHERE resource = ? AND id = ?", [resource, record_id]
        ).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, resource: str, record_ids: Sequence) -> dict:
        """The records among `record_ids` that exist, by id."""
        found: dict = {}
        for start in range(0, len(record_ids), 500):
            ids = record_ids[start : start + 500]
            rows = self.con.execute(
                f"SELECT id, body FROM records WHERE resource = ? AND id IN ({', '.join('?' * len(ids))})",
                [resource, *ids],
            )
            found.update((i, json.loads(body)) for i, body in rows)
        return found

    def find_many(self, resource: str, match_keys: Sequence[str]) -> dict[str, dict]:
        """The first record (by id) stored under each of `match_keys` that has one."""
        found: dict[str, dict] = {}
        for start in range(0, len(match_keys), 500):
            keys = match_keys[start : start + 500]
            rows = self.con.execute(
                f"SELECT match_key, body FROM records WHERE resource = ? AND match_key IN "
                # Ordered as the index is: `ORDER BY id` alone made SQLite walk the resource by id.
                f"({', '.join('?' * len(keys))}) ORDER BY match_key, id",
                [resource, *keys],
            )
            for key, body in rows:
                if key not in found:
                    found[key] = json.loads(body)
        return found

    def matching(self, resource: str, match_key: str) -> list[str]:
        """The JSON bodies of every record stored under `match_key`, by id."""
        rows = self.con.execute(
            "SELECT body FROM records WHERE resource = ? AND match_key = ? ORDER BY match_key, id",
            [resource, match_key],
        )
        return [body for (body,) in rows]

    def put(self, resource: str, rows: Iterable[tuple], created: Collection = ()) -> None:
        """Insert or update (id, match_key, updated_at, body dict) rows in one transaction.

        The rows whose id is in `created` are new records made through the API that the truth
        follows: the same transaction notes them in `api_created` (at their `updated_at`).

        An upsert, not `INSERT OR REPLACE`: a replaced row is deleted and inserted again, with
        every index entry, where an update rewrites only the indexes of the columns it changes.
        """
        rows = list(rows)
        with self.transaction():
            self.con.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?) ON CONFLICT (resource, id) DO UPDATE SET "
                "match_key = excluded.match_key, updated_at = excluded.updated_at, body = excluded.body",
                ((resource, i, k, u, json.dumps(b, separators=(",", ":"))) for i, k, u, b in rows),
            )
            if created:
                self.con.executemany(
                    "INSERT INTO api_created VALUES (?, ?, ?, ?)",
                    [(resource, i, k, u) for i, k, u, _ in rows if i in created],
                )

    def next_number(self, resource: str, first: Callable[[], int]) -> int:
        """The number the next record of `resource` created through the API gets; `first()`
        computes it when nothing is remembered (at start, or after another connection wrote)."""
        self._forget_if_others_wrote()
        if resource not in self._numbers:
            self._numbers[resource] = first()
        return self._numbers[resource]

    def numbered(self, resource: str, next_number: int) -> None:
        """Remember, after a committed write, the number the next created record gets."""
        self._numbers[resource] = next_number

    def counts(self) -> dict[str, int]:
        """Records per resource, soft-deleted ones left out."""
        return dict(
            self.con.execute(
                f"SELECT resource, count(*) FROM records WHERE {ALIVE} GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )

    def delete(self, resource: str, deleted: list[tuple], at: str) -> None:
        """Hard-delete records (id, label) in one transaction, each logged in `deletions` at `at`."""
        with self.transaction():
            self.con.executemany(
                "DELETE FROM records WHERE resource = ? AND id = ?", [(resource, i) for i, _ in deleted]
            )
            self.con.executemany(
                "INSERT INTO deletions (resource, id, label, deleted_at) VALUES (?, ?, ?, ?)",
                [(resource, i, label, at) for i, label in deleted],
            )

    def deletions_after(
        self, resource: str, after: tuple | None, limit: int, since: str | None, before: str | None
    ) -> list[tuple]:
        """Up to `limit` logged hard deletions (deleted_at, seq, id, label) in [since, before), after
        the keyset position `after`, oldest first."""
        sql, args = "resource = ?", [resource]
        for clause, value in (("deleted_at >= ?", since), ("deleted_at < ?", before)):
            if value:
                sql, args = f"{sql} AND {clause}", [*args, value]
        if after:
            sql, args = f"{sql} AND (deleted_at, seq) > (?, ?)", [*args, *after]
        return self.con.execute(
            f"SELECT deleted_at, seq, id, label FROM deletions WHERE {sql} ORDER BY deleted_at, seq LIMIT ?",
            [*args, limit],
        ).fetchall()

    def soft_delete(self, resource: str, record_id, at: str, body: dict) -> None:
        """Mark a record deleted (kept, listed only when asked for deleted ones), with its new body."""
        with self.transaction():
            self._put_body(resource, record_id, at, body)
            self.con.execute(
                "INSERT OR REPLACE INTO soft_deleted VALUES (?, ?, ?)", [resource, record_id, at]
            )

    def undelete(self, resource: str, record_id, at: str, body: dict) -> None:
        """Bring a soft-deleted record back, with its new body."""
        with self.transaction():
            self._put_body(resource, record_id, at, body)
            self.con.execute("DELETE FROM soft_deleted WHERE resource = ? AND id = ?", [resource, record_id])

    def _put_body(self, resource: str, record_id, at: str, body: dict) -> None:
        self.con.execute(
            "UPDATE records SET updated_at = ?, body = ? WHERE resource = ? AND id = ?",
            [at, json.dumps(body, separators=(",", ":")), resource, record_id],
        )

    def transaction(self) -> _Transaction:
        self._counts = {}  # our own commits do not change data_version
        return _Transaction(self.con)

    def idempotent(self, key: str) -> tuple[str, object] | None:
        return self.con.execute(
            "SELECT request_hash, record_id FROM idempotency WHERE key = ?", [key]
        ).fetchone()

    def remember(self, key: str, request_hash: str, record_id) -> None:
        self.con.execute("INSERT INTO idempotency VALUES (?, ?, ?)", [key, request_hash, record_id])

    def note_created(self, resource: str, record_id, match_key: str | None, at: str) -> None:
        """Note a record created through the API that the truth follows, inside the transaction
        that creates it."""
        self.con.execute("INSERT INTO api_created VALUES (?, ?, ?, ?)", [resource, record_id, match_key, at])


def created_through_api(path: Path) -> list[tuple]:
    """(resource, id, match_key) of every record noted as created through the API of the store
    at `path`, oldest first (none from a store written before `api_created` existed).

    Reads only: the truth is read while the servers write, from another process.
    """
    con = sqlite3.connect(path, timeout=30)
    try:
        con.execute("PRAGMA busy_timeout=30000")
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'api_created'").fetchone():
            return []
        return con.execute(
            "SELECT resource, id, match_key FROM api_created ORDER BY created_at, id"
        ).fetchall()
    finally:
        con.close()


class _Transaction:
    """`BEGIN IMMEDIATE` … `COMMIT`, rolled back on error (the connection runs in autocommit)."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, exc_type, *_) -> None:
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")
