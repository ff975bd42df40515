"""`hub ui serve` (the Dagster UI on 127.0.0.1 behind a login, one command) and `hub ui proxy`
(the login alone, in front of a webserver you run yourself). docs/security.md says what it protects."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from integration_hub.cli import ui_proxy

ui_app = typer.Typer(no_args_is_help=True, help="The Dagster UI behind a login (nginx, HTTP basic auth).")

PORT = typer.Option(None, "--port", help="Port the proxy listens on (default HUB_UI_PROXY_PORT, 3080).")
HOST = typer.Option(
    None, "--host", help="Address the proxy listens on (default HUB_UI_PROXY_HOST, 127.0.0.1)."
)


def _prepared(upstream: str, port: int | None, host: str | None) -> ui_proxy.Proxy:
    from integration_hub.settings import ConfigError

    try:
        proxy = ui_proxy.proxy_from_env(upstream, port, host)
        ui_proxy.write_config(proxy)
        ui_proxy.nginx_binary()
    except (ui_proxy.ProxyError, ConfigError) as exc:
        typer.echo(f"hub ui: {exc}", err=True)
        raise typer.Exit(2) from None
    return proxy


@ui_app.command("proxy")
def proxy(
    upstream: str = typer.Option("127.0.0.1:3000", "--upstream", help="host:port of the Dagster webserver."),
    port: int = PORT,
    host: str = HOST,
) -> None:
    """Run nginx in the foreground in front of a running webserver; Ctrl-C stops it."""
    p = _prepared(upstream, port, host)
    typer.echo(f"Dagster UI behind a login at {p.url} (proxying {upstream}); config in {p.home}")
    sys.stdout.flush()
    cmd = ui_proxy.command(p)
    os.execv(cmd[0], cmd)


@ui_app.command("serve")
def serve(
    port: int = PORT,
    host: str = HOST,
    webserver_port: int = typer.Option(3000, "--webserver-port", help="Port of the webserver on 127.0.0.1."),
    daemon: bool = typer.Option(
        True,
        "--daemon/--no-daemon",
        help="Run the daemon too (`dagster dev`: schedules, sensors, backfills).",
    ),
) -> None:
    """Start the webserver on 127.0.0.1 (with the daemon, as `make dev`) and nginx in front of it;
    Ctrl-C (or SIGTERM) stops both, and either one stopping stops the other."""
    from integration_hub.definitions.instance import ensure_dagster_home

    p = _prepared(f"127.0.0.1:{webserver_port}", port, host)
    home = ensure_dagster_home()
    bin_dir = Path(sys.executable).parent
    where = ["-m", "integration_hub.definitions", "-h", "127.0.0.1", "-p", str(webserver_port)]
    webserver_cmd = (
        [str(bin_dir / "dagster"), "dev", *where] if daemon else [str(bin_dir / "dagster-webserver"), *where]
    )
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    children = [
        subprocess.Popen(webserver_cmd, env=env, start_new_session=True),
        subprocess.Popen(ui_proxy.command(p), start_new_session=True),
    ]
    typer.echo(
        f"Dagster UI behind a login at {p.url} (webserver on 127.0.0.1:{webserver_port}); Ctrl-C stops it"
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    code = 0
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        stopped = next(c for c in children if c.poll() is not None)
        typer.echo(
            f"hub ui: {Path(stopped.args[0]).name} stopped (exit {stopped.returncode}); stopping the rest",
            err=True,
        )
        code = 1
    except KeyboardInterrupt:
        pass
    finally:
        _stop(children)
    raise typer.Exit(code)


def _stop(children: list[subprocess.Popen]) -> None:
    """SIGINT to the webserver's process group (`dagster dev` stops its own children), SIGQUIT
    (graceful) to nginx; SIGKILL to what is still there after 30 s."""
    webserver, nginx = children
    for child, sig in ((webserver, signal.SIGINT), (nginx, signal.SIGQUIT)):
        if child.poll() is None:
            os.killpg(child.pid, sig)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
