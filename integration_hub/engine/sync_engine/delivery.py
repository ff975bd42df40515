"""Pushing a plan: batches sent with bounded concurrency, paced, retried, and every outcome recorded.

`push` keeps a small window of batches in flight and hands their outcomes to one recorder
thread (`outcomes.record`), so the warehouse is written while the next batches are on the
wire. A transient error is retried with exponential backoff and jitter (honouring
`Retry-After`); a batch the destination refuses as a whole is split until the refused
records are found; `DestinationUnusable` (credentials, URL) stops the push after what was
confirmed is recorded.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import count

import httpx

from integration_hub import systems
from integration_hub.engine import audit
from integration_hub.engine.progress import Meter, Report
from integration_hub.engine.sync_engine.declaration import Sync, ensure_tables, open_letters
from integration_hub.engine.sync_engine.outcomes import DELIVERED, FAILED, REJECTED, audit_letters, record
from integration_hub.engine.sync_engine.planning import Change, Plan, plan
from integration_hub.systems.kit import tls
from integration_hub.systems.kit.writer import BatchRejected, Outcome, Record, TransientError, Writer
from integration_hub.warehouse import Connection, Warehouse

MAX_ATTEMPTS = 6  # per batch, for transient errors
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0  # seconds
FLUSH_SECONDS, FLUSH_RECORDS = 1.0, 5_000  # confirmations lost to a kill are at most this much
# httpx writes a request's headers and body separately: with Nagle's algorithm the body then
# waits for the server's delayed ACK of the headers, a fixed delay on every request
# (BENCHMARKS.md, "Reverse sync push").
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


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


class _Sender:
    """Sends batches with retries; splits a refused batch to find the records it refused.

    Each sending thread has its own HTTP client and connection, so threads never wait on a
    shared connection pool's lock.
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
            transport = httpx.HTTPTransport(verify=tls.ssl_context(), limits=one, socket_options=NO_DELAY)
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
            Record(c.key, c.payload, self.sync.idempotency_key(c.key, c.hash) if keyed else "", c.remote_id)
            for c in batch
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


class _Recorder:
    """Hands outcomes to one recorder thread, in order, while the next batches are on the wire;
    waiting for the previous write keeps at most one in flight."""

    def __init__(self, con: Connection, sync: Sync, run_id: str, thread: Executor, letters_open: bool):
        self.con, self.sync, self.run_id, self.thread = con, sync, run_id, thread
        self.letters_open = letters_open
        self.pending: list[tuple[Change, Outcome, str]] = []
        self.recording: Future | None = None
        self.last_flush = time.monotonic()

    def due(self) -> bool:
        return len(self.pending) >= FLUSH_RECORDS or time.monotonic() - self.last_flush >= FLUSH_SECONDS

    def flush(self) -> None:
        if self.recording:
            self.letters_open = self.recording.result()
        self.recording = self.thread.submit(
            record, self.con, self.sync, self.run_id, self.pending.copy(), self.letters_open
        )
        self.pending.clear()
        self.last_flush = time.monotonic()

    def close(self) -> None:
        """Record what is pending and wait for it (raises what the recording raised)."""
        self.flush()
        self.recording.result()


def _batches(changes: list[Change], size: int) -> Iterator[list[Change]]:
    """Batches of one kind of operation each: deletes go through the destination's delete call."""
    writes = [c for c in changes if c.operation != "delete" and (c.payload or c.operation != "retire")]
    deletes = [c for c in changes if c.operation == "delete"]
    return iter([part[i : i + size] for part in (writes, deletes) for i in range(0, len(part), size)])


def _tally(result: SyncResult, outcomes: list[tuple[Change, Outcome, str]]) -> None:
    statuses = Counter(status for _, _, status in outcomes)
    result.delivered += statuses[DELIVERED]
    result.rejected += statuses[REJECTED]
    result.failed += statuses[FAILED]
    if statuses[DELIVERED] < len(outcomes) and len(result.errors) < 5:
        result.errors += [f"{c.key}: {o.error}" for c, o, s in outcomes if s != DELIVERED]
        del result.errors[5:]


def push(
    sync: Sync,
    warehouse: Warehouse,
    changes: list[Change],
    run_id: str | None = None,
    counts: dict | None = None,
    progress: Report | None = None,
) -> SyncResult:
    """Send `changes` and record every outcome; returns what happened.

    Rejections never raise (they are dead-lettered); `DestinationUnusable` (credentials, URL)
    stops the push after recording what was confirmed. `progress` gets a line now and then
    (`integration_hub.engine.progress`) while a long push runs.
    """
    ensure_tables(warehouse, sync)
    run_id = run_id or uuid.uuid4().hex
    result = SyncResult(run_id, sync.name, dict(counts or {}))
    started, started_at = time.monotonic(), audit.now()
    batches = _batches(changes, sync.batch_size)
    meter = Meter(f"sync {sync.name} → {sync.destination}", "records sent", len(changes), progress)
    requests = count()
    hooks = {"request": [lambda _request: next(requests)]}
    sender = _Sender(sync, systems.writer(sync.destination, sync.object), hooks)
    # The recorder keeps one connection for the whole push, instead of opening the warehouse
    # and checkpointing it at close for every flush. Once the push starts, only the recorder
    # thread uses it.
    with (
        warehouse.connect() as con,
        contextlib.closing(sender),
        ThreadPoolExecutor(sync.concurrency, thread_name_prefix=f"sync-{sync.name}") as pool,
        ThreadPoolExecutor(1, thread_name_prefix=f"sync-{sync.name}-recorder") as thread,
    ):
        recorder = _Recorder(con, sync, run_id, thread, open_letters(con, sync.name) > 0)
        # An alias retired by `ignore` sends nothing: it is only marked retired in the state.
        forgotten = [
            (c, Outcome(c.key, True), DELIVERED) for c in changes if c.operation == "retire" and not c.payload
        ]
        recorder.pending.extend(forgotten)
        _tally(result, forgotten)
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
                    recorder.pending.extend(outcomes)
                    _tally(result, outcomes)
                    meter.add(len(outcomes))
                if recorder.due():
                    recorder.flush()
        finally:
            # Also when the destination turned out unusable: what it confirmed is recorded.
            for future in in_flight:
                future.cancel()
            recorder.close()
    result.requests = next(requests)
    result.seconds = round(time.monotonic() - started, 3)
    _audit(warehouse, sync, result, len(changes), started_at)
    audit_letters(warehouse, sync, result.run_id, started_at)
    return result


def _audit(warehouse: Warehouse, sync: Sync, result: SyncResult, sent: int, started_at) -> None:
    audit.record(
        warehouse,
        audit.Movement(
            run_id=result.run_id, asset=f"sync/{sync.name}", system=sync.destination, direction="push",
            resource=sync.object, rows_in=sent, rows_out=result.delivered,
            rows_rejected=result.rejected, started_at=started_at,
            details={"plan": result.counts, "failed": result.failed, "requests": result.requests},
        ),
    )  # fmt: skip


def apply(
    sync: Sync,
    warehouse: Warehouse,
    run_id: str | None = None,
    current: Plan | None = None,
    progress: Report | None = None,
) -> SyncResult:
    """Plan (unless given) and push the changes; open dead letters are in the plan again."""
    current = current or plan(sync, warehouse)
    return push(sync, warehouse, current.changes, run_id, current.counts, progress)
