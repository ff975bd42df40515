"""Recording what a destination answered: state, changelog and dead letters, written atomically.

Every sent record ends `delivered` (the destination confirmed it: the state advances and its
changelog row gets `confirmed_at`, beside the source's change time it carried),
`rejected` (a verdict on the record: it waits in `sync.dead_letter`) or `failed` (no verdict:
the next run sends it again). Each batch of outcomes is one transaction, so a killed push
leaves the state exactly at what was confirmed and recorded.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

from integration_hub.engine import audit
from integration_hub.engine.sync_engine.declaration import CHANGELOG, DEAD_LETTER, Sync
from integration_hub.engine.sync_engine.planning import Change
from integration_hub.systems.kit.writer import Outcome
from integration_hub.warehouse import Connection, Warehouse

DELIVERED, REJECTED, FAILED = "delivered", "rejected", "failed"

_OUTCOME_SCHEMA = pa.schema(
    [
        *(
            (n, pa.string())
            for n in ("key", "operation", "hash", "payload", "status", "error", "remote_id", "letter_id")
        ),
        ("source_changed_at", pa.timestamp("us")),
    ]
)


def letter_id(sync: str, key: str, digest: str) -> str:
    """A dead letter's id: one per sync, key and content."""
    return hashlib.sha256(f"{sync}\x1f{key}\x1f{digest}".encode()).hexdigest()[:16]


def record(
    con: Connection,
    sync: Sync,
    run_id: str,
    done: list[tuple[Change, Outcome, str]],
    letters_open: bool = True,
) -> bool:
    """Write outcomes atomically: changelog rows, state for delivered, dead letters for rejected.

    `letters_open` says whether the sync may have open dead letters (then delivered records
    resolve theirs); returns whether it may have some afterwards. Dead-letter statements are
    skipped when neither applies, which is the common case of a bulk push.
    """
    if not done:
        return letters_open
    rejections = any(status == REJECTED for _, _, status in done)
    deletes = any(c.operation == "delete" and status == DELIVERED for c, _, status in done)
    at = audit.now()
    with con.transaction():
        con.stage("_outcomes", _outcome_table(sync, done))
        delivered = "SELECT key FROM _outcomes WHERE status = 'delivered'"
        if deletes:
            con.execute(f"DELETE FROM {sync.state_table} WHERE key IN ({delivered} AND operation = 'delete')")
        con.execute(
            f"INSERT INTO {sync.state_table} SELECT key, hash, remote_id, ?, ? FROM _outcomes "
            "WHERE status = 'delivered' AND operation <> 'delete' ON CONFLICT (key) DO UPDATE SET "
            "hash = excluded.hash, remote_id = excluded.remote_id, run_id = excluded.run_id, "
            "pushed_at = excluded.pushed_at",
            [run_id, at],
        )
        con.execute(
            f"INSERT INTO {CHANGELOG} (run_id, sync, key, operation, status, error, changed_at, source_changed_at, "
            "confirmed_at) SELECT ?, ?, key, operation, status, error, ?, source_changed_at, "
            "CASE WHEN status = 'delivered' THEN CAST(? AS TIMESTAMP) END FROM _outcomes",
            [run_id, sync.name, at, at],
        )
        if letters_open:
            con.execute(
                f"UPDATE {DEAD_LETTER} SET status = 'delivered', resolved_at = ? WHERE sync = ? "
                f"AND status = 'open' AND key IN ({delivered})",
                [at, sync.name],
            )
        if rejections:
            _dead_letter_rejections(con, sync, at)
    return letters_open or rejections


def _outcome_table(sync: Sync, done: list[tuple[Change, Outcome, str]]) -> pa.Table:
    """The outcomes as a table, column by column; payload and dead-letter id only for what was
    not delivered."""
    return pa.table(
        [
            [c.key for c, _, _ in done], [c.operation for c, _, _ in done], [c.hash for c, _, _ in done],
            [None if s == DELIVERED else json.dumps(c.payload, sort_keys=True, default=str) for c, _, s in done],
            [s for _, _, s in done], [o.error for _, o, _ in done], [o.remote_id for _, o, _ in done],
            [None if s == DELIVERED else letter_id(sync.name, c.key, c.hash) for c, _, s in done],
            [c.changed_at for c, _, _ in done],
        ],
        schema=_OUTCOME_SCHEMA,
    )  # fmt: skip


def _dead_letter_rejections(con: Connection, sync: Sync, at) -> None:
    """Open (or count again) a dead letter per rejected record; an older open letter of the same
    key is superseded by the newer content."""
    dl = DEAD_LETTER
    rejected = "SELECT letter_id FROM _outcomes WHERE status = 'rejected'"
    con.execute(
        f"UPDATE {dl} SET status = 'discarded', discard_reason = 'superseded by a newer version', "
        f"resolved_at = ? WHERE sync = ? AND status = 'open' AND id NOT IN ({rejected}) "
        "AND key IN (SELECT key FROM _outcomes WHERE status = 'rejected')",
        [at, sync.name],
    )
    con.execute(
        f"UPDATE {dl} SET attempts = {dl}.attempts + 1, error = o.error, last_failure_at = ?, "
        f"status = 'open' FROM _outcomes o WHERE {dl}.id = o.letter_id AND o.status = 'rejected' "
        f"AND {dl}.status <> 'discarded'",
        [at],
    )
    con.execute(
        f"INSERT INTO {dl} SELECT letter_id, ?, key, operation, hash, payload, error, 1, ?, ?, 'open', "
        f"NULL, NULL FROM _outcomes WHERE status = 'rejected' AND letter_id NOT IN (SELECT id FROM {dl})",
        [sync.name, at, at],
    )


def audit_letters(warehouse: Warehouse, sync: Sync, run_id: str, since) -> dict[str, int]:
    """Record the dead-letter transitions of `sync` since `since` (one push) as one
    `dead_letter` movement: rows_in = letters opened, rows_out = letters resolved (delivered
    or discarded, each counted in the details). Nothing is written when none changed."""
    with warehouse.connect() as con:
        opened, delivered, discarded = con.rows(
            "SELECT count(*) FILTER (WHERE first_failure_at >= ?), "
            "count(*) FILTER (WHERE status = 'delivered' AND resolved_at >= ?), "
            f"count(*) FILTER (WHERE status = 'discarded' AND resolved_at >= ?) FROM {DEAD_LETTER} WHERE sync = ?",
            [since, since, since, sync.name],
        )[0]
    counts = {"opened": int(opened), "delivered": int(delivered), "discarded": int(discarded)}
    if any(counts.values()):
        record_letters(warehouse, run_id, sync.name, sync.destination, counts, since)
    return counts


def record_letters(
    warehouse: Warehouse, run_id: str, sync: str, system: str, counts: dict[str, int], started_at, **details
) -> None:
    """One `dead_letter` movement of `sync`: `counts` holds opened, delivered and discarded."""
    audit.record(
        warehouse,
        audit.Movement(
            run_id=run_id, asset=f"sync/{sync}", system=system, direction="dead_letter", resource=DEAD_LETTER,
            rows_in=counts.get("opened", 0), rows_out=counts.get("delivered", 0) + counts.get("discarded", 0),
            started_at=started_at, details={"sync": sync, **counts, **details},
        ),
    )  # fmt: skip
