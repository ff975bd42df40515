"""The landscape: how data flows between the company's systems, through the hub and beside it.

Two halves make one answer. The hub's own flows come from its definitions: a source per
system of the registry (system → hub, on the system's schedule) and a flow per reverse sync
(hub → destination, the fields it writes). The legacy point-to-point links still running
beside it are declared in one YAML inventory (`landscape.yaml` at the repository root, or
`HUB_LANDSCAPE`): from, to, what, schedule, owner, and a status, `live`, `retired`, or
`replaced_by: <hub flow>`. From both come the migration figures (links replaced, links
still live, the share of flows through the hub, the N·(N−1)/2 point-to-point links the hub
avoids) and the two-writers finding: a live link writing a destination field a hub flow
also writes. `landscape_picture` draws it all (inline SVG, no script). No Dagster here:
callers pass the registry and the syncs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from integration_hub.warehouse import Warehouse, quote

STATUSES = ("live", "replaced", "retired")
# What `definitions/automation.py` runs, in words: nightly systems at 02:00 UTC; the others on
# the 15-minute changes path and the hourly job; the syncs on the changes path, whole plans nightly.
SOURCE_SCHEDULES = {
    "nightly": "nightly 02:00 UTC",
    "hourly": "every 15 min + hourly",
}
FOLDER_SCHEDULE = "on file drop + nightly"
SYNC_SCHEDULE = "every 15 min + nightly full plan"
HUB_OWNER = "data platform (the hub)"


class LandscapeError(ValueError):
    """The inventory is not usable; the message names the file, the entry and what to fix."""


@dataclass(frozen=True)
class Link:
    """One flow between two systems: a legacy link of the inventory or one of the hub's flows."""

    name: str
    source: str  # the system data comes from ("hub" for a sync)
    target: str  # the system it goes to ("hub" for a source)
    what: str
    schedule: str
    owner: str = ""
    status: str = "live"  # live | replaced | retired; a hub flow is live
    replaced_by: str | None = None
    writes: tuple[str, ...] = ()  # "<object>.<field>" of the target it writes
    hub: bool = False
    system: str = ""  # the connected system of a hub flow
    last_success: str | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name, "from": self.source, "to": self.target, "what": self.what,
            "schedule": self.schedule, "owner": self.owner, "status": self.status,
            "replaced_by": self.replaced_by, "writes": list(self.writes), "hub": self.hub,
            "last_success": self.last_success,
        }  # fmt: skip


@dataclass
class Landscape:
    systems: dict[str, dict]  # name -> {description, owner, in_hub}
    hub_flows: list[Link]
    links: list[Link]  # the legacy inventory
    source: str = ""
    figures: dict = field(default_factory=dict)
    two_writers: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "inventory": self.source,
            "systems": self.systems,
            "hub_flows": [f.as_dict() for f in self.hub_flows],
            "links": [link.as_dict() for link in self.links],
            "figures": self.figures,
            "two_writers": self.two_writers,
        }


# ---- the hub's flows ------------------------------------------------------------------------


def hub_flows(registry: dict[str, Any], syncs: dict[str, Any]) -> list[Link]:
    """The hub's flows from its definitions: `raw/<system>` per source, `sync/<name>` per sync."""
    flows = []
    for name, system in sorted(registry.items()):
        if system.source is None:
            continue
        schedule = FOLDER_SCHEDULE if system.location == "folder" else SOURCE_SCHEDULES[system.schedule]
        flows.append(
            Link(
                f"raw/{name}",
                name,
                "hub",
                ", ".join(sorted(system.resources)),
                schedule,
                HUB_OWNER,
                hub=True,
                system=name,
            )  # fmt: skip
        )
    for name, sync in sorted(syncs.items()):
        fields = sorted(sync.allow) if sync.allow else sorted(sync.mapping)
        flows.append(
            Link(
                f"sync/{name}", "hub", sync.destination, f"{sync.object}: {', '.join(fields)}", SYNC_SCHEDULE,
                HUB_OWNER, writes=tuple(f"{sync.object}.{f}" for f in fields), hub=True, system=sync.destination,
            )
        )  # fmt: skip
    return flows


def last_successes(warehouse: Warehouse, flows: list[Link]) -> list[Link]:
    """Each hub flow with when it last moved data (from `audit.data_movement`): a source's last
    load, a sync's last push with no delivery failing; unchanged when the warehouse has none."""
    if not warehouse.table_exists("audit", "data_movement"):
        return flows
    with warehouse.connect() as con:
        loads = dict(
            con.rows(
                f"SELECT system, max(finished_at) FROM {quote('audit', 'data_movement')} "
                "WHERE direction = 'load' GROUP BY system"
            )
        )
        pushes = dict(
            con.rows(
                f"SELECT asset, max(finished_at) FROM {quote('audit', 'data_movement')} "
                # `details` is JSON with sorted keys; a count of 0 is the only one starting with 0.
                "WHERE direction = 'push' AND details LIKE '%\"failed\": 0%' GROUP BY asset"
            )
        )
    out = []
    for f in flows:
        at = loads.get(f.system) if f.name.startswith("raw/") else pushes.get(f.name)
        out.append(_with(f, last_success=at.isoformat(sep=" ", timespec="seconds") if at else None))
    return out


def _with(link: Link, **changes) -> Link:
    return Link(**{**link.__dict__, **changes})


# ---- the inventory --------------------------------------------------------------------------


def load(path: Path, registry: dict[str, Any], flows: list[Link]) -> Landscape:
    """Read and check the inventory at `path` against the hub's systems and flows."""
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise LandscapeError(
            f"no landscape inventory at {path}: create it (see landscape.yaml in the repository) "
            "or point HUB_LANDSCAPE at yours"
        ) from None
    except yaml.YAMLError as exc:
        raise LandscapeError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("links", []), list):
        raise LandscapeError(f"{path}: expected a mapping with `systems:` (a mapping) and `links:` (a list)")
    declared = doc.get("systems") or {}
    if not isinstance(declared, dict):
        raise LandscapeError(f"{path}: `systems:` must map each system's name to its description and owner")
    systems = {
        name: {
            "description": (info or {}).get("description", "")
            or getattr(registry.get(name), "description", ""),
            "owner": (info or {}).get("owner", ""),
            "in_hub": name in registry,
        }
        for name, info in declared.items()
    }
    for name, system in registry.items():
        systems.setdefault(name, {"description": system.description, "owner": "", "in_hub": True})
    flow_names = {f.name for f in flows}
    links = [_link(path, i, entry, systems, flow_names) for i, entry in enumerate(doc.get("links") or [])]
    if len({link.name for link in links}) < len(links):
        raise LandscapeError(f"{path}: two links share a name; give each link its own `name`")
    landscape = Landscape(dict(sorted(systems.items())), flows, links, source=str(path))
    landscape.figures = figures(landscape)
    landscape.two_writers = two_writers(links, flows)
    return landscape


def _link(path: Path, i: int, entry: Any, systems: dict, flows: set[str]) -> Link:
    where = f"{path}: links[{i}]"
    if not isinstance(entry, dict):
        raise LandscapeError(f"{where} must be a mapping (from, to, what, schedule, owner, status)")
    where = f"{where} ({entry.get('name') or entry.get('from', '?')} → {entry.get('to', '?')})"
    missing = [k for k in ("from", "to", "what", "schedule", "owner") if not entry.get(k)]
    if missing:
        raise LandscapeError(f"{where} lacks {', '.join(missing)}")
    for end in ("from", "to"):
        if entry[end] not in systems:
            raise LandscapeError(
                f"{where}: `{end}: {entry[end]}` is no system; declare it under `systems:` "
                f"(known: {', '.join(sorted(systems))})"
            )
    replaced_by = entry.get("replaced_by")
    status = entry.get("status") or ("replaced" if replaced_by else None)
    if status not in STATUSES:
        raise LandscapeError(
            f"{where}: status must be live, retired, or a `replaced_by: <hub flow>`, not {status!r}"
        )
    if (status == "replaced") != bool(replaced_by):
        raise LandscapeError(
            f"{where}: a replaced link names its hub flow in `replaced_by` (and only a replaced one)"
        )
    if replaced_by and replaced_by not in flows:
        raise LandscapeError(
            f"{where}: `replaced_by: {replaced_by}` is no hub flow; one of {', '.join(sorted(flows))}"
        )
    writes = entry.get("writes") or []
    if not isinstance(writes, list) or not all(isinstance(w, str) and "." in w for w in writes):
        raise LandscapeError(f"{where}: `writes` lists the target's fields as <object>.<field>")
    return Link(
        name=str(entry.get("name") or f"{entry['from']}_to_{entry['to']}"), source=entry["from"], target=entry["to"],
        what=str(entry["what"]), schedule=str(entry["schedule"]), owner=str(entry["owner"]), status=status,
        replaced_by=replaced_by, writes=tuple(writes), last_success=_text(entry.get("last_success")),
    )  # fmt: skip


def _text(value) -> str | None:
    if value is None:
        return None
    return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else str(value)


# ---- figures and findings ---------------------------------------------------------------------


def figures(landscape: Landscape) -> dict:
    """The migration in numbers.

    - `links_replaced`, `links_live`, `links_retired`: the legacy inventory by status;
    - `hub_flows`: the hub's flows; `share_through_hub`: hub flows over hub flows plus live links;
    - `connected_systems` (N): systems the hub reads or writes; `hub_connections`: N, one each;
      `point_to_point_avoided`: N·(N−1)/2, the links a full mesh between them would need."""
    by_status = {s: sum(1 for link in landscape.links if link.status == s) for s in STATUSES}
    flows = len(landscape.hub_flows)
    connected = sorted({f.system for f in landscape.hub_flows})
    n = len(connected)
    return {
        "links_replaced": by_status["replaced"],
        "links_live": by_status["live"],
        "links_retired": by_status["retired"],
        "hub_flows": flows,
        "share_through_hub": round(flows / (flows + by_status["live"]), 4)
        if flows + by_status["live"]
        else 0.0,
        "connected_systems": n,
        "hub_connections": n,
        "point_to_point_avoided": n * (n - 1) // 2,
    }


def two_writers(links: list[Link], flows: list[Link]) -> list[dict]:
    """Each live legacy link that writes a field of its target a hub flow writes too."""
    found = []
    for link in links:
        if link.status != "live" or not link.writes:
            continue
        for flow in flows:
            if flow.target != link.target:
                continue
            shared = sorted(set(link.writes) & set(flow.writes))
            if shared:
                found.append(
                    {"link": link.name, "hub_flow": flow.name, "system": link.target, "fields": shared}
                )
    return found
