"""`hub sync …` and `hub dlq …`: see what a sync would send, send it, and work its dead letters."""

from __future__ import annotations

import json

import typer

sync_app = typer.Typer(no_args_is_help=True, help="Reverse syncs: plan (dry run) and apply.")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: records a destination refused.")


def _warehouse():
    from integration_hub.warehouse import warehouse_from_env

    return warehouse_from_env()


def _sync(name: str):
    from assets.syncs import get_sync

    try:
        return get_sync(name)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


@sync_app.command("list")
def list_syncs(as_json: bool = typer.Option(False, "--json", help="Print the syncs as JSON.")) -> None:
    """The declared syncs and where each one sends."""
    from assets.syncs import SYNCS

    if as_json:
        typer.echo(json.dumps([
            {"name": s.name, "mode": s.mode, "destination": s.destination, "object": s.object,
             "description": s.description, "latency_target_seconds": s.latency_target.total_seconds()}
            for s in SYNCS.values()
        ], indent=2))  # fmt: skip
        return
    for s in SYNCS.values():
        typer.echo(f"{s.name:<20} {s.mode:<7} → {s.destination}.{s.object}  {s.description}")


@sync_app.command("plan")
def plan(name: str, as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON.")) -> None:
    """What `apply` would send now (inserts, updates, deletes, unchanged); sends nothing."""
    from integration_hub.engine import sync_engine

    current = sync_engine.plan(_sync(name), _warehouse())
    if as_json:
        typer.echo(json.dumps(current.to_dict(), default=str, indent=2))
        return
    typer.echo(f"{name}: {_counts(current.counts)}")
    if current.filtered:
        typer.echo(f"filtered: {_counts(current.filtered)}")
    if current.withheld:
        typer.echo(f"withheld by the allow-list (never sent): {', '.join(current.withheld)}")
    typer.echo(current.markdown())


@sync_app.command("apply")
def apply(name: str, as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Send the plan; exits 1 when records could not be delivered for now (they are retried next run)."""
    from integration_hub.engine import sync_engine
    from integration_hub.systems.kit.writer import DestinationUnusable

    try:
        # Progress lines go to stderr: stdout stays the result (JSON with --json).
        result = sync_engine.apply(
            _sync(name), _warehouse(), progress=lambda line: typer.echo(line, err=True)
        )
    except DestinationUnusable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), default=str, indent=2))
    else:
        typer.echo(
            f"{name}: delivered {result.delivered}, rejected {result.rejected}, failed {result.failed} "
            f"in {result.requests} requests, {result.seconds:.1f}s (run {result.run_id})"
        )
        if result.rejected:
            typer.echo(f"rejected records are in the dead-letter queue: hub dlq list --sync {name}")
    raise typer.Exit(1 if result.failed else 0)


@sync_app.command("latency")
def latency(
    sync: str | None = typer.Option(None, "--sync", help="Only this sync."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """From a change at the source to the destination's confirmation, over each sync's latest run
    that delivered records: p50, p95 and max against its target; exits 1 when a p95 exceeds it."""
    from assets.syncs import SYNCS
    from integration_hub.engine import sync_engine

    syncs = [_sync(sync)] if sync else list(SYNCS.values())
    warehouse = _warehouse()
    figures = [sync_engine.measure_latency(warehouse, s) for s in syncs]
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in figures], default=str, indent=2))
    for f in [] if as_json else figures:
        if not f.records:
            typer.echo(
                f"{f.sync:<20} no delivered record with a change time yet (target {f.target_seconds:.0f}s)"
            )
            continue
        typer.echo(
            f"{f.sync:<20} p50 {f.p50_seconds:.1f}s  p95 {f.p95_seconds:.1f}s  max {f.max_seconds:.1f}s  "
            f"target {f.target_seconds:.0f}s  {'ok' if f.passed else 'OVER'}  ({f.records} records, run {f.run_id})"
        )
    raise typer.Exit(0 if all(f.passed for f in figures) else 1)


@dlq_app.command("list")
def list_letters(
    sync: str | None = typer.Option(None, "--sync", help="Only this sync's dead letters."),
    all_states: bool = typer.Option(False, "--all", help="Also delivered and discarded ones."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    show_pii: bool = typer.Option(False, "--show-pii", help="Show the payloads' personal data unmasked."),
) -> None:
    """Open dead letters: the key, the destination's error, and how often it was tried (payloads'
    personal data masked unless `--show-pii`; a replay always sends the stored payload)."""
    from assets.syncs import SYNCS
    from integration_hub.cli.audit import masked_letter
    from integration_hub.engine.sync_engine import dead_letters

    letters = dead_letters(_warehouse(), sync, None if all_states else "open")
    letters = letters if show_pii else [masked_letter(d, SYNCS) for d in letters]
    if as_json:
        typer.echo(json.dumps(letters, default=str, indent=2))
        return
    if not letters:
        typer.echo("no dead letters")
    for d in letters:
        typer.echo(
            f"{d['id']}  {d['sync']}  {d['key']}  {d['status']}  attempts {d['attempts']}  {d['error']}"
        )


@dlq_app.command("replay")
def replay(
    sync: str | None = typer.Option(None, "--sync", help="Only this sync's dead letters."),
    as_json: bool = typer.Option(False, "--json", help="Print one result per sync as JSON."),
) -> None:
    """Send every open dead letter again; delivered ones leave the queue."""
    from assets.syncs import SYNCS
    from integration_hub.engine import sync_engine
    from integration_hub.systems.kit.writer import DestinationUnusable

    if sync:
        _sync(sync)
    try:
        results = sync_engine.replay(_warehouse(), SYNCS, sync)
    except DestinationUnusable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], default=str, indent=2))
    elif not results:
        typer.echo("no open dead letters")
    for r in [] if as_json else results:
        typer.echo(f"{r.sync}: delivered {r.delivered}, still rejected {r.rejected}, failed {r.failed}")
    raise typer.Exit(1 if any(r.rejected or r.failed for r in results) else 0)


@dlq_app.command("discard")
def discard(
    letter_id: str = typer.Argument(..., metavar="ID", help="The dead letter's id (see `hub dlq list`)."),
    reason: str = typer.Option(..., "--reason", help="Why it is given up on; kept with the letter."),
) -> None:
    """Give up on one dead letter: the same content is never sent again."""
    from assets.syncs import SYNCS
    from integration_hub.engine import sync_engine

    try:
        sync_engine.discard(_warehouse(), letter_id, reason, SYNCS)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"discarded {letter_id}")
