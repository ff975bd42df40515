"""Shared fixtures: the sandbox world over real HTTP, and the Postgres service.

The world (scale 0.01, seed 42) is generated once per session into a template home;
`sandbox` serves a pristine copy of it for the whole session, and `make_sandbox` gives a
test its own running copy to mutate (ticks, writes). Every home is a tmp folder and
every sandbox gets free ports, so parallel runs never collide. Every copy serves HTTPS with
the template's CA, whose bundle the session trusts (`HUB_CA_BUNDLE`, and `SSL_CERT_FILE` for
the tests' own httpx calls).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hub_sandbox import PORT_OFFSETS as SANDBOX_PORT_OFFSETS
from hub_sandbox import runner, tls
from hub_sandbox.seed import read_world_info, write_world
from hub_sandbox.truth import read_truth
from hub_sandbox.world import World, build_world

from integration_hub.warehouse import Warehouse

SCALE, SEED = 0.01, 42
POSTGRES_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Tests load files right after writing them, and write them whole (the sandbox by a rename), so
# the wait for a file still being written is off; tests/test_landing_files.py sets it itself.
os.environ.setdefault("HUB_LANDING_SETTLE_SECONDS", "0")

# The longest test files, longest first (per-file durations of a full run, `--durations=60`).
# `make test` runs `--dist loadfile`: xdist hands files to its workers in collection order,
# so starting with the longest ones lets the workers finish at about the same time. Three
# workers on two cores: the daemon drills wait on Dagster's daemon loops, and a third worker
# fills those waits.
LONGEST_FIRST = (
    "test_changes_path.py", "test_drills_faults.py", "test_scaleout_celery.py", "test_browser_ui.py", "test_backfill_daemon.py",
    "test_ui_auth.py", "test_drills_kills.py", "test_drill_refused_rows.py", "test_truth_follows_writes.py",
    "test_reverse_sync_e2e.py", "test_ingestion_faults.py", "test_ingestion_e2e.py", "test_drills_world.py",
    "test_reverse_sync_faults.py", "test_recon_truth.py", "test_sandbox_cli.py", "test_recon_e2e.py",
    "test_sync_latency.py", "test_recon_completeness.py", "test_add_a_system.py", "test_canonical_world.py", "test_canonical_e2e.py",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@dataclass
class Sandbox:
    """A running sandbox: where it lives, where its systems answer, and its admin knobs."""

    home: Path
    port_base: int

    @property
    def truth(self) -> dict:
        """The truth now, as `hub sandbox truth --json` prints it: after the ticks and the hub's writes."""
        return read_truth(self.home)

    def url(self, system: str) -> str:
        return f"https://127.0.0.1:{self.port_base + SANDBOX_PORT_OFFSETS[system]}"

    @property
    def ca_bundle(self) -> str:
        """The CA bundle that verifies this sandbox's certificates (`hub sandbox status --json`'s `ca_bundle`)."""
        return str(tls.files(self.home).bundle)

    def env(self) -> dict[str, str]:
        """The variables that point the hub at this sandbox and make it trust the sandbox's CA."""
        return {
            "HUB_HOME": str(self.home),
            "HUB_SANDBOX_PORT_BASE": str(self.port_base),
            "HUB_CA_BUNDLE": self.ca_bundle,
        }

    def set_fault(self, system: str, profile: str, **params) -> dict:
        answer = httpx.post(f"{self.url(system)}/_admin/faults", json={"profile": profile, **params})
        answer.raise_for_status()
        return answer.json()["faults"]

    def clear_faults(self, system: str | None = None) -> None:
        for name in [system] if system else SANDBOX_PORT_OFFSETS:
            httpx.delete(f"{self.url(name)}/_admin/faults").raise_for_status()

    def stats(self, system: str) -> dict:
        return httpx.get(f"{self.url(system)}/_admin/stats").json()

    def reset_stats(self, system: str | None = None) -> None:
        for name in [system] if system else SANDBOX_PORT_OFFSETS:
            httpx.delete(f"{self.url(name)}/_admin/stats").raise_for_status()

    def tick(self, fraction: float = 0.01) -> dict:
        from hub_sandbox.tick import run_tick

        return run_tick(self.home, fraction)


def free_port_base() -> int:
    """A base whose system ports (base+1 … base+6) are free right now.

    Below Linux's ephemeral range (32768 and up), where every outgoing connection of the suite
    (HTTP clients, Postgres) takes a port and could take a sandbox's between this check and its bind.
    """
    for _ in range(200):
        base = random.randrange(10000, 32700, 10)
        try:
            for off in SANDBOX_PORT_OFFSETS.values():
                runner.bind(base + off).close()
        except runner.SandboxError:
            continue
        return base
    raise RuntimeError("no free block of ports found for the sandbox")


def copy_home(template: Path, home: Path) -> None:
    """A copy of a seeded home (SQLite stores through the backup API, so they are consistent)."""
    (home / "sandbox").mkdir(parents=True)
    for path in (template / "sandbox").iterdir():
        if path.suffix == ".sqlite":
            with sqlite3.connect(path) as src, sqlite3.connect(home / "sandbox" / path.name) as dst:
                src.backup(dst)
        elif path.suffix == ".json":
            shutil.copy(path, home / "sandbox" / path.name)
        elif path.name == "tls":
            shutil.copytree(path, home / "sandbox" / "tls")
    shutil.copytree(template / "landing", home / "landing")


def start_copy(template: Path, home: Path, attempts: int = 3) -> Sandbox:
    copy_home(template, home)
    info = read_world_info(home)
    for attempt in range(attempts):  # another process may take a port between the check and the bind
        base = free_port_base()
        try:
            runner.start(home, base, info["scale"], info["seed"])
        except runner.SandboxError as exc:
            if "already in use" not in str(exc) or attempt == attempts - 1:
                raise
            continue
        return Sandbox(home, base)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def sandbox_world(tmp_path_factory) -> World:
    """The generated world (Arrow tables per system + truth) the sandboxes serve."""
    cache = tmp_path_factory.mktemp("tpch")
    return build_world(SCALE, SEED, cache)


@pytest.fixture(scope="session")
def sandbox_template(tmp_path_factory, sandbox_world) -> Path:
    """A seeded, never-served home that every sandbox copies; its CA verifies every copy."""
    home = tmp_path_factory.mktemp("sandbox_template")
    write_world(home, sandbox_world)
    # Session-wide: the tests' own httpx (SSL_CERT_FILE) and requests (REQUESTS_CA_BUNDLE) calls,
    # and the hub in this process (HUB_CA_BUNDLE), trust it.
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HUB_CA_BUNDLE"):
        os.environ[name] = str(tls.files(home).bundle)
    return home


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory, sandbox_template) -> Sandbox:
    """The session's pristine sandbox, exported as HUB_HOME / HUB_SANDBOX_PORT_BASE. Do not mutate it."""
    box = start_copy(sandbox_template, tmp_path_factory.mktemp("hub_home"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in box.env().items():
            mp.setenv(key, value)
        yield box
    runner.stop(box.home)


@pytest.fixture
def make_sandbox(tmp_path_factory, sandbox_template, monkeypatch):
    """A factory of private running sandboxes for tests that tick or write; all stopped afterwards.

    `make_sandbox(export=True)` also points HUB_HOME / HUB_SANDBOX_PORT_BASE at it for the test.
    """
    started: list[Sandbox] = []

    def make(export: bool = False) -> Sandbox:
        box = start_copy(sandbox_template, tmp_path_factory.mktemp("hub_home"))
        started.append(box)
        if export:
            for key, value in box.env().items():
                monkeypatch.setenv(key, value)
        return box

    yield make
    for box in started:
        runner.stop(box.home)


def postgres_reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test Postgres; skips (outside CI=true) when it is not reachable."""
    if not postgres_reachable(POSTGRES_URL):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Postgres is unreachable at {POSTGRES_URL.split('@')[-1]}")
        pytest.skip(f"Postgres is not reachable at {POSTGRES_URL.split('@')[-1]}")
    return POSTGRES_URL


@pytest.fixture
def pg_warehouse(postgres_url):
    """A fresh Postgres database as the warehouse, dropped afterwards (parallel tests never share tables)."""
    import uuid

    import psycopg

    from integration_hub.warehouse import Warehouse

    name = f"hub_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield Warehouse(url=postgres_url.rsplit("/", 1)[0] + f"/{name}")
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def canonical_world(tmp_path_factory, sandbox_world):
    """(warehouse, run result): the world's raw tables with every transform materialized once."""
    from tests.raw_world import load_raw_world, materialize_transforms

    warehouse = Warehouse(path=str(tmp_path_factory.mktemp("canonical") / "warehouse.duckdb"))
    load_raw_world(warehouse, sandbox_world)
    return warehouse, materialize_transforms(warehouse)
