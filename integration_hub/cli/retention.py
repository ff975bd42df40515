"""`hub retention apply`: what the retention rules delete, shown before (`--dry-run`) or done now."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import typer
from rich.console import Console
from rich.table import Table

retention_app = typer.Typer(no_args_is_help=True, help="Retention: rows past their rule's age.")
console = Console()


@retention_app.command("apply")
def apply(
    as_of: str = typer.Option(
        None, "--as-of", help="Judge ages as of this day (YYYY-MM-DD, UTC); default now."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; delete nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print one object per table as JSON."),
) -> None:
    """Apply every retention rule (the `audit/retention` asset runs the same code daily)."""
    from integration_hub.engine import retention_rules
    from integration_hub.warehouse import warehouse_from_env

    try:
        now = dt.datetime.fromisoformat(as_of) if as_of else None
    except ValueError:
        console.print(f"[red]error:[/] --as-of {as_of!r} is not a date (YYYY-MM-DD)")
        raise typer.Exit(2) from None
    warehouse = warehouse_from_env()
    deletions = retention_rules.apply_retention(warehouse, now=now, dry_run=dry_run)
    if not dry_run:
        retention_rules.record_deletions(warehouse, f"cli-{uuid.uuid4().hex[:12]}", deletions)
    if as_json:
        typer.echo(json.dumps([d.to_dict() for d in deletions], indent=2))
        return
    table = Table(title="retention" + (" (dry run: nothing deleted)" if dry_run else ""))
    for column in ("table", "rule", "cutoff", "rows deleted"):
        table.add_column(column, justify="right" if column == "rows deleted" else "left")
    for d in deletions:
        row = d.to_dict()
        table.add_row(f"{d.schema}.{d.table}", row["rule"], row["cutoff"][:19], str(d.rows_deleted))
    console.print(table)
