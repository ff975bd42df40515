"""Reverse sync: push canonical changes to destination systems, only what changed, safely.

A `Sync` is declared once as data (source, destination, mode, key, mapping, allow-list,
batching). `plan` diffs the current source rows against `sync.<sync>__state` (key + hash of
the mapped, allow-listed payload, the last version the destination confirmed) and sends
nothing. `apply` sends the plan through the destination's bulk endpoint with bounded
concurrency, retries transient errors with backoff, writes every record's outcome to
`sync.changelog`, keeps permanent rejections in `sync.dead_letter`, and advances the state
only for records the destination confirmed: a killed run re-sends exactly what was not
confirmed, and idempotent writes (upsert by key, `Idempotency-Key`) make that harmless.

Echo suppression comes from the hash: it covers only the values the hub sends, never
timestamps or `LastModifiedById`, so when the CRM adapter reads back the hub's own write,
the recomputed payload equals the pushed one and the plan stays at 0 updates.

This package's names are its public API; its modules, one idea each:
- `declaration`: the `Sync` type, the content hash and the tables of the `sync` schema;
- `planning`: `plan`, the diff against the pushed state;
- `scope`: which keys a plan reads (the changed ones, from the change logs, or all);
- `delivery`: `push` and `apply`, sending batches with retries and pacing;
- `outcomes`: recording what the destination answered (state, changelog, dead letters);
- `dead_letter`: listing, replaying and discarding what the destination refused;
- `latency`: how long records took from their change at the source to the destination's
  confirmation, against the sync's `latency_target`.
"""

from integration_hub.engine.sync_engine.dead_letter import dead_letters, discard, replay
from integration_hub.engine.sync_engine.declaration import (
    MODES,
    SCHEMA,
    SKIP_COLUMN,
    Sync,
    content_hash,
    ensure_tables,
)
from integration_hub.engine.sync_engine.delivery import SyncResult, apply, push
from integration_hub.engine.sync_engine.latency import Latency, latency_check, measure_latency
from integration_hub.engine.sync_engine.planning import Change, Plan, plan
from integration_hub.engine.sync_engine.scope import Scope, advance, open_scope

__all__ = [
    "MODES",
    "SCHEMA",
    "SKIP_COLUMN",
    "Change",
    "Latency",
    "Plan",
    "Scope",
    "Sync",
    "SyncResult",
    "advance",
    "apply",
    "content_hash",
    "dead_letters",
    "discard",
    "ensure_tables",
    "open_scope",
    "latency_check",
    "measure_latency",
    "plan",
    "push",
    "replay",
]
