"""The reconciliation report: where the systems agree, where they do not, and the trend.

Read from `recon.summary` (every run of every flow, kept over time) and the latest run's
`recon.<flow>__results`. Rendered as JSON for tools, or as one self-contained HTML page
whose charts are inline SVG drawn here (no script, no CDN), so it opens anywhere offline.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from pathlib import Path

from integration_hub.engine.recon_engine import SCHEMA, SUMMARY, results_table, sample_findings
from integration_hub.warehouse import Warehouse

HISTORY_RUNS = 60  # summary rows per flow shown in the trend
BINS = 20
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"]


class NoReconciliationError(RuntimeError):
    pass


def build_report(warehouse: Warehouse) -> dict:
    """Latest state per flow, each flow's history, findings by kind and money differences."""
    if not warehouse.table_exists(SCHEMA, SUMMARY):
        raise NoReconciliationError(
            f"no reconciliation has run yet in {warehouse.display_name}: "
            "materialize the assets of group 'reconciliation' first (e.g. `hub run nightly`)"
        )
    with warehouse.connect() as con:
        rows = con.rows(
            "SELECT flow, run_id, run_at, entity, left_rows, right_rows, matched, findings, match_rate, amounts "
            f"FROM (SELECT *, row_number() OVER (PARTITION BY flow ORDER BY run_at DESC, run_id DESC) AS n "
            f"FROM {SCHEMA}.{SUMMARY}) s WHERE n <= {HISTORY_RUNS} ORDER BY flow, run_at, run_id"
        )
        history: dict[str, list[dict]] = {}
        for flow, run_id, run_at, entity, left, right, matched, findings, rate, amounts in rows:
            history.setdefault(flow, []).append(
                {
                    "run_id": run_id,
                    "run_at": run_at.isoformat(),
                    "entity": entity,
                    "left_rows": left,
                    "right_rows": right,
                    "matched": matched,
                    "findings": json.loads(findings),
                    "match_rate": rate,
                    "amounts": json.loads(amounts or "{}"),
                }
            )
        flows = {}
        for flow, runs in history.items():
            latest = runs[-1]
            # Row-count flows differ in rows, not money: they stay out of the amounts histogram.
            differences = [] if latest["entity"] == "row_count" else _differences(con, flow, latest["run_id"])
            flows[flow] = {
                **latest,
                "samples": sample_findings(con, flow, latest["run_id"]),
                "differences": differences,
            }
    return {
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "warehouse": warehouse.display_name,
        "flows": flows,
        "history": {
            flow: [{k: r[k] for k in ("run_id", "run_at", "match_rate")} for r in runs]
            for flow, runs in history.items()
        },
    }


def _differences(con, flow: str, run_id: str) -> list[float]:
    """Numeric differences (money, days) of the latest run's mismatches, for the distribution."""
    rows = con.rows(
        f"SELECT difference FROM {results_table(flow)} WHERE run_id = ? AND difference IS NOT NULL ORDER BY 1",
        [run_id],
    )
    return [float(r[0]) for r in rows]


REPORT_FILE = "recon_report.html"


def write_html(warehouse: Warehouse, path: Path) -> dict:
    """Write the HTML report of `warehouse` to `path` (its folder made); returns the report's data."""
    data = build_report(warehouse)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_html(data), encoding="utf-8")
    return data


# ---- HTML -------------------------------------------------------------------------------------


def _esc(value) -> str:
    return html.escape("" if value is None else str(value))


def _svg(chart: str, title: str, width: int, height: int, body: list[str]) -> str:
    return (
        f"<figure><figcaption>{_esc(title)}</figcaption>"
        f'<svg data-chart="{chart}" role="img" aria-label="{_esc(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg></figure>'
    )


def match_rate_chart(history: dict[str, list[dict]], width: int = 720, height: int = 260) -> str:
    """One line per flow: match rate by run, the y axis zoomed to the lowest rate seen."""
    left, right, top, bottom = 50, 170, 15, 30
    rates = [r["match_rate"] for runs in history.values() for r in runs] or [1.0]
    low = max(0.0, math.floor(min(rates) * 100 - 1) / 100)
    longest = max((len(runs) for runs in history.values()), default=1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (plot_w * i / (longest - 1) if longest > 1 else plot_w / 2)

    def y(rate: float) -> float:
        return top + plot_h * (1 - (rate - low) / ((1 - low) or 1))

    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
    ]
    for tick in (low, (low + 1) / 2, 1.0):
        body.append(
            f'<text x="{left - 5}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11">{tick:.1%}</text>'
        )
    for n, (flow, runs) in enumerate(sorted(history.items())):
        color = PALETTE[n % len(PALETTE)]
        offset = longest - len(runs)  # align every flow's latest run on the right
        points = " ".join(f"{x(offset + i):.1f},{y(r['match_rate']):.1f}" for i, r in enumerate(runs))
        body.append(
            f'<polyline class="series" data-flow="{_esc(flow)}" fill="none" stroke="{color}" '
            f'stroke-width="2" points="{points}"/>'
        )
        for i, r in enumerate(runs):
            body.append(
                f'<circle cx="{x(offset + i):.1f}" cy="{y(r["match_rate"]):.1f}" r="3" fill="{color}">'
                f"<title>{_esc(flow)} {_esc(r['run_at'])}: {r['match_rate']:.3%}</title></circle>"
            )
        body.append(
            f'<text x="{left + plot_w + 10}" y="{top + 14 * n + 10}" font-size="11" fill="{color}">'
            f"{_esc(flow)}</text>"
        )
    body.append(
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" font-size="11">runs, oldest to latest</text>'
    )
    return _svg("match-rate", "Match rate over time", width, height, body)


def findings_chart(flows: dict[str, dict], width: int = 720) -> str:
    """Horizontal bars: findings of each kind in each flow's latest run."""
    bars = sorted(
        ((k, n, f) for f, s in flows.items() for k, n in s["findings"].items() if n), key=lambda b: -b[1]
    )
    bar_h, label_w, top = 20, 240, 10
    height = top * 2 + max(1, len(bars)) * (bar_h + 4)
    most = max((n for _, n, _ in bars), default=1)
    body = []
    if not bars:
        body.append(
            f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle">no findings: every record matched</text>'
        )
    for i, (kind, n, flow) in enumerate(bars):
        yy = top + i * (bar_h + 4)
        w = max(2.0, (width - label_w - 70) * n / most)
        body.append(
            f'<text x="{label_w - 6}" y="{yy + 14}" text-anchor="end" font-size="12">{_esc(kind)}</text>'
        )
        body.append(
            f'<rect class="bar" data-kind="{_esc(kind)}" x="{label_w}" y="{yy}" width="{w:.1f}" '
            f'height="{bar_h}" fill="#dc2626"><title>{_esc(flow)}: {n:,} {_esc(kind)}</title></rect>'
        )
        body.append(f'<text x="{label_w + w + 5:.1f}" y="{yy + 14}" font-size="12">{n:,}</text>')
    return _svg("findings-by-kind", "Findings by kind (latest run)", width, height, body)


def differences_chart(flows: dict[str, dict], width: int = 720, height: int = 240) -> str:
    """Histogram of the latest mismatches' differences (right minus left), all flows together."""
    values = [v for s in flows.values() for v in s["differences"]]
    left, bottom, top = 40, 35, 10
    plot_w, plot_h = width - left - 10, height - top - bottom
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>']
    if not values:
        body.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no differences beyond tolerance</text>'
        )
        return _svg("amount-differences", "Amount differences beyond tolerance", width, height, body)
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    counts = [0] * BINS
    for v in values:
        counts[min(BINS - 1, int((v - lo) / span * BINS))] += 1
    most = max(counts)
    bin_w = plot_w / BINS
    for i, n in enumerate(counts):
        h = plot_h * n / most
        start = lo + span * i / BINS
        body.append(
            f'<rect class="bin" x="{left + i * bin_w + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bin_w - 2:.1f}" '
            f'height="{h:.1f}" fill="#2563eb"><title>{start:,.2f} to {start + span / BINS:,.2f}: {n}</title></rect>'
        )
    for v, anchor in ((lo, "start"), (hi, "end")):
        xx = left if anchor == "start" else left + plot_w
        body.append(f'<text x="{xx}" y="{height - 15}" text-anchor="{anchor}" font-size="11">{v:,.2f}</text>')
    body.append(
        f'<text x="{left + plot_w / 2}" y="{height - 2}" text-anchor="middle" font-size="11">'
        f"difference (right - left), {len(values):,} mismatches</text>"
    )
    return _svg("amount-differences", "Amount differences beyond tolerance", width, height, body)


def _amounts(amounts: dict[str, float]) -> str:
    """Totals a flow reports beside its findings (e.g. processor fees), for the overview table."""
    return ", ".join(f"{name} {value:,.2f}" for name, value in amounts.items())


def to_html(report: dict) -> str:
    flows = report["flows"]
    rows = "".join(
        f"<tr><td>{_esc(f)}</td><td>{_esc(s['entity'])}</td><td>{s['left_rows']:,}</td><td>{s['right_rows']:,}</td>"
        f"<td>{s['matched']:,}</td><td>{s['match_rate']:.2%}</td><td>{sum(s['findings'].values()):,}</td>"
        f"<td>{_esc(s['run_at'])}</td><td>{_esc(_amounts(s['amounts']))}</td></tr>"
        for f, s in sorted(flows.items())
    )
    samples = []
    for flow, s in sorted(flows.items()):
        for kind, sample in s["samples"].items():
            cells = "".join(
                "<tr>"
                + "".join(
                    f"<td>{_esc(r[c])}</td>"
                    for c in ("left_key", "right_key", "left_value", "right_value", "difference")
                )
                + "</tr>"
                for r in sample
            )
            samples.append(
                f"<h3>{_esc(flow)} · {_esc(kind)} ({s['findings'].get(kind, 0):,})</h3><table><tr><th>left key</th>"
                f"<th>right key</th><th>left</th><th>right</th><th>difference</th></tr>{cells}</table>"
            )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reconciliation report</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2rem; color: #111; max-width: 980px; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
figure {{ margin: 1rem 0 2rem; }} figcaption {{ font-weight: 600; margin-bottom: .5rem; }}
</style></head><body>
<h1>Reconciliation report</h1>
<p>Generated {_esc(report["generated_at"])} from {_esc(report["warehouse"])}.</p>
<table><tr><th>flow</th><th>entity</th><th>left rows</th><th>right rows</th><th>matched</th><th>match rate</th>
<th>findings</th><th>latest run</th><th>amounts</th></tr>{rows}</table>
{match_rate_chart(report["history"])}
{findings_chart(flows)}
{differences_chart(flows)}
<h2>Samples</h2>
{"".join(samples) or "<p>No findings.</p>"}
</body></html>
"""
