"""Dagster's GraphQL API for the `hub` CLI, with no webserver needed.

Documents run through `dagster-graphql`, the CLI Dagster ships and documents for exactly this
(`dagster-graphql -t <document> -v <variables>`): it executes against the instance in
`$DAGSTER_HOME` and, when a mutation needs the definitions, loads the code location itself.
So `hub backfill` registers what the UI's "Launch backfill" registers, with the same checks,
whether or not `make dev` is running; only the daemon has to run for the backfill to execute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_SECONDS = 600  # loading the code location included


class GraphQLError(RuntimeError):
    """Dagster refused or failed a GraphQL document; the message says what it answered."""


@dataclass(frozen=True)
class CodeLocation:
    """Where the definitions a document needs live: `module`'s `attribute`, importable from
    `working_directory` (default: the current directory)."""

    module: str
    attribute: str = "defs"
    working_directory: str | None = None

    def cli_args(self) -> list[str]:
        args = ["-m", self.module, "-a", self.attribute]
        return args + ["-d", self.working_directory or os.getcwd()]


HUB = CodeLocation("integration_hub.definitions")


def _executable() -> str:
    beside = Path(sys.executable).with_name("dagster-graphql")
    found = str(beside) if beside.exists() else shutil.which("dagster-graphql")
    if found is None:
        raise GraphQLError(
            "dagster-graphql is not installed in this environment: pip install dagster-graphql"
        )
    return found


def execute(document: str, variables: dict[str, Any], location: CodeLocation | None = None) -> dict:
    """The `data` of `document` executed against the hub's instance (`location` loaded, if given).

    Raises `GraphQLError` when the CLI fails or the answer carries GraphQL errors.
    """
    from integration_hub.definitions.instance import ensure_dagster_home

    env = {**os.environ, "DAGSTER_HOME": str(ensure_dagster_home())}
    target = location.cli_args() if location is not None else ["--empty-workspace"]
    with tempfile.TemporaryDirectory(prefix="hub-graphql-") as tmp:
        out = Path(tmp) / "answer.json"
        command = [_executable(), "-t", document, "-v", json.dumps(variables), "-o", str(out), *target]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise GraphQLError(f"dagster-graphql did not answer within {TIMEOUT_SECONDS}s") from None
        if done.returncode != 0 or not out.exists():
            raise GraphQLError(
                f"dagster-graphql failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}"
            )
        answer = json.loads(out.read_text())
    if answer.get("errors"):
        raise GraphQLError("; ".join(error.get("message", str(error)) for error in answer["errors"]))
    return answer["data"]


def result(data: dict, field: str, expected: str) -> dict:
    """`data[field]` when it is of GraphQL type `expected`; else its error, raised as `GraphQLError`.

    The document must select `__typename` and `... on Error { message }` on `field`.
    """
    value = data[field]
    if value.get("__typename") != expected:
        raise GraphQLError(f"{field}: {value.get('__typename')}: {value.get('message', value)}")
    return value
