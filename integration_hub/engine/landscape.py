"""The landscape: how data flows between the company's systems, through the hub and beside it.

Two halves make one answer. The hub's own flows come from its definitions: a source per
system of the registry (system → hub, on the system's schedule) and a flow per reverse sync
(hub → destination, the fields it writes). The legacy point-to-point links still running
beside it are declared in one YAML inventory (`landscape.yaml` at the repository root, or
`HUB_LANDSCAPE`): from, to, what, schedule, owner, and a status, `live`, `retired`, or
`replaced_by: <hub flow>`. From both come the migration figures (links replaced, links
still live, the share of flows through the hub, the N·(N−1)/2 point-to-point links the hub
avoids) and the two-writers finding: a live link writing a destination field a hub flow
also writes. `to_svg`/`to_html` draw it all as one picture (inline SVG, no script).
No Dagster here: callers pass the registry and the syncs.
"""

from __future__ import annotations

import datetime as dt
import html
import math
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
                hub=True,
                system=name,
            )
        )
    for name, sync in sorted(syncs.items()):
        fields = sorted(sync.allow) if sync.allow else sorted(sync.mapping)
        flows.append(
            Link(
                f"sync/{name}", "hub", sync.destination, f"{sync.object}: {', '.join(fields)}", SYNC_SCHEDULE,
                writes=tuple(f"{sync.object}.{f}" for f in fields), hub=True, system=sync.destination,
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


# ---- text -----------------------------------------------------------------------------------


def to_markdown(landscape: Landscape) -> str:
    """Every flow as one markdown table, then the figures and any two-writers finding."""
    lines = [
        "| flow | from | to | what | schedule | status | last success |",
        "|---|---|---|---|---|---|---|",
    ]
    for link in [*landscape.hub_flows, *landscape.links]:
        status = f"replaced by {link.replaced_by}" if link.replaced_by else link.status
        kind = "hub" if link.hub else "legacy"
        lines.append(
            f"| {link.name} ({kind}) | {link.source} | {link.target} | {link.what} | {link.schedule} | "
            f"{status} | {link.last_success or '—'} |"
        )
    f = landscape.figures
    lines += [
        "",
        f"**Migration:** {f['links_replaced']} legacy links replaced, {f['links_live']} still live, "
        f"{f['links_retired']} retired; {f['share_through_hub']:.0%} of flows go through the hub "
        f"({f['hub_flows']} hub flows); {f['connected_systems']} systems connected by {f['hub_connections']} "
        f"hub connections instead of {f['point_to_point_avoided']} point-to-point links.",
    ]
    for w in landscape.two_writers:
        lines.append(f"\n**Two writers:** {w['link']} and {w['hub_flow']} both write {w['system']} "
                     f"{', '.join(w['fields'])}.")  # fmt: skip
    return "\n".join(lines)


# ---- the picture ----------------------------------------------------------------------------

WIDTH, HEIGHT = 1100, 820
CENTRE = (WIDTH / 2, HEIGHT / 2 - 20)
RADIUS = 300
COLOURS = {"hub": "#2563eb", "live": "#dc2626", "replaced": "#9ca3af", "retired": "#d1d5db"}


def _positions(systems: list[str]) -> dict[str, tuple[float, float]]:
    cx, cy = CENTRE
    step = 2 * math.pi / max(len(systems), 1)
    return {
        name: (
            cx + RADIUS * math.cos(-math.pi / 2 + i * step),
            cy + RADIUS * math.sin(-math.pi / 2 + i * step),
        )
        for i, name in enumerate(systems)
    }


def _curve(a, b, bend: float, t: float = 0.5) -> tuple[str, tuple[float, float]]:
    """A quadratic curve from a to b bowed `bend` pixels sideways, and its point at `t`."""
    (x1, y1), (x2, y2) = a, b
    length = math.hypot(x2 - x1, y2 - y1) or 1
    nx, ny = -(y2 - y1) / length, (x2 - x1) / length
    qx, qy = (x1 + x2) / 2 + nx * bend, (y1 + y2) / 2 + ny * bend
    u = 1 - t
    at = (u * u * x1 + 2 * u * t * qx + t * t * x2, u * u * y1 + 2 * u * t * qy + t * t * y2)
    return f"M{x1:.1f},{y1:.1f} Q{qx:.1f},{qy:.1f} {x2:.1f},{y2:.1f}", at


def to_svg(landscape: Landscape) -> str:
    """One picture: the hub in the centre, every system around it, each hub flow and legacy
    link drawn with its schedule and last success (hover a line for its details)."""
    names = list(landscape.systems)
    at = _positions(names)
    at["hub"] = CENTRE
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' id='landscape' viewBox='0 0 {WIDTH} {HEIGHT}' "
        f"width='{WIDTH}' height='{HEIGHT}' font-family='system-ui,sans-serif' font-size='11'>",
        "<defs>" + "".join(
            f"<marker id='arrow-{k}' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' markerHeight='7' "
            f"orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='{c}'/></marker>"
            for k, c in COLOURS.items()
        ) + "</defs>",
    ]  # fmt: skip
    pairs: dict[frozenset, int] = {}
    for link in [*landscape.hub_flows, *landscape.links]:
        pair = frozenset((link.source, link.target))
        n = pairs[pair] = pairs.get(pair, -1) + 1
        # Flows between the same two ends fan out, alternating sides; legacy links bow outwards.
        if link.hub:  # alternate sides of the pair, counted the same way whichever way a flow runs
            bend = (30 + 30 * (n // 2)) * (1 if n % 2 == 0 else -1) * (-1 if link.source > link.target else 1)
        else:  # bowed to its own right: the two directions of a pair part
            bend = 60 + 30 * n
        a, b = _shrink(at[link.source], at[link.target])
        # Hub flows are labelled near their system, where the lines are apart; legacy links midway.
        t = 0.5 if not link.hub else (0.45 if link.target == "hub" else 0.78)
        path, (mx, my) = _curve(a, b, bend, t)
        kind = "hub" if link.hub else link.status
        dash = "" if link.hub or link.status == "live" else " stroke-dasharray='6 4'"
        label = f"{link.schedule}" + (f" · last {link.last_success}" if link.last_success else "")
        status = f"replaced by {link.replaced_by}" if link.replaced_by else link.status
        title = f"{link.name}: {link.source} → {link.target}, {link.what}; {link.schedule}; {status}" + (
            f"; owner {link.owner}" if link.owner else ""
        )
        parts.append(
            f"<g class='link {'hub' if link.hub else 'legacy'} {kind}' data-link='{_e(link.name)}' "
            f"data-status='{_e(kind)}'><title>{_e(title)}</title>"
            f"<path d='{path}' fill='none' stroke='{COLOURS[kind]}' stroke-width='{2.2 if link.hub else 2}'{dash} "
            f"marker-end='url(#arrow-{kind})'/>"
            f"<text x='{mx:.1f}' y='{my:.1f}' text-anchor='middle' fill='{COLOURS[kind]}' "
            f"stroke='white' stroke-width='3' paint-order='stroke'>{_e(label)}</text></g>"
        )
    parts.append(
        f"<g class='node hub-node'><circle cx='{CENTRE[0]}' cy='{CENTRE[1]}' r='46' fill='{COLOURS['hub']}'/>"
        f"<text x='{CENTRE[0]}' y='{CENTRE[1] + 5}' text-anchor='middle' fill='white' font-size='16' "
        "font-weight='bold'>hub</text></g>"
    )
    for name, (x, y) in at.items():
        if name == "hub":
            continue
        info = landscape.systems[name]
        fill = "#eff6ff" if info["in_hub"] else "#fef2f2"
        parts.append(
            f"<g class='node system' data-system='{_e(name)}'><title>{_e(info['description'])}</title>"
            f"<rect x='{x - 58:.1f}' y='{y - 20:.1f}' width='116' height='40' rx='8' fill='{fill}' stroke='#374151'/>"
            f"<text x='{x:.1f}' y='{y + 4:.1f}' text-anchor='middle' font-size='13' font-weight='bold'>"
            f"{_e(name)}</text></g>"
        )
    f = landscape.figures
    legend = [
        (COLOURS["hub"], "", "hub flow"), (COLOURS["live"], "", "legacy link, live"),
        (COLOURS["replaced"], "6 4", "legacy link, replaced by the hub"), (COLOURS["retired"], "6 4", "retired"),
    ]  # fmt: skip
    for i, (colour, dash, text) in enumerate(legend):
        y = HEIGHT - 80 + 18 * i
        parts.append(
            f"<line x1='20' y1='{y}' x2='60' y2='{y}' stroke='{colour}' stroke-width='2' stroke-dasharray='{dash}'/>"
            f"<text x='68' y='{y + 4}'>{_e(text)}</text>"
        )
    summary = (
        f"{f['links_replaced']} replaced · {f['links_live']} live · {f['links_retired']} retired · "
        f"{f['share_through_hub']:.0%} of flows through the hub · {f['point_to_point_avoided']} "
        f"point-to-point links avoided ({f['connected_systems']} systems)"
    )
    parts.append(
        f"<text id='figures' x='{WIDTH - 20}' y='{HEIGHT - 20}' text-anchor='end' font-size='13'>{_e(summary)}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _shrink(a, b, by: float = 30.0):
    """Pull both ends in from the node centres, so arrows end at the boxes' edges."""
    (x1, y1), (x2, y2) = a, b
    length = math.hypot(x2 - x1, y2 - y1) or 1
    dx, dy = (x2 - x1) / length * by, (y2 - y1) / length * by
    return (x1 + dx, y1 + dy), (x2 - dx, y2 - dy)


def to_html(landscape: Landscape) -> str:
    """A self-contained page: the picture, the figures, every flow in a table, any two writers."""
    rows = "".join(
        f"<tr class='{'hub' if link.hub else 'legacy'}'><td>{_e(link.name)}</td><td>{'hub' if link.hub else 'legacy'}"
        f"</td><td>{_e(link.source)}</td><td>{_e(link.target)}</td><td>{_e(link.what)}</td><td>{_e(link.schedule)}"
        f"</td><td>{_e(link.owner)}</td><td>{_e('replaced by ' + link.replaced_by if link.replaced_by else link.status)}"
        f"</td><td>{_e(link.last_success or '—')}</td></tr>"
        for link in [*landscape.hub_flows, *landscape.links]
    )
    f = landscape.figures
    figs = "".join(f"<tr><th>{_e(k.replace('_', ' '))}</th><td>{_e(v)}</td></tr>" for k, v in f.items())
    warnings = "".join(
        f"<li class='two-writers'>{_e(w['link'])} (legacy, live) and {_e(w['hub_flow'])} both write "
        f"{_e(w['system'])} {_e(', '.join(w['fields']))}</li>"
        for w in landscape.two_writers
    )
    style = (
        "body{font:14px system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f4f6}"
        ".two-writers{color:#b91c1c}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Integration landscape</title>"
        f"<style>{style}</style></head><body><h1>How data flows between our systems</h1>"
        f"<p>Hub flows from the hub's definitions; legacy links from {_e(landscape.source)}.</p>"
        f"{to_svg(landscape)}<h2>Migration</h2><table id='figures-table'>{figs}</table>"
        + (f"<h2>Two writers</h2><ul>{warnings}</ul>" if warnings else "")
        + "<h2>Every flow</h2><table id='flows'><tr><th>flow</th><th>kind</th><th>from</th><th>to</th><th>what</th>"
        f"<th>schedule</th><th>owner</th><th>status</th><th>last success</th></tr>{rows}</table></body></html>"
    )


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)
