"""The landscape drawn: one inline-SVG picture (the hub in the centre, every system around it,
each hub flow and legacy link with its schedule and last success), a self-contained HTML page
around it, and the same flows as a markdown table for the Dagster UI. No script, no CDN.
"""

from __future__ import annotations

import html
import math

from integration_hub.engine.landscape import Landscape, Link

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
    at = _positions(list(landscape.systems))
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
        pairs[pair] = pairs.get(pair, -1) + 1
        parts.append(_link_svg(link, at, pairs[pair]))
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
    parts += [_legend_svg(landscape.figures), "</svg>"]
    return "".join(parts)


def _link_svg(link: Link, at: dict[str, tuple[float, float]], n: int) -> str:
    """One flow as a curve with its arrow and label; `n` counts earlier flows between its two ends."""
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
    return (
        f"<g class='link {'hub' if link.hub else 'legacy'} {kind}' data-link='{_e(link.name)}' "
        f"data-status='{_e(kind)}'><title>{_e(title)}</title>"
        f"<path d='{path}' fill='none' stroke='{COLOURS[kind]}' stroke-width='{2.2 if link.hub else 2}'{dash} "
        f"marker-end='url(#arrow-{kind})'/>"
        f"<text x='{mx:.1f}' y='{my:.1f}' text-anchor='middle' fill='{COLOURS[kind]}' "
        f"stroke='white' stroke-width='3' paint-order='stroke'>{_e(label)}</text></g>"
    )


def _legend_svg(f: dict) -> str:
    legend = [
        (COLOURS["hub"], "", "hub flow"), (COLOURS["live"], "", "legacy link, live"),
        (COLOURS["replaced"], "6 4", "legacy link, replaced by the hub"), (COLOURS["retired"], "6 4", "retired"),
    ]  # fmt: skip
    parts = [
        f"<line x1='20' y1='{HEIGHT - 80 + 18 * i}' x2='60' y2='{HEIGHT - 80 + 18 * i}' stroke='{colour}' "
        f"stroke-width='2' stroke-dasharray='{dash}'/><text x='68' y='{HEIGHT - 76 + 18 * i}'>{_e(text)}</text>"
        for i, (colour, dash, text) in enumerate(legend)
    ]
    summary = (
        f"{f['links_replaced']} replaced · {f['links_live']} live · {f['links_retired']} retired · "
        f"{f['share_through_hub']:.0%} of flows through the hub · {f['point_to_point_avoided']} "
        f"point-to-point links avoided ({f['connected_systems']} systems)"
    )
    parts.append(
        f"<text id='figures' x='{WIDTH - 20}' y='{HEIGHT - 20}' text-anchor='end' font-size='13'>{_e(summary)}</text>"
    )
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
