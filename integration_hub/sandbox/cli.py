"""`hub sandbox …` commands (filled in by the sandbox work)."""

import typer

app = typer.Typer(no_args_is_help=True)
