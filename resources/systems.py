"""How the hub reaches each connected system: one client config resource per system.

URLs and credentials come from the environment (`dg.EnvVar`, resolved when a run starts,
never shown in the UI), falling back to the sandbox's documented defaults
(`integration_hub.settings`). A system whose adapter has no class here is reached at
`HUB_<SYSTEM>_URL` by `SystemClient`, its secrets resolved by dlt (`SOURCES__<SYSTEM>__…`).
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field

from integration_hub import settings


class SystemClient(dg.ConfigurableResource):
    """A REST system at a base URL (`HUB_<SYSTEM>_URL`, else the local sandbox port)."""

    system: str
    url: str | None = Field(default=None, description="Base URL; unset means settings.system_url(system).")

    @property
    def base_url(self) -> str:
        return (self.url or settings.system_url(self.system)).rstrip("/")

    def source_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the adapter's `source(...)` that say where and who we are."""
        return {"base_url": self.base_url}


class CrmClient(SystemClient):
    """The CRM: OAuth2 client credentials (`HUB_CRM_CLIENT_ID` / `HUB_CRM_CLIENT_SECRET`)."""

    system: str = "crm"
    client_id: str | None = None
    client_secret: str | None = None

    def source_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "client_id": self.client_id or settings.secret("HUB_CRM_CLIENT_ID"),
            "client_secret": self.client_secret or settings.secret("HUB_CRM_CLIENT_SECRET"),
        }


class ShopClient(SystemClient):
    """The web shop: API key (`HUB_SHOP_API_KEY`)."""

    system: str = "shop"
    api_key: str | None = None

    def source_kwargs(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "api_key": self.api_key or settings.secret("HUB_SHOP_API_KEY")}


class BillingClient(SystemClient):
    """Billing: bearer API key (`HUB_BILLING_API_KEY`)."""

    system: str = "billing"
    api_key: str | None = None

    def source_kwargs(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "api_key": self.api_key or settings.secret("HUB_BILLING_API_KEY")}


class ErpDatabase(dg.ConfigurableResource):
    """The ERP database: `HUB_ERP_URL`, else what `hub sandbox up --erp-url` recorded, else SQLite."""

    url: str | None = None

    def source_kwargs(self) -> dict[str, Any]:
        return {"url": self.url or settings.erp_url()}


class LandingFolder(dg.ConfigurableResource):
    """A folder files are dropped into (`$HUB_HOME/landing/<feed>` unless set)."""

    feed: str
    path: str | None = None

    @property
    def folder(self) -> str:
        return self.path or str(settings.landing_dir(self.feed))

    def source_kwargs(self) -> dict[str, Any]:
        return {"folder": self.folder}


def _env(name: str) -> dg.EnvVar | None:
    """An EnvVar when the variable is set (resolved at run time, never displayed), else None."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def client(system: str) -> dg.ConfigurableResource:
    """The client config resource of `system`, configured from the environment."""
    url = _env(f"HUB_{system.upper()}_URL")
    if system == "crm":
        return CrmClient(
            url=url, client_id=_env("HUB_CRM_CLIENT_ID"), client_secret=_env("HUB_CRM_CLIENT_SECRET")
        )
    if system == "shop":
        return ShopClient(url=url, api_key=_env("HUB_SHOP_API_KEY"))
    if system == "billing":
        return BillingClient(url=url, api_key=_env("HUB_BILLING_API_KEY"))
    if system == "erp":
        return ErpDatabase(url=_env("HUB_ERP_URL"))
    if system == "payments":
        return LandingFolder(feed="payments")
    return SystemClient(system=system, url=url)


def resource_key(system: str) -> str:
    return f"{system}_client"
