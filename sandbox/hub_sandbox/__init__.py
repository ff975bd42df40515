"""The sandbox world: stand-in business systems for the demo, the tests and the benchmarks.

A package of its own (`sandbox/pyproject.toml`), installed by `make demo` and `make test`,
not by a production install: nothing in the hub imports it. The hub's pipeline reaches
these systems over their APIs exactly as it would reach the real ones; the sandbox reads
the hub's system registry for what it must answer as (each stand-in's port and the public
sandbox credentials), so those facts are declared once, with each system.
"""

from __future__ import annotations

from integration_hub import settings, systems

# Environment variable -> the sandbox's public default credential; system -> port offset.
CREDENTIALS: dict[str, str] = systems.sandbox_credentials()
PORT_OFFSETS: dict[str, int] = {
    name: s.sandbox_port for name, s in systems.registry().items() if s.sandbox_port is not None
}


def secret(var: str) -> str:
    """The credential a stand-in expects: the variable when set (as the hub reads it), else the default."""
    return settings.secret(var, CREDENTIALS[var])


def url(system: str, port_base: int | None = None) -> str:
    """Where a stand-in answers (`HUB_SANDBOX_SCHEME`: https unless the sandbox runs with `--http`)."""
    return f"{settings.sandbox_scheme()}://127.0.0.1:{(port_base or settings.port_base()) + PORT_OFFSETS[system]}"
