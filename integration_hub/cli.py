"""The `hub` command line: one entry point for the sandbox, runs, backfills, reports and queues.

Each area keeps its commands in its own module as a `typer.Typer` sub-app; this file
mounts them, so adding a command never means editing another area's file.
"""

from __future__ import annotations

import typer

from integration_hub.ops_cli import audit_app, backfill_command, run_command
from integration_hub.recon_cli import app as recon_app
from integration_hub.sandbox.cli import app as sandbox_app
from integration_hub.sync_cli import dlq_app, sync_app

app = typer.Typer(no_args_is_help=True, help="Integration Hub: connect every business system once.")
app.add_typer(sandbox_app, name="sandbox", help="The sandbox world of business systems.")
app.add_typer(audit_app, name="audit", help="The audit trail: trace one record end to end.")
app.command("run")(run_command)
app.command("backfill")(backfill_command)
app.add_typer(sync_app, name="sync", help="Reverse syncs: plan (dry run) and apply.")
app.add_typer(dlq_app, name="dlq", help="Dead letters of the reverse syncs: list, replay, discard.")
app.add_typer(recon_app, name="recon", help="Reconciliation: where the systems agree and where they do not.")


@app.command("dagster-home")
def dagster_home() -> None:
    """Create `$DAGSTER_HOME` with the hub's instance config and print its path."""
    from integration_hub.instance import ensure_dagster_home

    typer.echo(ensure_dagster_home())


@app.command()
def demo(
    scale: float = typer.Option(0.01, help="TPC-H scale factor of the sandbox world."),
    seed: int = typer.Option(42, help="Seed of the planted discrepancies."),
    keep_running: bool = typer.Option(False, help="Leave the sandbox systems running afterwards."),
) -> None:
    """Start the sandbox, run the main job on the embedded warehouse, print what happened."""
    from integration_hub.demo import run_demo

    raise typer.Exit(run_demo(scale=scale, seed=seed, keep_running=keep_running))


if __name__ == "__main__":
    app()
