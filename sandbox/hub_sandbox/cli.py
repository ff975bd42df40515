"""`hub sandbox …`: start, stop, seed, tick and inspect the sandbox world, and switch its faults."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import httpx
import typer
from rich.console import Console
from rich.table import Table

from hub_sandbox import PORT_OFFSETS, tls, url
from integration_hub import settings

app = typer.Typer(no_args_is_help=True, help="The sandbox world of business systems.")
console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _check_scale(scale: float) -> None:
    if not scale > 0:
        raise _fail(f"--scale must be a positive TPC-H scale factor (got {scale:g}); e.g. --scale 0.01")


def _check_erp_url(erp_url: str | None) -> None:
    if erp_url and not erp_url.startswith(("postgresql://", "postgres://")):
        raise _fail(f"--erp-url must be a postgresql:// URL (got a {erp_url.split(':')[0]!r} URL)")


@contextmanager
def _steps():
    """A spinner that prints each finished step with its duration."""
    started = time.monotonic()
    with console.status("starting…") as spinner:
        last = [None, started]

        def step(message: str) -> None:
            if last[0]:
                console.print(f"  [green]✓[/green] {last[0]} ({time.monotonic() - last[1]:.1f} s)")
            last[:] = [message, time.monotonic()]
            spinner.update(message + "…")

        yield step
        if last[0]:
            console.print(f"  [green]✓[/green] {last[0]} ({time.monotonic() - last[1]:.1f} s)")
    console.print(f"done in {time.monotonic() - started:.1f} s")


def _print_status(current: dict) -> None:
    world = current["world"]
    console.print(
        f"sandbox {'[green]running[/green]' if current['running'] else '[yellow]stopped[/yellow]'}"
        f" (home {current['home']}, scale {world.get('scale', '?')}, seed {world.get('seed', '?')},"
        f" ticks {world.get('ticks', 0)})"
    )
    table = Table("system", "url", "status", "records")
    for name, s in current["systems"].items():
        records = ", ".join(f"{k} {v}" for k, v in (s["records"] or {}).items())
        table.add_row(name, s["url"], s["status"], records)
    console.print(table)
    console.print(f"erp: {world.get('erp_url') or settings.sandbox_dir() / 'erp.sqlite'}")
    if current.get("ca_bundle"):
        console.print(f"CA bundle (HTTPS): {current['ca_bundle']}")


@app.command()
def up(
    scale: float = typer.Option(0.01, help="TPC-H scale factor (1 = 150,000 customers, 1.5M orders)."),
    seed: int = typer.Option(42, help="Seed of the planted discrepancies."),
    erp_url: str = typer.Option(
        None, help="postgresql:// URL: put the ERP in schema `erp` there, not SQLite."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON (as `status --json`)."),
    http: bool = typer.Option(
        False,
        "--http",
        help="Serve plain HTTP instead of HTTPS (debugging only; then export HUB_SANDBOX_SCHEME=http for the hub).",
    ),
) -> None:
    """Generate the world (unless the stores already hold it) and start every system in the background.

    The systems serve HTTPS with a local CA created with the world; `hub sandbox status --json`
    prints its bundle as `ca_bundle`, which the hub finds by itself in this home."""
    from hub_sandbox.runner import SandboxError, start

    _check_scale(scale)
    _check_erp_url(erp_url)
    try:
        with _steps() as step:
            current = start(
                settings.hub_home(), settings.port_base(), scale, seed, erp_url, progress=step, http=http
            )
    except SandboxError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(current, indent=2))
    else:
        _print_status(current)


@app.command()
def down() -> None:
    """Stop the sandbox systems."""
    from hub_sandbox.runner import stop

    console.print("stopped" if stop(settings.hub_home()) else "the sandbox was not running")


@app.command("seed")
def seed_command(
    scale: float = typer.Option(0.01, help="TPC-H scale factor."),
    seed: int = typer.Option(42, help="Seed of the planted discrepancies."),
    erp_url: str = typer.Option(None, help="postgresql:// URL for the ERP (schema `erp`)."),
) -> None:
    """Regenerate every store now (even if it already holds this world); does not start servers."""
    from hub_sandbox.runner import running_pid
    from hub_sandbox.seed import seed as write_world

    _check_scale(scale)
    _check_erp_url(erp_url)
    if running_pid(settings.hub_home()):
        raise _fail("the sandbox is running; stop it with `hub sandbox down` before re-seeding")
    with _steps() as step:
        write_world(settings.hub_home(), scale, seed, erp_url, progress=step)


@app.command()
def tick(
    fraction: float = typer.Option(0.01, help="Share of the ERP's orders to add (and to update)."),
    as_json: bool = typer.Option(False, "--json", help="Print the new/changed/deleted counts as JSON."),
) -> None:
    """Let the business run on: new, fulfilled and deleted orders, changed customers, in every system."""
    from hub_sandbox.tick import TickError, run_tick

    if not 0 < fraction <= 1:
        raise _fail(f"--fraction must be in (0, 1] (got {fraction:g})")
    try:
        report = run_tick(settings.hub_home(), fraction)
    except TickError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table("system.resource", "new", "changed", "deleted")
    for name, c in report["records"].items():
        table.add_row(name, str(c["new"]), str(c["changed"]), str(c["deleted"]))
    console.print(f"tick {report['tick']} at {report['at']}")
    console.print(table)


@app.command()
def truth(as_json: bool = typer.Option(False, "--json", help="Print the whole truth as JSON.")) -> None:
    """The planted discrepancies, non-findings and expected counts of the world now (the hub's writes included)."""
    from hub_sandbox.truth import NoWorld, read_truth

    try:
        data = read_truth(settings.hub_home())
    except NoWorld as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    table = Table("planted kind", "count", "meaning")
    for kind, keys in data["discrepancies"].items():
        table.add_row(kind, str(len(keys)), data["kinds"][kind])
    for kind, keys in data["non_findings"].items():
        table.add_row(f"[dim]{kind} (not a finding)[/dim]", str(len(keys)), data["non_finding_kinds"][kind])
    console.print(f"seed {data['seed']}, scale {data['scale']}, anchor {data['anchor']}")
    console.print(table)
    writes = data["hub_writes"]
    if writes["created"]:
        console.print("created through the APIs since seeding: "
                      + ", ".join(f"{name} {n}" for name, n in writes["created"].items()))  # fmt: skip
    if writes["not_followed"]:
        console.print(f"[yellow]{len(writes['not_followed'])} created record(s) the truth cannot place "
                      "(see `hub_writes.not_followed` in --json): it does not describe them[/yellow]")  # fmt: skip
    if any(data["deleted"].values()):
        console.print("deleted at the sources by ticks (tombstones in raw): "
                      + ", ".join(f"{name} {len(keys)}" for name, keys in sorted(data["deleted"].items())))  # fmt: skip


@app.command()
def faults(
    system: str = typer.Argument(..., help="crm, shop, billing, support or marketing."),
    profile: str = typer.Argument(None, help="outage, rate_limit, slow, drop, malformed, schema_drift, …"),
    param: list[str] = typer.Option([], "--param", help="A profile parameter k=v (repeatable)."),
    clear: bool = typer.Option(False, "--clear", help="Clear PROFILE, or every fault when none is given."),
) -> None:
    """Switch a fault profile on a running system (or `--clear`); with no profile, show the active ones."""
    if system not in PORT_OFFSETS:
        raise _fail(f"unknown system {system!r}; choose one of {', '.join(PORT_OFFSETS)}")
    params = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"--param takes k=v (got {item!r})")
        params[key] = value
    endpoint = f"{url(system)}/_admin/faults"
    bundle = tls.files(settings.hub_home()).bundle
    try:
        with httpx.Client(timeout=5, verify=str(bundle) if bundle.is_file() else True) as http:
            if clear:
                answer = http.delete(endpoint, params={"profile": profile} if profile else None)
            elif profile:
                answer = http.post(endpoint, json={"profile": profile, **params})
            else:
                answer = http.get(endpoint)
    except httpx.HTTPError:
        raise _fail(
            f"{system} does not answer at {endpoint}; is the sandbox up (`hub sandbox status`)?"
        ) from None
    if answer.status_code >= 400:
        raise _fail(answer.json().get("message", answer.text))
    typer.echo(json.dumps(answer.json()["faults"], indent=2))


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Whether the sandbox runs, and each system's URL, health and record counts."""
    from hub_sandbox.runner import status as current_status

    current = current_status(settings.hub_home())
    if as_json:
        typer.echo(json.dumps(current, indent=2))
    else:
        _print_status(current)


def demo(
    scale: float = typer.Option(0.01, help="TPC-H scale factor of the sandbox world."),
    seed: int = typer.Option(42, help="Seed of the planted discrepancies."),
    keep_running: bool = typer.Option(False, help="Leave the sandbox systems running afterwards."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the run's summary as JSON (the rest to stderr)."
    ),
) -> None:
    """Start the sandbox, run the main job on the embedded warehouse, print what happened."""
    from hub_sandbox.demo import run_demo

    raise typer.Exit(run_demo(scale=scale, seed=seed, keep_running=keep_running, as_json=as_json))
