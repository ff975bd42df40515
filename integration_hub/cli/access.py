"""`hub access apply|show`: the Postgres warehouse's roles (writer, analyst, auditor) and their grants.

Both connect with `HUB_ACCESS_ADMIN_URL` (else `HUB_WAREHOUSE_URL`); role names and passwords
come from `HUB_ACCESS_<KIND>_ROLE` / `HUB_ACCESS_<KIND>_PASSWORD` (docs/configuration.md).
Passwords are never printed.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

access_app = typer.Typer(no_args_is_help=True, help="Access control on the Postgres warehouse.")
console = Console()


def _admin_warehouse():
    from integration_hub import settings
    from integration_hub.warehouse import Warehouse

    return Warehouse(url=settings.access_admin_url())


def _fail(exc: Exception) -> None:
    typer.echo(f"hub access: {exc}", err=True)
    raise typer.Exit(2) from None


@access_app.command("apply")
def apply(as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON.")) -> None:
    """Create the roles if missing and set their grants (idempotent: run it after every deploy,
    and after a run that created a new canonical or recon table)."""
    from integration_hub.engine import access

    try:
        done = access.apply(_admin_warehouse(), access.Roles.from_env())
    except access.AccessError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(done, indent=2))
        return
    roles = done["roles"]
    console.print(
        f"access applied on {done['database']}: writer [bold]{roles['writer']}[/], analyst "
        f"[bold]{roles['analyst']}[/], auditor [bold]{roles['auditor']}[/]; passwords set: "
        f"{', '.join(done['passwords_set']) or 'none (left as they were)'}"
    )
    console.print(
        f"{len(done['schemas'])} hub schemas, {done['ownership_given_to_writer']} objects given to the writer"
    )
    for layer, views in done["analyst_views"].items():
        masked = {v.split(".", 1)[1]: cols for v, cols in views.items() if cols}
        shown = "; ".join(f"{t}: {', '.join(c)}" for t, c in masked.items())
        console.print(
            f"{layer}: {len(views)} analyst views ({'masked ' + shown if shown else 'nothing to mask'})"
        )


@access_app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print one object per role as JSON.")) -> None:
    """Who can read and write what, as the database says now."""
    from integration_hub.engine import access

    try:
        report = access.show(_admin_warehouse(), access.Roles.from_env())
    except access.AccessError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="warehouse access")
    for column in ("role", "kind", "login", "can read", "can write"):
        table.add_column(column)
    for entry in report:
        table.add_row(
            entry["role"],
            entry["kind"],
            ("yes" if entry["login"] else "no") if entry["exists"] else "missing",
            _tables(entry["read"], entry["masked"]),
            _tables(entry["write"], {}),
        )
    console.print(table)


def _tables(by_schema: dict[str, list[str]], masked: dict[str, list[str]]) -> str:
    if not by_schema:
        return "nothing"
    lines = []
    for schema, tables in by_schema.items():
        shown = [
            f"{t} (masked: {', '.join(masked[f'{schema}.{t}'])})" if masked.get(f"{schema}.{t}") else t
            for t in tables
        ]
        lines.append(f"{schema}: {', '.join(shown)}")
    return "\n".join(lines)
