"""`hub recon report [--json] [--html PATH] [--fail-on error|warn]`: the reconciliation state, for
people, tools and CI."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from integration_hub.engine.recon_report import NoReconciliationError, build_report, to_html
from integration_hub.warehouse import warehouse_from_env

app = typer.Typer(no_args_is_help=True, help="Reconciliation results: matches, findings and trends.")


class FailOn(StrEnum):
    error = "error"
    warn = "warn"
    never = "never"


def judged(data: dict) -> list[dict]:
    """Each flow's latest findings judged as its asset checks judge them (`assets.reconciliation`)."""
    from assets.reconciliation import declared_flows, verdicts

    flows = declared_flows()
    return [
        {"flow": v.flow, "check": v.kind, "findings": v.findings, "share": round(v.share, 6),
         "passed": v.passed, "severity": v.severity}
        for name, s in sorted(data["flows"].items()) if name in flows
        for v in verdicts(flows[name], s["findings"], s["left_rows"])
    ]  # fmt: skip


@app.command()
def report(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    html_path: Path | None = typer.Option(
        None, "--html", help="Also write a self-contained HTML report here."
    ),
    fail_on: FailOn = typer.Option(
        FailOn.never,
        "--fail-on",
        help="Exit 1 when a check of the latest reconciliation failed at this severity or above "
        "(error: a kind that stops syncs is over its share; warn: any finding). For CI.",
    ),
) -> None:
    """The latest reconciliation of every flow, with its history and its checks' verdicts."""
    # The URL comes from the environment and is never printed (display_name hides the password).
    warehouse = warehouse_from_env()
    try:
        data = build_report(warehouse)
    except NoReconciliationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    checks = judged(data)
    if html_path:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(to_html(data), encoding="utf-8")
    failing = [
        c for c in checks
        if not c["passed"] and (fail_on is FailOn.warn or (fail_on is FailOn.error and c["severity"] == "ERROR"))
    ]  # fmt: skip
    if as_json:
        typer.echo(json.dumps({**data, "checks": checks}, indent=2, default=str))
    else:
        _print(data, checks, html_path)
    if failing:
        typer.echo(
            f"{len(failing)} check(s) failed at --fail-on {fail_on.value}: "
            + ", ".join(f"{c['flow']}/{c['check']} ({c['severity']}, {c['findings']:,})" for c in failing),
            err=True,
        )
        raise typer.Exit(1)


def _print(data: dict, checks: list[dict], html_path: Path | None) -> None:
    table = Table(title=f"Reconciliation ({data['warehouse']})")
    for column in ("flow", "matched", "match rate", "findings", "latest run"):
        table.add_column(column)
    for flow, s in sorted(data["flows"].items()):
        found = ", ".join(f"{k} {n:,}" for k, n in s["findings"].items() if n) or "none"
        table.add_row(flow, f"{s['matched']:,}", f"{s['match_rate']:.2%}", found, s["run_at"])
    console = Console()
    console.print(table)
    errors = [f"{c['flow']}/{c['check']}" for c in checks if not c["passed"] and c["severity"] == "ERROR"]
    console.print(f"checks failing as ERROR (they hold back the syncs): {', '.join(errors) or 'none'}")
    if html_path:
        console.print(f"HTML report: {html_path}")
