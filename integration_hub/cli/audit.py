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
    show_pii: bool = typer.Option(False, "--show-pii", help="Show personal data instead of masking it."),
) -> None:
    """One record's path end to end: source rows, runs, canonical rows, findings, pushes.

    Personal data (the canonical model's PII flags; in raw rows, fields named as personal) is
    masked unless `--show-pii` is given: a trace is pasted into tickets and chats."""
    from integration_hub.engine.trace import TraceError, trace
    from integration_hub.warehouse import warehouse_from_env

    try:
        traces = trace(warehouse_from_env(), ref)
    except TraceError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    shown = [t.as_dict() if show_pii else masked_trace(t.as_dict()) for t in traces]
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    for t in shown:
        _print_trace(t)


def masked_trace(t: dict) -> dict:
    """A trace with personal values masked: rows by their table, dead-letter payloads by their sync."""
    from assets.syncs import SYNCS
    from integration_hub.engine import pii

    t = dict(t)
    t["sources"] = {
        table: [pii.masked(*table.split(".", 1), row) for row in rows] for table, rows in t["sources"].items()
    }
    t["canonical"] = {
        entity: [pii.masked("canonical", entity, row) for row in rows]
        for entity, rows in t["canonical"].items()
    }
    t["dead_letters"] = [masked_letter(d, SYNCS) for d in t["dead_letters"]]
    return t


def masked_letter(letter: dict, syncs: dict) -> dict:
    """A dead letter whose payload's personal fields (its sync's PII) are masked."""
    from integration_hub.engine import pii

    sync = syncs.get(letter.get("sync"))
    if sync is None or not letter.get("payload"):
        return letter
    return {**letter, "payload": json.dumps(pii.masked_payload(sync, json.loads(letter["payload"])))}


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
