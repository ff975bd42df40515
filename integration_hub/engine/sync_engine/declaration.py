"""A reverse sync as it is declared, the hash of what it sends, and the tables every sync keeps.

`Sync` checks itself against its destination's writer when it is made, so a wrong
declaration fails with what to fix before anything runs. The `sync` schema holds one
`<sync>__state` table per sync (what the destination last confirmed), the `changelog` of
every record's outcome and the `dead_letter` queue.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import cached_property

from integration_hub import systems
from integration_hub.engine import pii
from integration_hub.engine.sql_models import is_query
from integration_hub.warehouse import Connection, Warehouse, quote

SCHEMA = "sync"
SKIP_COLUMN = "skip_reason"
MODES = ("upsert", "update", "insert", "mirror")
ON_DELETE = ("ignore", "archive", "delete")
RETIRED = "retired"  # the state hash of a key retired as an alias: never sent again
CHANGELOG, DEAD_LETTER = f"{SCHEMA}.changelog", f"{SCHEMA}.dead_letter"


@dataclass(frozen=True)
class Sync:
    """One reverse sync, declared once.

    `source` is a table or a query (over canonical tables). `mapping` is destination field →
    source column. Only fields in `allow` ever leave the hub; a mapped field outside it is
    withheld (and shown in the plan). Which fields carry personal data is not declared: `pii`
    derives it from the canonical model. `existing` (SQL returning one column of keys the
    destination already holds) is required by `update` mode, which touches nothing else.
    A source row whose `skip_reason` column is set is not sent and counted under that reason.
    `on_create` names allowed fields sent only when the hub creates the record (what it needs to
    be useful from its first day, such as a new account's contact details): they are not part
    of the hash, so later changes to them never update the destination's own values.

    Deletions: a source row whose `deleted_column` is true was deleted at its source. `on_delete`
    says what that means at the destination: `ignore` (leave it), `archive` (send the record
    with the `archive` field values, e.g. a status) or `delete` (the writer must delete).
    `aliases` (SQL returning one column of keys) names keys the sync may have pushed that now
    stand for a record known under another key (an order first seen in the shop and later
    matched to the ERP's before its id was sticky): each pushed one is retired once, by
    `on_delete` (`ignore` only forgets it), so the destination keeps no live duplicate.
    `changed_keys` (SQL returning one column of keys, with `{{ changes('schema.table') }}` as
    in incremental models) lets a plan read only the keys whose rows may have changed since
    the last complete push; without it every plan reads the whole source.
    `changed_at` names the source column holding when the source last changed the record
    (TIMESTAMP, UTC naive): not sent, not hashed, kept in the changelog beside the
    destination's confirmation. `latency_target` is how long a change may take from there to
    that confirmation (at the p95 of a run's deliveries, `sync_engine.latency`).
    """

    name: str
    source: str
    destination: str
    object: str
    mode: str
    key: str
    mapping: dict[str, str]
    allow: frozenset[str]
    existing: str | None = None
    batch_size: int = 100
    concurrency: int = 4
    rate_limit: float | None = None  # requests per second, across all workers
    deps: tuple[tuple[str, ...], ...] = ()
    description: str = ""
    on_create: frozenset[str] = frozenset()
    on_delete: str = "ignore"
    archive: tuple[tuple[str, object], ...] = ()
    deleted_column: str = "is_deleted"
    aliases: str | None = None
    changed_keys: str | None = None
    latency_target: dt.timedelta = dt.timedelta(minutes=60)
    changed_at: str | None = None

    def __post_init__(self) -> None:
        writer = systems.writer_class(self.destination, self.object)
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, got {self.mode!r}")
        if writer.key_field not in self.mapping or writer.key_field not in self.allow:
            problems.append(f"the destination's match field {writer.key_field!r} must be mapped and allowed")
        if not 1 <= self.batch_size <= writer.max_batch:
            problems.append(f"batch_size must be 1..{writer.max_batch} for {self.destination}.{self.object}")
        if self.mode == "mirror" and not writer.can_delete:
            problems.append(f"{self.destination}.{self.object} cannot delete, so mode 'mirror' is impossible")
        if self.mode == "update" and not self.existing:
            problems.append("mode 'update' needs `existing`: SQL returning the keys the destination holds")
        if self.concurrency < 1:
            problems.append("concurrency must be at least 1")
        if unknown := sorted(self.on_create - (self.allow & set(self.mapping))):
            problems.append(f"on_create fields must be mapped and allowed: {unknown}")
        if self.on_delete not in ON_DELETE:
            problems.append(f"on_delete must be one of {ON_DELETE}, got {self.on_delete!r}")
        if self.on_delete == "archive" and (
            not self.archive or {f for f, _ in self.archive} - set(self.fields)
        ):
            problems.append("on_delete 'archive' needs `archive`: values for fields the sync sends")
        if self.on_delete == "delete" and not writer.can_delete:
            problems.append(
                f"{self.destination}.{self.object} cannot delete, so on_delete 'delete' is impossible"
            )
        if not isinstance(self.latency_target, dt.timedelta) or self.latency_target <= dt.timedelta(0):
            problems.append(f"latency_target must be a positive timedelta, got {self.latency_target!r}")
        if problems:
            raise ValueError(f"sync {self.name!r}: " + "; ".join(problems))

    @property
    def state_table(self) -> str:
        return quote(SCHEMA, f"{self.name}__state")

    @property
    def query(self) -> str:
        """The source as a query."""
        return self.source if is_query(self.source) else f"SELECT * FROM {self.source}"

    @cached_property
    def pii(self) -> frozenset[str]:
        """The mapped fields that carry personal data: those whose source column derives from a
        canonical field flagged PII (`engine.pii.derived`; a column of untraceable origin counts)."""
        personal = pii.derived(self.query, set(self.mapping.values()))
        return frozenset(f for f, column in self.mapping.items() if column in personal)

    @property
    def withheld(self) -> list[str]:
        """Mapped fields the allow-list keeps in the hub."""
        return sorted(set(self.mapping) - self.allow)

    @property
    def fields(self) -> list[str]:
        """The destination fields every push sends, in the order their values are hashed."""
        return sorted((self.allow & set(self.mapping)) - self.on_create)

    @property
    def create_fields(self) -> list[str]:
        """The fields a create sends besides `fields`."""
        return sorted(self.on_create)

    def idempotency_key(self, key: str, content_hash: str) -> str:
        # An insert happens once per key whatever its content: a changed body under the same
        # key is then refused (409) instead of creating a second record.
        parts = [self.name, key] if self.mode == "insert" else [self.name, key, content_hash]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def content_hash(fields: list[str], values: list) -> str:
    """Hash of a payload: its field names and values, nothing else (no timestamps, no writer)."""
    return hasher(fields)(values)


def hasher(fields: list[str]):
    """`content_hash` for one field list, with its prefix made once (the plan calls it per row)."""
    prefix, sha256 = ",".join(fields) + "|", hashlib.sha256
    # values are JSON-ready: their repr is canonical and fast
    return lambda values: sha256((prefix + repr(values)).encode()).hexdigest()[:32]


# ---- tables ---------------------------------------------------------------------------------

_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {CHANGELOG} (
        run_id VARCHAR, sync VARCHAR, key VARCHAR, operation VARCHAR, status VARCHAR, error VARCHAR, changed_at TIMESTAMP,
        source_changed_at TIMESTAMP, confirmed_at TIMESTAMP)""",
    f"""CREATE TABLE IF NOT EXISTS {DEAD_LETTER} (
        id VARCHAR PRIMARY KEY, sync VARCHAR NOT NULL, key VARCHAR NOT NULL, operation VARCHAR, hash VARCHAR,
        payload VARCHAR, error VARCHAR, attempts INTEGER, first_failure_at TIMESTAMP, last_failure_at TIMESTAMP,
        status VARCHAR NOT NULL, discard_reason VARCHAR, resolved_at TIMESTAMP)""",
]


# Columns later versions added to a table earlier ones created: (table, column, type).
_ADDED = [(CHANGELOG, "source_changed_at", "TIMESTAMP"), (CHANGELOG, "confirmed_at", "TIMESTAMP")]


def ensure_tables(warehouse: Warehouse, sync: Sync | None = None) -> None:
    with warehouse.connect() as con:
        con.lock_ddl()
        for ddl in _DDL:
            con.execute(ddl)
        _add_columns(con)
        if sync:
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {sync.state_table} (key VARCHAR PRIMARY KEY, hash VARCHAR NOT NULL, "
                "remote_id VARCHAR, run_id VARCHAR, pushed_at TIMESTAMP)"
            )


def _add_columns(con: Connection) -> None:
    """Add `_ADDED` columns a table lacks. Only when missing: on Postgres an ALTER locks the
    table exclusively even when the column exists, and every plan and push comes through here."""
    present = set(
        con.rows(
            "SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = ?",
            [SCHEMA],
        )
    )
    for table, column, kind in _ADDED:
        if (table, column) not in present:
            con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")


def open_letters(con: Connection, sync: str) -> int:
    """How many of the sync's dead letters are open (waiting for a replay or a discard)."""
    return int(
        con.scalar(f"SELECT count(*) FROM {DEAD_LETTER} WHERE sync = ? AND status = 'open'", [sync]) or 0
    )
