"""`hub audit …`: the audit trail, where a record came from and where it went."""

from __future__ import annotations

import json

import typer
from rich.console import Console

audit_app = typer.Typer(no_args_is_help=True, help="The audit trail: trace one record end to end.")
console = Console()


# ---- hub audit trace ----------------------------------------------------------------------


@audit_app.command("trace")
def trace_command(
    ref: str = typer.Argument(..., help="Canonical id (SO-…, in_…, customer id) or system:id (shop:1234)."),
    as_json: bool = typer.Option(False, "--json", help="Print the trace as JSON."),
) -> None:
    """One record's path end to end: source rows, runs, canonical rows, findings, pushes."""
    from integration_hub.engine.trace import TraceError, trace
    from integration_hub.warehouse import warehouse_from_env

    try:
        traces = trace(warehouse_from_env(), ref)
    except TraceError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps([t.as_dict() for t in traces], indent=2))
        return
    for t in traces:
        _print_trace(t.as_dict())


def _print_trace(t: dict) -> None:
    console.rule(f"{t['subject']['entity']} {t['subject']['id']}  (from {t['ref']})")
    sections = [
        ("source rows", t["sources"]),
        ("canonical rows", t["canonical"]),
        ("reconciliation findings", t["findings"]),
    ]
    for title, groups in sections:
        console.print(f"[bold]{title}[/]" + ("" if groups else ": none"))
        for table, rows in groups.items():
            for row in rows:
                shown = {k: v for k, v in row.items() if not k.startswith("_dlt_") or k == "_dlt_load_id"}
                console.print(f"  {table}: {json.dumps(shown, default=str)[:300]}")
    console.print("[bold]pushes[/]" + ("" if t["pushes"] else ": none"))
    for p in t["pushes"]:
        console.print(f"  {p.get('sync')} {p.get('key')} {p.get('operation')} → {p.get('status')} "
                      f"{p.get('error') or ''} at {p.get('changed_at')} (run {p.get('run_id')})")  # fmt: skip
    for d in t["dead_letters"]:
        console.print(
            f"  [red]dead letter[/] {d.get('sync')} {d.get('key')} {d.get('status')}: {d.get('error')}"
        )
    console.print("[bold]runs[/]" + ("" if t["runs"] else ": none"))
    for m in t["runs"]:
        console.print(f"  {m.get('run_id')} {m.get('direction'):<10} {m.get('asset')} {m.get('resource') or ''} "
                      f"in={m.get('rows_in')} out={m.get('rows_out')} rejected={m.get('rows_rejected')}")  # fmt: skip
