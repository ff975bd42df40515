"""The `hub` command line: one entry point for runs, backfills, reports, queues and the audit trail.

Each area keeps its commands in its own module as a `typer.Typer` sub-app; this file mounts
them, so adding a command never means editing another area's file. Packages installed beside
the hub add commands through the `integration_hub.cli` entry-point group (a `Typer` is mounted
as a group of commands, a function as one command): the sandbox adds `hub sandbox …` and
`hub demo` that way, so the product never imports it.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from integration_hub.cli.access import access_app
from integration_hub.cli.audit import audit_app
from integration_hub.cli.landscape import landscape_command
from integration_hub.cli.recon import app as recon_app
from integration_hub.cli.retention import retention_app
from integration_hub.cli.run import backfill_command, run_command
from integration_hub.cli.sync import dlq_app, sync_app
from integration_hub.cli.ui import ui_app

PLUGINS = "integration_hub.cli"

app = typer.Typer(no_args_is_help=True, help="Integration Hub: connect every business system once.")
app.add_typer(access_app, name="access", help="Access control on the Postgres warehouse: roles and grants.")
app.add_typer(audit_app, name="audit", help="The audit trail: trace one record end to end.")
app.command("landscape")(landscape_command)
app.command("run")(run_command)
app.command("backfill")(backfill_command)
app.add_typer(sync_app, name="sync", help="Reverse syncs: plan (dry run) and apply.")
app.add_typer(dlq_app, name="dlq", help="Dead letters of the reverse syncs: list, replay, discard.")
app.add_typer(recon_app, name="recon", help="Reconciliation: where the systems agree and where they do not.")
app.add_typer(ui_app, name="ui", help="The Dagster UI on 127.0.0.1 behind a login (nginx, HTTP basic auth).")
app.add_typer(
    retention_app, name="retention", help="Retention: rows past their rule's age, shown or deleted."
)


@app.command("dagster-home")
def dagster_home() -> None:
    """Create `$DAGSTER_HOME` with the hub's instance config and print its path."""
    from integration_hub.definitions.instance import ensure_dagster_home

    typer.echo(ensure_dagster_home())


for plugin in sorted(entry_points(group=PLUGINS), key=lambda e: e.name):
    command = plugin.load()
    if isinstance(command, typer.Typer):
        app.add_typer(command, name=plugin.name)
    else:
        app.command(plugin.name)(command)


def main() -> None:
    """The `hub` entry point: a configuration error, or a Postgres warehouse that cannot be
    reached, is one line naming the variable or the warehouse, exit 2."""
    from integration_hub.settings import ConfigError
    from integration_hub.warehouse import WarehouseUnavailable

    try:
        app()
    except ConfigError as exc:
        typer.echo(f"hub: configuration error: {exc}", err=True)
        raise SystemExit(2) from None
    except WarehouseUnavailable as exc:
        typer.echo(f"hub: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
