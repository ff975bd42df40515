"""The Dagster UI behind its login, over real HTTP: `hub ui serve` starts the real webserver on
127.0.0.1 and Debian's nginx in front; without the login nothing passes, with it the UI and its
GraphQL (HTTP and websocket) answer."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from integration_hub.cli import ui_proxy

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "ops", f"pw {os.getpid()}: long enough"
pytestmark = pytest.mark.timeout(300)


def _needs_nginx() -> None:
    try:
        ui_proxy.nginx_binary()
    except ui_proxy.ProxyError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(proxy URL, webserver port, HUB_HOME, the `hub ui serve` process) for the module's tests."""
    _needs_nginx()
    home = tmp_path_factory.mktemp("ui_home")
    proxy_port, webserver_port = _free_port(), _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DAGSTER_"))},
           "HUB_HOME": str(home), "HUB_UI_USER": USER, "HUB_UI_PASSWORD": PASSWORD,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from integration_hub.cli import main; main()", "ui", "serve", "--no-daemon",
         "--port", str(proxy_port), "--webserver-port", str(webserver_port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{proxy_port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"hub ui serve exited: {(home / 'serve.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/server_info", auth=(USER, PASSWORD), timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, (
            f"the UI never answered: {(home / 'serve.log').read_text()[-3000:]}"
        )
        time.sleep(1)
    try:
        yield url, webserver_port, home, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        log.close()


def _upgrade(url: str, auth: tuple[str, str] | None) -> str:
    """The status line nginx answers a GraphQL websocket handshake with."""
    host, port = url.removeprefix("http://").split(":")
    key = base64.b64encode(os.urandom(16)).decode()
    headers = ["GET /graphql HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
               f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: graphql-ws"]  # fmt: skip
    if auth:
        headers.append("Authorization: Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        return s.recv(4096).decode(errors="replace").splitlines()[0]


def test_without_the_login_nothing_passes(served):
    url, *_ = served
    for auth in (None, (USER, "wrong"), ("intruder", PASSWORD), (USER, PASSWORD.upper())):
        for method, path in (("GET", "/"), ("GET", "/server_info"), ("POST", "/graphql")):
            answer = httpx.request(method, url + path, auth=auth, json={"query": "{ version }"}, timeout=10)
            assert answer.status_code == 401, (auth and auth[0], method, path)
            assert answer.headers["www-authenticate"] == f'Basic realm="{ui_proxy.REALM}"'
            assert "dagster" not in answer.text.lower()
    assert _upgrade(url, None).startswith("HTTP/1.1 401")


def test_with_the_login_the_ui_and_its_graphql_answer(served):
    url, *_ = served
    page = httpx.get(url + "/", auth=(USER, PASSWORD), timeout=30)
    assert page.status_code == 200 and "<!DOCTYPE html>" in page.text and "Dagster" in page.text
    answer = httpx.post(url + "/graphql", auth=(USER, PASSWORD), json={"query": "{ version }"}, timeout=30)
    assert answer.status_code == 200 and answer.json() == {"data": {"version": "1.13.27"}}
    assert _upgrade(url, (USER, PASSWORD)) == "HTTP/1.1 101 Switching Protocols"


def test_the_secret_is_kept_and_the_webserver_binds_localhost_only(served):
    url, webserver_port, home, _ = served
    proxy_home = home / "ui-proxy"
    htpasswd = (proxy_home / "htpasswd").read_text()
    assert htpasswd.startswith(f"{USER}:$6$") and PASSWORD not in htpasswd
    assert oct((proxy_home / "htpasswd").stat().st_mode & 0o777) == "0o600"
    for path in proxy_home.glob("*"):  # config, logs, pid: the password is nowhere in clear
        if path.is_file():
            assert PASSWORD not in path.read_text(errors="replace"), path.name
    assert PASSWORD not in (home / "serve.log").read_text()
    listening = _listeners(webserver_port)
    assert listening == {"127.0.0.1"}, listening


def test_stopping_the_command_stops_the_webserver_and_the_proxy(served):
    url, webserver_port, _, proc = served
    proxy_port = int(url.rsplit(":", 1)[1])
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert not _listening(proxy_port) and not _listening(webserver_port)


def _listeners(port: int) -> set[str]:
    """The IPv4/IPv6 addresses a TCP socket listens on at `port` (from /proc/net/tcp*)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(_address(address) if width == 8 else "ipv6:" + address)
    return found


def _address(hex_ipv4: str) -> str:
    return ".".join(str(b) for b in reversed(bytes.fromhex(hex_ipv4)))


def test_no_login_configured_means_no_proxy(tmp_path, monkeypatch):
    """Without HUB_UI_USER / HUB_UI_PASSWORD the command refuses to start an open proxy."""
    from typer.testing import CliRunner

    from integration_hub.cli import app

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.delenv("HUB_UI_USER", raising=False)
    monkeypatch.setenv("HUB_UI_PASSWORD", PASSWORD)
    result = CliRunner().invoke(app, ["ui", "proxy"])
    assert result.exit_code == 2
    assert "HUB_UI_USER not set" in result.output and PASSWORD not in result.output
    assert not (tmp_path / "ui-proxy" / "nginx.conf").exists()
