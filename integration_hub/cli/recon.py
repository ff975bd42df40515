"""`hub recon report [--json] [--html PATH]`: the reconciliation state, for people and tools."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from integration_hub.engine.recon_report import NoReconciliationError, build_report, to_html
from integration_hub.warehouse import warehouse_from_env

app = typer.Typer(no_args_is_help=True, help="Reconciliation results: matches, findings and trends.")


@app.command()
def report(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    html_path: Path | None = typer.Option(
        None, "--html", help="Also write a self-contained HTML report here."
    ),
) -> None:
    """The latest reconciliation of every flow, with its history."""
    # The URL comes from the environment and is never printed (display_name hides the password).
    warehouse = warehouse_from_env()
    try:
        data = build_report(warehouse)
    except NoReconciliationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if html_path:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(to_html(data), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    table = Table(title=f"Reconciliation ({data['warehouse']})")
    for column in ("flow", "matched", "match rate", "findings", "latest run"):
        table.add_column(column)
    for flow, s in sorted(data["flows"].items()):
        found = ", ".join(f"{k} {n:,}" for k, n in s["findings"].items() if n) or "none"
        table.add_row(flow, f"{s['matched']:,}", f"{s['match_rate']:.2%}", found, s["run_at"])
    console = Console()
    console.print(table)
    if html_path:
        console.print(f"HTML report: {html_path}")
