"""`hub landscape`: how data flows between the company's systems, through the hub and beside it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console


def landscape_command(
    html_file: Path = typer.Option(None, "--html", help="Also draw the picture into this HTML file."),
    as_json: bool = typer.Option(False, "--json", help="Print the landscape as JSON."),
    inventory: Path = typer.Option(
        None,
        "--file",
        help="The inventory to read (default: HUB_LANDSCAPE, else landscape.yaml in the repository).",
    ),
) -> None:
    """Every flow between the systems (the hub's, from its definitions; the legacy links of the
    inventory), each with its schedule and last success, and the migration figures."""
    console = Console()  # made per call: its width is the terminal's now

    from assets.landscape import build
    from integration_hub.engine import landscape as engine
    from integration_hub.engine import landscape_picture as picture
    from integration_hub.warehouse import warehouse_from_env

    try:
        found = build(warehouse_from_env(), inventory)
    except engine.LandscapeError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if html_file:
        html_file.parent.mkdir(parents=True, exist_ok=True)
        html_file.write_text(picture.to_html(found))
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2, default=str))
        return
    _print(console, found)
    if html_file:
        console.print(f"picture written to {html_file}")


def _print(console: Console, found) -> None:
    from rich.table import Table

    table = Table(title=f"flows ({found.source})", title_justify="left", title_style="bold")
    for column in ("flow", "from", "to", "what", "schedule", "status", "last success"):
        table.add_column(column)
    for link in [*found.hub_flows, *found.links]:
        status = f"replaced by {link.replaced_by}" if link.replaced_by else link.status
        kind = "hub" if link.hub else "legacy"
        table.add_row(f"{link.name} ({kind})", link.source, link.target, link.what, link.schedule, status,
                      link.last_success or "—")  # fmt: skip
    console.print(table)
    f = found.figures
    console.print(
        f"[bold]migration[/]: {f['links_replaced']} legacy links replaced, {f['links_live']} still live, "
        f"{f['links_retired']} retired; {f['share_through_hub']:.0%} of {f['hub_flows'] + f['links_live']} flows "
        f"go through the hub; {f['connected_systems']} systems on {f['hub_connections']} hub connections instead "
        f"of {f['point_to_point_avoided']} point-to-point links (N·(N−1)/2)"
    )
    for w in found.two_writers:
        console.print(f"[yellow]two writers[/]: {w['link']} (legacy, live) and {w['hub_flow']} both write "
                      f"{w['system']} {', '.join(w['fields'])}")  # fmt: skip
