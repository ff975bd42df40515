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
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import random
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import count

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from integration_hub import systems
from integration_hub.engine import audit
from integration_hub.systems.kit.writer import BatchRejected, Outcome, Record, TransientError, Writer
from integration_hub.warehouse import Connection, Warehouse

SCHEMA = "sync"
SKIP_COLUMN = "skip_reason"
MODES = ("upsert", "update", "insert", "mirror")
MAX_ATTEMPTS = 6  # per batch, for transient errors
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0  # seconds
FLUSH_SECONDS, FLUSH_RECORDS = 1.0, 5_000  # confirmations lost to a kill are at most this much
# httpx writes a request's headers and body separately: with Nagle's algorithm the body then
# waits for the server's delayed ACK of the headers (~40 ms a request on Linux).
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

DELIVERED, REJECTED, FAILED = "delivered", "rejected", "failed"


@dataclass(frozen=True)
class Sync:
    """One reverse sync, declared once.

    `mapping` is destination field → source column. Only fields in `allow` ever leave the
    hub; a mapped field outside it is withheld (and shown in the plan). `pii` flags allowed
    fields that carry personal data. `existing` (SQL returning one column of keys the
    destination already holds) is required by `update` mode, which touches nothing else.
    A source row whose `skip_reason` column is set is not sent and counted under that reason.
    """

    name: str
    source: str
    destination: str
    object: str
    mode: str
    key: str
    mapping: dict[str, str]
    allow: frozenset[str]
    pii: frozenset[str] = frozenset()
    existing: str | None = None
    batch_size: int = 100
    concurrency: int = 4
    rate_limit: float | None = None  # requests per second, across all workers
    deps: tuple[tuple[str, ...], ...] = ()
    description: str = ""

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
        if problems:
            raise ValueError(f"sync {self.name!r}: " + "; ".join(problems))

    @property
    def state_table(self) -> str:
        return f'{SCHEMA}."{self.name}__state"'

    @property
    def withheld(self) -> list[str]:
        """Mapped fields the allow-list keeps in the hub."""
        return sorted(set(self.mapping) - self.allow)

    @property
    def fields(self) -> list[str]:
        """The destination fields that leave the hub, in the order their values are hashed."""
        return sorted(self.allow & set(self.mapping))

    def idempotency_key(self, key: str, content_hash: str) -> str:
        # An insert happens once per key whatever its content: a changed body under the same
        # key is then refused (409) instead of creating a second record.
        parts = [self.name, key] if self.mode == "insert" else [self.name, key, content_hash]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ cost a third of a 1.5 M-row plan
class Change:
    key: str
    operation: str  # insert | update | delete
    hash: str
    payload: dict


@dataclass
class Plan:
    sync: str
    changes: list[Change]
    counts: dict[str, int]
    filtered: dict[str, int]
    withheld: list[str]
    pii: list[str]

    def to_dict(self, sample: int = 5) -> dict:
        return {
            "sync": self.sync,
            "counts": self.counts,
            "filtered": self.filtered,
            "withheld_fields": self.withheld,
            "pii_fields": self.pii,
            "sample": [dataclasses.asdict(c) for c in self.changes[:sample]],
        }

    def markdown(self, sample: int = 10) -> str:
        """A table of the first changes, for the asset's metadata and the CLI."""
        if not self.changes:
            return "_nothing to send_"
        fields = sorted({f for c in self.changes[:sample] for f in c.payload})
        lines = ["| operation | key | " + " | ".join(fields) + " |", "|---" * (len(fields) + 2) + "|"]
        for c in self.changes[:sample]:
            values = " | ".join(str(c.payload.get(f, "")) for f in fields)
            lines.append(f"| {c.operation} | {c.key} | {values} |")
        return "\n".join(lines)


@dataclass
class SyncResult:
    run_id: str
    sync: str
    counts: dict[str, int]  # the plan's
    delivered: int = 0
    rejected: int = 0
    failed: int = 0
    requests: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # a few of the failures, for the operator

    def to_dict(self) -> dict:
        return vars(self)


def _json_column(column: pa.ChunkedArray) -> list:
    """A column as JSON-ready values: money as numbers, dates and times as ISO text (vectorised)."""
    kind = column.type
    if pa.types.is_decimal(kind):  # through text: a direct cast is not correctly rounded
        return column.cast(pa.string()).cast(pa.float64()).to_pylist()
    if pa.types.is_timestamp(kind):
        seconds = column.cast(pa.timestamp("s", tz=kind.tz), safe=False)
        return pc.strftime(seconds, "%Y-%m-%dT%H:%M:%SZ").to_pylist()
    if pa.types.is_date(kind):
        return column.cast(pa.string()).to_pylist()
    return column.to_pylist()


def content_hash(fields: list[str], values: list) -> str:
    """Hash of a payload: its field names and values, nothing else (no timestamps, no writer)."""
    return _hasher(fields)(values)


def _hasher(fields: list[str]):
    """`content_hash` for one field list, with its prefix made once (the plan calls it per row)."""
    prefix, sha256 = ",".join(fields) + "|", hashlib.sha256
    # values are JSON-ready: their repr is canonical and fast
    return lambda values: sha256((prefix + repr(values)).encode()).hexdigest()[:32]


# ---- tables ---------------------------------------------------------------------------------

_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.changelog (
        run_id VARCHAR, sync VARCHAR, key VARCHAR, operation VARCHAR, status VARCHAR, error VARCHAR, changed_at TIMESTAMP)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.dead_letter (
        id VARCHAR PRIMARY KEY, sync VARCHAR NOT NULL, key VARCHAR NOT NULL, operation VARCHAR, hash VARCHAR,
        payload VARCHAR, error VARCHAR, attempts INTEGER, first_failure_at TIMESTAMP, last_failure_at TIMESTAMP,
        status VARCHAR NOT NULL, discard_reason VARCHAR, resolved_at TIMESTAMP)""",
]


def ensure_tables(warehouse: Warehouse, sync: Sync | None = None) -> None:
    with warehouse.connect() as con:
        con.lock_ddl()
        for ddl in _DDL:
            con.execute(ddl)
        if sync:
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {sync.state_table} (key VARCHAR PRIMARY KEY, hash VARCHAR NOT NULL, "
                "remote_id VARCHAR, run_id VARCHAR, pushed_at TIMESTAMP)"
            )


# ---- plan -----------------------------------------------------------------------------------


def plan(sync: Sync, warehouse: Warehouse) -> Plan:
    """What `apply` would send now; reads the warehouse, sends nothing."""
    ensure_tables(warehouse, sync)
    source = sync.source if " " in sync.source.strip() else f"SELECT * FROM {sync.source}"
    with warehouse.connect() as con:
        table = con.arrow(source)
        state = dict(con.rows(f"SELECT key, hash FROM {sync.state_table}"))
        discarded = set(
            con.rows(
                f"SELECT key, hash FROM {SCHEMA}.dead_letter WHERE sync = ? AND status = 'discarded'",
                [sync.name],
            )
        )
        open_letters = _open_letters(con, sync.name)
        existing = {str(r[0]) for r in con.rows(sync.existing)} if sync.existing else None

    changes: list[Change] = []
    counts = Counter({op: 0 for op in ("insert", "update", "delete", "unchanged", "filtered", "discarded")})
    filtered: Counter = Counter()
    seen: set[str] = set()
    fields = sync.fields
    missing = sorted({sync.key, *(sync.mapping[f] for f in fields)} - set(table.column_names))
    if missing:
        raise ValueError(
            f"sync {sync.name!r}: its source has no column {missing}; it has {table.column_names}"
        )
    columns = [_json_column(table[sync.mapping[f]]) for f in fields]
    skips = table[SKIP_COLUMN].to_pylist() if SKIP_COLUMN in table.column_names else [None] * table.num_rows
    digest_of, inserting = _hasher(fields), sync.mode == "insert"
    for raw_key, skip, *values in zip(table[sync.key].to_pylist(), skips, *columns, strict=True):
        key = None if raw_key is None else str(raw_key).strip()
        if not key:
            filtered[f"no {sync.key}"] += 1
            continue
        if key in seen:
            filtered[f"duplicate {sync.key}"] += 1
            continue
        seen.add(key)
        if skip:
            filtered[skip] += 1
            continue
        if existing is not None and key not in existing:
            filtered["not in destination (update mode)"] += 1
            continue
        digest = digest_of(values)
        pushed = state.get(key)
        if pushed == digest or (pushed is not None and inserting):
            counts["unchanged"] += 1
        elif (key, digest) in discarded:
            counts["discarded"] += 1
        else:
            op = "insert" if pushed is None else "update"
            counts[op] += 1
            changes.append(Change(key, op, digest, dict(zip(fields, values, strict=True))))
    if sync.mode == "mirror":
        key_field = systems.writer_class(sync.destination, sync.object).key_field
        for key in sorted(set(state) - seen):
            counts["delete"] += 1
            changes.append(Change(key, "delete", state[key], {key_field: key}))
    counts["filtered"] = sum(filtered.values())
    counts["dead_letters_open"] = int(open_letters or 0)
    return Plan(
        sync.name, changes, dict(counts), dict(filtered), sync.withheld, sorted(sync.pii & sync.allow)
    )


# ---- apply ----------------------------------------------------------------------------------


class _Pace:
    """A shared request-rate limit: callers wait for their slot."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_at = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(self.next_at, now)
            self.next_at = slot + self.interval
        time.sleep(max(0.0, slot - now))


def _backoff(attempt: int, retry_after: float | None) -> float:
    jittered = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * (0.5 + random.random())
    return max(jittered, retry_after) if retry_after is not None else jittered


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: httpx builds one per client otherwise (~25 ms each)."""
    return httpx.create_ssl_context()


class _Sender:
    """Sends batches with retries; splits a refused batch to find the records it refused.

    Each sending thread has its own HTTP client and connection: threads sharing one httpx
    pool spent a fifth of their time waiting on its lock (bench_push).
    """

    def __init__(self, sync: Sync, writer: Writer, hooks: dict):
        self.sync, self.writer, self.hooks = sync, writer, hooks
        self.pace = _Pace(sync.rate_limit)
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            transport = httpx.HTTPTransport(verify=_tls(), limits=one, socket_options=NO_DELAY)
            client = httpx.Client(
                timeout=httpx.Timeout(60, connect=5), transport=transport, event_hooks=self.hooks
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

    def send(self, batch: list[Change]) -> list[tuple[Change, Outcome, str]]:
        """(change, outcome, status) for every change: delivered, rejected (a verdict), failed (none)."""
        keyed = self.writer.idempotency_keys  # a sha256 per record otherwise spent for nothing
        records = [
            Record(c.key, c.payload, self.sync.idempotency_key(c.key, c.hash) if keyed else "") for c in batch
        ]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.pace.wait()
            try:
                send = self.writer.delete if batch[0].operation == "delete" else self.writer.write
                outcomes = {o.key: o for o in send(self.http, records)}
            except TransientError as exc:
                if attempt == MAX_ATTEMPTS:
                    gave_up = f"gave up after {attempt} attempts: {exc}"
                    return [(c, Outcome(c.key, False, gave_up), FAILED) for c in batch]
                time.sleep(_backoff(attempt, exc.retry_after))
                continue
            except BatchRejected as exc:
                if len(batch) == 1:
                    return [(batch[0], Outcome(batch[0].key, False, str(exc)), REJECTED)]
                half = len(batch) // 2
                return self.send(batch[:half]) + self.send(batch[half:])
            # A record the response does not mention was not confirmed: the next run sends it again.
            unconfirmed = Outcome("", False, "the destination did not confirm it")
            return [
                (c, o, DELIVERED if o.ok else REJECTED)
                if (o := outcomes.get(c.key))
                else (c, unconfirmed, FAILED)
                for c in batch
            ]
        raise AssertionError("unreachable")


def _letter_id(sync: str, key: str, digest: str) -> str:
    return hashlib.sha256(f"{sync}\x1f{key}\x1f{digest}".encode()).hexdigest()[:16]


_OUTCOME_SCHEMA = pa.schema(
    [
        (n, pa.string())
        for n in ("key", "operation", "hash", "payload", "status", "error", "remote_id", "letter_id")
    ]
)


def _stage(con: Connection, table: pa.Table) -> None:
    """Make the batch's outcomes queryable as `_outcomes` inside the current transaction."""
    if con.dialect == "duckdb":
        con.raw.register("_outcomes", table)
        return
    cols = ", ".join(f"{n} TEXT" for n in _OUTCOME_SCHEMA.names)
    with con.raw.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE _outcomes ({cols}) ON COMMIT DROP")
        with cur.copy("COPY _outcomes FROM STDIN") as cp:
            for row in table.to_pylist():
                cp.write_row([row[n] for n in _OUTCOME_SCHEMA.names])


def _record(
    con: Connection,
    sync: Sync,
    run_id: str,
    done: list[tuple[Change, Outcome, str]],
    letters_open: bool = True,
) -> bool:
    """Write outcomes atomically: changelog rows, state for delivered, dead letters for rejected.

    `letters_open` says whether the sync may have open dead letters (then delivered records
    resolve theirs); returns whether it may have some afterwards. Dead-letter statements are
    skipped when neither applies: they were most of a bulk push's recorder time.
    """
    if not done:
        return letters_open
    # Built column by column; payload and dead-letter id only for what was not delivered.
    table = pa.table(
        [
            [c.key for c, _, _ in done], [c.operation for c, _, _ in done], [c.hash for c, _, _ in done],
            [None if s == DELIVERED else json.dumps(c.payload, sort_keys=True, default=str) for c, _, s in done],
            [s for _, _, s in done], [o.error for _, o, _ in done], [o.remote_id for _, o, _ in done],
            [None if s == DELIVERED else _letter_id(sync.name, c.key, c.hash) for c, _, s in done],
        ],
        schema=_OUTCOME_SCHEMA,
    )  # fmt: skip
    rejections = any(status == REJECTED for _, _, status in done)
    deletes = any(c.operation == "delete" and status == DELIVERED for c, _, status in done)
    at = audit.now()
    dl = f"{SCHEMA}.dead_letter"
    with con.transaction():
        _stage(con, table)
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
            f"INSERT INTO {SCHEMA}.changelog SELECT ?, ?, key, operation, status, error, ? FROM _outcomes",
            [run_id, sync.name, at],
        )
        if letters_open:
            con.execute(
                f"UPDATE {dl} SET status = 'delivered', resolved_at = ? WHERE sync = ? AND status = 'open' "
                f"AND key IN ({delivered})",
                [at, sync.name],
            )
        if rejections:
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
    return letters_open or rejections


def _open_letters(con: Connection, sync: str) -> int:
    return int(
        con.scalar(f"SELECT count(*) FROM {SCHEMA}.dead_letter WHERE sync = ? AND status = 'open'", [sync])
        or 0
    )


def push(
    sync: Sync,
    warehouse: Warehouse,
    changes: list[Change],
    run_id: str | None = None,
    counts: dict | None = None,
) -> SyncResult:
    """Send `changes` and record every outcome; returns what happened.

    Rejections never raise (they are dead-lettered); `DestinationUnusable` (credentials, URL)
    stops the push after recording what was confirmed.
    """
    ensure_tables(warehouse, sync)
    run_id = run_id or uuid.uuid4().hex
    result = SyncResult(run_id, sync.name, dict(counts or {}))
    started, started_at = time.monotonic(), audit.now()
    # A batch holds one kind of operation: deletes go through the destination's delete call.
    writes, deletes = (
        [c for c in changes if c.operation != "delete"],
        [c for c in changes if c.operation == "delete"],
    )
    batches = iter(
        [
            part[i : i + sync.batch_size]
            for part in (writes, deletes)
            for i in range(0, len(part), sync.batch_size)
        ]
    )
    requests = count()
    hooks = {"request": [lambda _request: next(requests)]}
    pending: list[tuple[Change, Outcome, str]] = []
    recording: Future | None = None
    last_flush = time.monotonic()
    letters_open = False

    def flush() -> None:
        # Outcomes are written by one recorder thread, in order, while the next batches are
        # on the wire; waiting for the previous write keeps at most one in flight.
        nonlocal recording, last_flush, letters_open
        if recording:
            letters_open = recording.result()
        recording = recorder.submit(_record, con, sync, run_id, pending.copy(), letters_open)
        pending.clear()
        last_flush = time.monotonic()

    sender = _Sender(sync, systems.writer(sync.destination, sync.object), hooks)
    # The recorder keeps one connection for the whole push: opening the warehouse and
    # checkpointing it at close, once a second, had been most of its work (bench_push). Once
    # the push starts, only the recorder thread uses it.
    with (
        warehouse.connect() as con,
        contextlib.closing(sender),
        ThreadPoolExecutor(sync.concurrency, thread_name_prefix=f"sync-{sync.name}") as pool,
        ThreadPoolExecutor(1, thread_name_prefix=f"sync-{sync.name}-recorder") as recorder,
    ):
        letters_open = _open_letters(con, sync.name) > 0
        in_flight: set[Future] = set()
        try:
            while True:
                # A small window of batches in flight keeps memory flat and a kill's loss small.
                while len(in_flight) < sync.concurrency * 2 and (batch := next(batches, None)) is not None:
                    in_flight.add(pool.submit(sender.send, batch))
                if not in_flight:
                    break
                finished, in_flight = wait(in_flight, timeout=FLUSH_SECONDS, return_when=FIRST_COMPLETED)
                for future in finished:
                    outcomes = future.result()
                    pending.extend(outcomes)
                    statuses = Counter(status for _, _, status in outcomes)
                    result.delivered += statuses[DELIVERED]
                    result.rejected += statuses[REJECTED]
                    result.failed += statuses[FAILED]
                    if statuses[DELIVERED] < len(outcomes) and len(result.errors) < 5:
                        result.errors += [f"{c.key}: {o.error}" for c, o, s in outcomes if s != DELIVERED]
                        del result.errors[5:]
                if len(pending) >= FLUSH_RECORDS or time.monotonic() - last_flush >= FLUSH_SECONDS:
                    flush()
        finally:
            # Also when the destination turned out unusable: what it confirmed is recorded.
            for future in in_flight:
                future.cancel()
            flush()
            recording.result()
    result.requests = next(requests)
    result.seconds = round(time.monotonic() - started, 3)
    audit.record(
        warehouse,
        audit.Movement(
            run_id=run_id, asset=f"sync/{sync.name}", system=sync.destination, direction="push",
            resource=sync.object, rows_in=len(changes), rows_out=result.delivered,
            rows_rejected=result.rejected, started_at=started_at,
            details={"plan": result.counts, "failed": result.failed, "requests": result.requests},
        ),
    )  # fmt: skip
    return result


def apply(
    sync: Sync, warehouse: Warehouse, run_id: str | None = None, current: Plan | None = None
) -> SyncResult:
    """Plan (unless given) and push the changes; open dead letters are in the plan again."""
    current = current or plan(sync, warehouse)
    return push(sync, warehouse, current.changes, run_id, current.counts)


# ---- dead letters ---------------------------------------------------------------------------


def dead_letters(warehouse: Warehouse, sync: str | None = None, status: str | None = "open") -> list[dict]:
    ensure_tables(warehouse)
    where, params = ["1 = 1"], []
    if sync:
        where, params = [*where, "sync = ?"], [*params, sync]
    if status:
        where, params = [*where, "status = ?"], [*params, status]
    with warehouse.connect() as con:
        table = con.arrow(
            f"SELECT * FROM {SCHEMA}.dead_letter WHERE {' AND '.join(where)} ORDER BY sync, key, first_failure_at",
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


def discard(warehouse: Warehouse, letter_id: str, reason: str) -> None:
    """Give up on one open dead letter, saying why; the same content is then never sent again."""
    if not reason.strip():
        raise ValueError("a discard needs a reason (it is kept with the dead letter)")
    ensure_tables(warehouse)
    with warehouse.connect() as con, con.transaction():
        found = con.scalar(f"SELECT status FROM {SCHEMA}.dead_letter WHERE id = ?", [letter_id])
        if found != "open":
            state = "no dead letter" if found is None else f"dead letter is {found}, not open"
            raise ValueError(f"cannot discard {letter_id!r}: {state}; see `hub dlq list`")
        con.execute(
            f"UPDATE {SCHEMA}.dead_letter SET status = 'discarded', discard_reason = ?, resolved_at = ? WHERE id = ?",
            [reason.strip(), audit.now(), letter_id],
        )
