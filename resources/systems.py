"""How the hub reaches each connected system: one client resource per system, from its descriptor.

Where a system is comes from its `HUB_<SYSTEM>_URL` (a `dg.EnvVar`, resolved when a run starts,
never shown in the UI), else its sandbox stand-in; its credentials are read from the
variables its descriptor names (`integration_hub.systems`) when the client is used, so they
never reach run config either. The Launchpad can point one run elsewhere through `url`.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from integration_hub import settings, systems


class SystemClient(dg.ConfigurableResource):
    """A connected system: its location (URL, database URL or landing folder) and credentials."""

    system: str
    url: str | None = Field(
        default=None,
        description="Where the system is; unset means HUB_<SYSTEM>_URL, else its sandbox stand-in.",
    )

    def source_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the system's `source(...)` (and writers) that say where and who we are."""
        return systems.get(self.system).client_kwargs(self.url)


def client(system: str) -> SystemClient:
    """The client resource of `system`, its location an EnvVar when the variable is set."""
    var = systems.get(system).url_var
    return SystemClient(system=system, url=dg.EnvVar(var) if settings.env(var) else None)


def resource_key(system: str) -> str:
    return f"{system}_client"
