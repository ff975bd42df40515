"""Run every sandbox REST system in one detached background process.

`start` seeds the world if needed (its local CA included, `tls.py`), spawns `python -m hub_sandbox.runner`
(its own session, so it outlives the shell or test that started it), and returns once
every `/_admin/health` answers. The process serves one uvicorn server per port on one
asyncio loop, over HTTPS unless started with `http=True` (`hub sandbox up --http`, for
debugging with tools that cannot take a CA); `stop` sends it SIGTERM and waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn

from hub_sandbox import PORT_OFFSETS, billing, crm, erp, marketing, shop, support, tls
from hub_sandbox import seed as seeding

APPS = {"crm": crm.build_app, "shop": shop.build_app, "billing": billing.build_app,
        "support": support.build_app, "marketing": marketing.build_app, "erp": erp.build_app}  # fmt: skip
START_TIMEOUT = 120.0  # generous: the CI box is often loaded
ORPHAN_GRACE = 10.0
PORT_HINT = (
    "stop what holds it or choose other ports with HUB_SANDBOX_PORT_BASE (the systems use base+1 … base+6)"
)


class SandboxError(RuntimeError):
    """A sandbox problem the user can fix; the message says how."""


def pid_file(home: Path) -> Path:
    return home / "sandbox" / "sandbox.pid"


def log_file(home: Path) -> Path:
    return home / "sandbox" / "sandbox.log"


def urls(port_base: int, scheme: str = "https") -> dict[str, str]:
    return {name: f"{scheme}://127.0.0.1:{port_base + off}" for name, off in PORT_OFFSETS.items()}


def bind(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:`port`, or a SandboxError naming the port."""
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on connections of a socket whose
    # protocol says TCP, and without it a response waits for the client's delayed ACK (Nagle's
    # algorithm holds the body until the headers are acknowledged).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise SandboxError(
            f"port {port} on 127.0.0.1 is already in use ({exc.strerror}); {PORT_HINT}"
        ) from None
    return sock


def check_ports(port_base: int) -> None:
    for off in PORT_OFFSETS.values():
        bind(port_base + off).close()


def running_pid(home: Path) -> int | None:
    """The pid of this home's sandbox process if it is alive (a stale pid file is removed)."""
    path = pid_file(home)
    if not path.exists():
        return None
    pid = int(path.read_text().split()[0])
    if not _alive(pid):
        path.unlink(missing_ok=True)
        return None
    # Alive but no runner: a recycled pid, or our child between fork and exec (keep the file).
    return pid if _is_runner(pid) else None


def _is_runner(pid: int) -> bool:
    """Guards against a recycled pid: never signal a process that is not a sandbox runner."""
    try:
        return b"hub_sandbox.runner" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (not Linux): trust the pid file


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that exited: reap it
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start(
    home: Path,
    port_base: int,
    scale: float,
    seed: int,
    erp_url: str | None = None,
    progress=None,
    http: bool = False,
) -> dict:
    """Seed (if the stores do not already hold this world) and start the servers; returns `status`.

    HTTPS with the home's CA, or plain HTTP with `http` (only ever asked for explicitly)."""
    home = home.resolve()
    scheme = "http" if http else "https"
    if running_pid(home):
        info = seeding.read_world_info(home) or {}
        ports = info.get("ports") or {}
        if (info.get("scale"), info.get("seed"), info.get("erp_url"), ports.get("base"), ports.get("scheme")) == (
            scale, seed, erp_url, port_base, scheme):  # fmt: skip
            return status(home)
        raise SandboxError(
            f"a sandbox with other settings is running for {home}; run `hub sandbox down` first"
        )
    check_ports(port_base)
    if not seeding.is_seeded(home, scale, seed, erp_url):
        seeding.seed(home, scale, seed, erp_url, progress)
        check_ports(port_base)  # seeding takes a while: someone may have taken a port meanwhile
    elif progress:
        progress("the stores already hold this world: not re-seeding")
    tls.ensure(home)
    if progress:
        progress(f"starting the servers ({scheme})")
    proc = _spawn(home, port_base, scheme)
    return _wait_until_healthy(proc, home)


def _spawn(home: Path, port_base: int, scheme: str) -> subprocess.Popen:
    """The detached runner process, its pid file and its ports (and scheme) in `world.json`."""
    log = log_file(home).open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub_sandbox.runner", str(home), str(port_base), scheme],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    log.close()
    pid_file(home).write_text(f"{proc.pid}\n")
    info = seeding.read_world_info(home)
    info["ports"] = {
        "base": port_base,
        "scheme": scheme,
        **{k: port_base + v for k, v in PORT_OFFSETS.items()},
    }
    seeding.write_world_info(home, info)
    return proc


def _wait_until_healthy(proc: subprocess.Popen, home: Path) -> dict:
    """`status` once every system of `proc` answers.

    A SandboxError when the process exits, does not answer in time, or another process
    answers on one of its ports.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pid_file(home).unlink(missing_ok=True)
            tail = log_file(home).read_text(errors="replace")[-2000:]
            raise SandboxError(
                f"the sandbox process exited with code {proc.returncode}; its log ends:\n{tail}"
            )
        current = status(home)
        if all(s["status"] == "ok" for s in current["systems"].values()):
            strangers = [s["url"] for s in current["systems"].values() if s["pid"] != proc.pid]
            if strangers:
                _abandon(proc, home)
                raise SandboxError(f"another process answers at {', '.join(strangers)}; {PORT_HINT}")
            return current
        if time.monotonic() > deadline:
            _abandon(proc, home)
            raise SandboxError(
                f"the sandbox did not answer within {START_TIMEOUT:.0f} s; see {log_file(home)}"
            )
        time.sleep(0.2)


def _abandon(proc: subprocess.Popen, home: Path) -> None:
    """Stop a runner that never became healthy, by its own handle (not via the pid file)."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    pid_file(home).unlink(missing_ok=True)


def stop(home: Path, timeout: float = 15.0) -> bool:
    """Stop this home's sandbox process; False when none was running."""
    pid = running_pid(home.resolve())
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    pid_file(home.resolve()).unlink(missing_ok=True)
    return True


def status(home: Path) -> dict:
    """Whether the process runs, each system's URL, health and record counts, and `ca_bundle`:
    the CA bundle that verifies the systems' certificates (give it to the hub as `HUB_CA_BUNDLE`)."""
    home = home.resolve()
    info = seeding.read_world_info(home) or {}
    ports = info.get("ports") or {}
    base, scheme = ports.get("base"), ports.get("scheme", "https")
    bundle = tls.files(home).bundle
    pid = running_pid(home)
    systems = {}
    for name, url in (urls(base, scheme) if base else {}).items():
        try:
            health = (
                httpx.get(f"{url}/_admin/health", timeout=2.0, verify=str(bundle)).json() if pid else None
            )
        except httpx.HTTPError:
            health = None
        systems[name] = {"url": url, "status": health["status"] if health else "down",
                         "records": health["records"] if health else None,
                         "pid": health.get("pid") if health else None}  # fmt: skip
    return {
        "running": pid is not None,
        "pid": pid,
        "home": str(home),
        "world": info,
        "ca_bundle": str(bundle) if bundle.is_file() else None,
        "systems": systems,
    }


async def serve(home: Path, port_base: int, scheme: str = "https") -> None:
    """Serve every system until SIGTERM/SIGINT."""
    servers = []
    certificate = tls.files(home) if scheme == "https" else None
    for name, build in APPS.items():
        sock = bind(port_base + PORT_OFFSETS[name])
        config = uvicorn.Config(
            build(home),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=certificate and str(certificate.cert),
            ssl_keyfile=certificate and str(certificate.key),
        )
        servers.append((_QuietServer(config), sock))

    def shut_down() -> None:
        for server, _ in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shut_down)
    watchdog = asyncio.create_task(_exit_when_orphaned(home, shut_down))
    await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))
    watchdog.cancel()


async def _exit_when_orphaned(home: Path, shut_down) -> None:
    """Shut down once our pid file is gone or names another process (the home was deleted, as
    pytest does with old tmp folders, or a test died before its teardown): no leaked servers."""
    await asyncio.sleep(ORPHAN_GRACE)  # `start` writes the pid file just after spawning us
    while True:
        try:
            owner = pid_file(home).read_text().split()[0]
        except (OSError, IndexError):
            owner = None
        if owner != str(os.getpid()):
            shut_down()
            return
        await asyncio.sleep(2)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve` (several share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


if __name__ == "__main__":
    try:
        asyncio.run(serve(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "https"))
    except SandboxError as exc:
        sys.exit(f"sandbox: {exc}")
