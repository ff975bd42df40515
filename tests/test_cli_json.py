"""Every `hub` command that prints a table or a listing has `--json`, and what it prints then parses.

Commands that report nothing tabular are named here with why; a new command must join one side.
"""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from integration_hub.cli import app

cli = CliRunner()

# Commands that print no table: a line of confirmation, a path, or JSON already.
NO_TABLE = {
    "dagster-home": "prints the path of $DAGSTER_HOME",
    "dlq discard": "confirms one id",
    "sandbox down": "says stopped or not running",
    "sandbox seed": "prints the steps it took",
    "sandbox faults": "prints the system's faults as JSON already",
    "ui serve": "runs the UI behind its login until stopped; prints where it listens",
    "ui proxy": "runs the login in front of a webserver until stopped",
}


def _commands(group, prefix: str = "") -> dict:
    """Every leaf command of the CLI by its full name (typer's groups: anything with `commands`)."""
    found = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):
            found.update(_commands(command, f"{path} "))
        else:
            found[path] = command
    return found


def test_every_command_that_prints_a_table_has_json():
    commands = _commands(typer.main.get_command(app))
    assert {"recon report", "sync list", "dlq replay", "backfill", "sandbox up", "demo"} <= set(commands)
    missing = [
        name for name, command in sorted(commands.items())
        if name not in NO_TABLE and not any("--json" in p.opts for p in command.params)
    ]  # fmt: skip
    assert not missing, f"print a table but have no --json: {missing}"
    assert set(NO_TABLE) <= set(commands), "a command named here is gone: drop it from NO_TABLE"


def test_the_new_json_outputs_parse(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    from assets.syncs import SYNCS

    listed = cli.invoke(app, ["sync", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    syncs = json.loads(listed.stdout)
    assert [s["name"] for s in syncs] == list(SYNCS)
    support = next(s for s in syncs if s["name"] == "support_orders")
    assert support["destination"] == "support" and support["latency_target_seconds"] == 1200

    replayed = cli.invoke(app, ["dlq", "replay", "--json"])
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout) == [], "no open dead letters in a new warehouse"
