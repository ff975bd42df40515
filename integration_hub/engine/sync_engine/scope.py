"""Which keys a sync's plan reads: the keys whose rows may have changed since its last complete
push, or every key.

A sync with `changed_keys` keeps watermarks on the change logs it reads, as an incremental
model does (`engine.incremental`). They advance only after a push in which nothing failed for
now: a record that could not be delivered stays in the next plan's scope, and a retry or the
next run plans it again. The plan reads the whole source the first time, after the sync's
declaration changed, after an upstream table was rebuilt in full, and when asked (the nightly
run asks: a whole plan also sends what was refused and replayed, or changed out of the logs'
sight, such as an order that moved to another customer, whose old customer's totals change).
"""

from __future__ import annotations

from dataclasses import dataclass

from integration_hub.engine import incremental
from integration_hub.engine.sync_engine.declaration import Sync, ensure_tables
from integration_hub.warehouse import Warehouse


@dataclass
class Scope:
    sql: str | None  # SQL returning the keys to plan; None: every key
    window: incremental.Window
    fingerprint: str

    @property
    def description(self) -> str:
        return "changed keys" if self.sql else f"every key ({self.window.reason})"


def _name(sync: Sync) -> str:
    return f"sync.{sync.name}"


def open_scope(sync: Sync, warehouse: Warehouse, full: bool = False) -> Scope:
    """The keys this plan reads, from what changed since the last complete push."""
    ensure_tables(warehouse, sync)
    fp = incremental.fingerprint(
        "\x1f".join(
            [sync.query, sync.changed_keys or "", repr(sync.fields), sync.on_delete, repr(sync.archive)]
        ),
        [],
    )
    with warehouse.connect() as con:
        incremental.ensure_state(con)
        if not sync.changed_keys:
            return Scope(None, incremental.Window(True, "the sync declares no changed keys"), fp)
        read = [f"{a}.{b}" for a, b, *_ in sync.deps if a in ("staging", "canonical")]
        win = incremental.window(
            con, _name(sync), incremental.references(sync.changed_keys), fp, True, full, watch=read
        )
    return Scope(None if win.full else win.expand(sync.changed_keys), win, fp)


def advance(sync: Sync, warehouse: Warehouse, scope: Scope) -> None:
    """After a push with nothing left to send: the next plan reads changes from here."""
    with warehouse.connect() as con, con.transaction():
        incremental.finish(con, _name(sync), scope.fingerprint, incremental.next_seq(con), scope.window)
