"""The dead-letter queue: records a destination refused, kept with their payload and error.

An open letter is sent again by `replay` (or by the next plan, while its content is current);
`discard` gives up on one, with a reason, and the same content is then never sent again.
"""

from __future__ import annotations

import json
import uuid

from integration_hub.engine import audit
from integration_hub.engine.sync_engine.declaration import DEAD_LETTER, Sync, ensure_tables
from integration_hub.engine.sync_engine.delivery import SyncResult, push
from integration_hub.engine.sync_engine.outcomes import record_letters
from integration_hub.engine.sync_engine.planning import Change
from integration_hub.warehouse import Warehouse


def dead_letters(warehouse: Warehouse, sync: str | None = None, status: str | None = "open") -> list[dict]:
    ensure_tables(warehouse)
    where, params = ["1 = 1"], []
    if sync:
        where, params = [*where, "sync = ?"], [*params, sync]
    if status:
        where, params = [*where, "status = ?"], [*params, status]
    with warehouse.connect() as con:
        table = con.arrow(
            f"SELECT * FROM {DEAD_LETTER} WHERE {' AND '.join(where)} ORDER BY sync, key, first_failure_at",
            params,
        )
    return table.to_pylist()


def replay(
    warehouse: Warehouse, syncs: dict[str, Sync], sync: str | None = None, run_id: str | None = None
) -> list[SyncResult]:
    """Re-send the stored payload of every open dead letter (of one sync, or all) of `syncs`."""
    letters = dead_letters(warehouse, sync)
    results = []
    for name in sorted({d["sync"] for d in letters}):
        changes = [
            Change(d["key"], d["operation"], d["hash"], json.loads(d["payload"]))
            for d in letters
            if d["sync"] == name
        ]
        results.append(push(syncs[name], warehouse, changes, run_id, {"replay": len(changes)}))
    return results


def discard(
    warehouse: Warehouse,
    letter_id: str,
    reason: str,
    syncs: dict[str, Sync] | None = None,
    run_id: str | None = None,
) -> None:
    """Give up on one open dead letter, saying why; the same content is then never sent again.

    The discard is a `dead_letter` movement in the audit trail (system: the sync's destination
    when `syncs` knows it)."""
    if not reason.strip():
        raise ValueError("a discard needs a reason (it is kept with the dead letter)")
    ensure_tables(warehouse)
    at = audit.now()
    with warehouse.connect() as con, con.transaction():
        found = con.rows(f"SELECT status, sync FROM {DEAD_LETTER} WHERE id = ?", [letter_id])
        status, sync = found[0] if found else (None, None)
        if status != "open":
            state = "no dead letter" if status is None else f"dead letter is {status}, not open"
            raise ValueError(f"cannot discard {letter_id!r}: {state}; see `hub dlq list`")
        con.execute(
            f"UPDATE {DEAD_LETTER} SET status = 'discarded', discard_reason = ?, resolved_at = ? WHERE id = ?",
            [reason.strip(), at, letter_id],
        )
    system = syncs[sync].destination if syncs and sync in syncs else "hub"
    record_letters(
        warehouse,
        run_id or uuid.uuid4().hex,
        sync,
        system,
        {"discarded": 1},
        at,
        letter=letter_id,
        reason=reason,
    )
