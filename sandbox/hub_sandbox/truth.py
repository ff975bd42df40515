"""The truth of the world as it is now: the seeded record, followed by what the hub has written.

`truth.json` is the record: the planted discrepancies as seeded, with counts that `seed`
writes and each `tick` updates (the only two writers, never a server). The stand-ins never
rewrite it; billing and the CRM note in their own stores the records created through their
APIs, in the transaction that creates them (`api_created`, see `store.py`). `read_truth` is the one
reader: the record with those creations applied, as the reconciliation flows
(`assets/recon_flows.py`) will find the world on their next run:

- an invoice the hub created for a planted `invoice_missing` order matches that order, so
  the order leaves `invoice_missing`; the invoice is open with no payment, so it is an
  `invoice_unpaid` (keyed by its id `in_n…`);
- a CRM account the hub created with a planted `crm_account_missing` customer's account
  number resolves to that customer (rule `external_id`), so the customer leaves
  `crm_account_missing` and `crm_customers` matches it;
- each adds one to its store's count, and a created invoice one canonical invoice.

What the hub writes to the destinations (marketing contacts, support orders) is no part of
the truth: its stores are not noted, and the truth has no counts of them.

Deletions (`tick_deletes.py`) are listed under `deleted` ("<system>.<resource>" -> the keys the
sources deleted: ERP order numbers, `[order number, line number]` pairs, shop order and line
item ids). `counts` and `expected` keep counting them: the hub keeps a deleted record in raw as
a tombstone, and canonical is built from raw; `at_source` gives what the sources hold now.

A creation the truth cannot place (an invoice for an order that was not missing one, an
account for no planted missing customer) is listed in `hub_writes.not_followed`, not guessed:
the truth then no longer describes that record, and says so.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hub_sandbox.store import created_through_api

RECORD = "truth.json"
# The stores that note what the hub creates in them (`api_created`): those the truth follows.
STORES = ["billing", "crm"]
# The ERP's formats (`world_erp.py`): the keys a hub write names an order and a customer by.
ORDER_NUMBER = "SO-{:010d}"
ACCOUNT_NUMBER = "C{:09d}"
# Planted kinds a hub write resolves: kind -> (the created records that do, the key each names
# its entry by). The hub may resolve every entry of these kinds; no other kind loses one.
RESOLVED_BY_WRITES = {
    "invoice_missing": ("billing.invoices", lambda entry: ORDER_NUMBER.format(entry["order_id"])),
    "crm_account_missing": ("crm.accounts", lambda entry: ACCOUNT_NUMBER.format(entry["customer_id"])),
}


class NoWorld(FileNotFoundError):
    """There is no seeded world at this home; the message says what to do."""


def record_path(home: Path) -> Path:
    return home / "sandbox" / RECORD


def read_record(home: Path) -> dict:
    """The seeded record with the ticks' counts, as written (no hub write applied)."""
    path = record_path(home)
    if not path.exists():
        raise NoWorld(f"no world at {path.parent}; run `hub sandbox up` (or `seed`) first")
    return json.loads(path.read_text())


def write_record(home: Path, record: dict) -> None:
    """Replace `truth.json` at once, so a reader never sees half of it."""
    path = record_path(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    tmp.replace(path)


def read_truth(home: Path) -> dict:
    """The truth now: the record followed by every record created through the stand-ins' APIs.

    Adds `hub_writes`: `created` ("<system>.<resource>" -> records created through the API)
    and `not_followed` (the creations the truth could not place, each with its system,
    resource, id and key).
    """
    record = read_record(home)
    created: dict[str, list[tuple]] = {}
    for system in STORES:
        path = home / "sandbox" / f"{system}.sqlite"
        if path.exists():
            for resource, record_id, key in created_through_api(path):
                created.setdefault(f"{system}.{resource}", []).append((record_id, key))
    return follow_writes(record, created)


def follow_writes(record: dict, created: dict[str, list[tuple]]) -> dict:
    """A copy of the record with the creations applied; `created` maps "<system>.<resource>"
    to its created (id, match key) pairs, oldest first."""
    truth = copy.deepcopy(record)
    truth.setdefault("deleted", {})
    found, placed, not_followed = truth["discrepancies"], {}, []
    for kind, (name, key_of) in RESOLVED_BY_WRITES.items():
        open_entries = {key_of(entry): entry for entry in found[kind]}
        for record_id, key in created.get(name, []):
            entry = open_entries.pop(key, None)
            if entry is None:
                system, resource = name.split(".")
                not_followed.append({"system": system, "resource": resource, "id": record_id, "key": key})
                continue
            found[kind].remove(entry)
            placed.setdefault(kind, []).append(record_id)
    # The hub's invoice is open, and nothing pays it.
    found["invoice_unpaid"] = sorted(
        found["invoice_unpaid"] + [{"invoice_id": i} for i in placed.get("invoice_missing", [])],
        key=lambda entry: entry["invoice_id"],
    )

    for name, records in created.items():
        if name in truth["counts"]:
            truth["counts"][name] += len(records)
    truth["expected"]["canonical.invoice"] += len(created.get("billing.invoices", []))
    truth["hub_writes"] = {
        "created": {name: len(records) for name, records in sorted(created.items())},
        "not_followed": not_followed,
    }
    return truth


def at_source(truth: dict) -> dict[str, int]:
    """Records each system resource holds now: those counted, less those deleted at the source."""
    deleted = truth.get("deleted", {})
    return {name: n - len(deleted.get(name, [])) for name, n in truth["counts"].items()}
