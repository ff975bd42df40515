"""Where the hub keeps its state, and the environment it reads: the one module that reads it.

Everything is read at call time (not import time), so a test can point `HUB_HOME` at a
temporary folder before it builds anything. Which variables a system needs (its URL and
credentials) is declared with the system (`integration_hub.systems`); this module reads them.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_PORT_BASE = 8760  # the sandbox stand-ins answer on 127.0.0.1 at this base + their offset
LOOPBACK = ("127.0.0.1", "localhost", "::1")
UI_URL_DEFAULT = "http://127.0.0.1:3000"  # where `make dev` serves the Dagster UI


class ConfigError(ValueError):
    """The environment says something the hub cannot use; the message names the variable and the fix."""


def env(name: str, default: str | None = None) -> str | None:
    """An environment variable, `default` when it is unset or empty."""
    return os.environ.get(name) or default


def hub_home() -> Path:
    return Path(env("HUB_HOME", "./.hub")).resolve()


def sandbox_dir() -> Path:
    return hub_home() / "sandbox"


def landing_dir(feed: str = "payments") -> Path:
    return hub_home() / "landing" / feed


def dagster_home() -> Path:
    return Path(env("DAGSTER_HOME") or hub_home() / "dagster").resolve()


def warehouse_url() -> str | None:
    """`None` means the embedded DuckDB at `$HUB_HOME/warehouse.duckdb`; anything else must be a
    Postgres URL (a typo must not silently run against the local DuckDB)."""
    url = env("HUB_WAREHOUSE_URL")
    if url is None:
        return None
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if url != url.strip() or scheme not in (
        "postgresql",
        "postgres",
        "postgresql+psycopg",
        "postgresql+psycopg2",
    ):
        shown = url.strip().split("://", 1)[0] + "://…" if "://" in url else url.strip()[:20]
        raise ConfigError(
            f"HUB_WAREHOUSE_URL must be a postgresql:// URL without surrounding spaces (got {shown!r}); "
            "unset it to use the embedded DuckDB warehouse"
        )
    return url


def secret(name: str, sandbox_default: str | None = None) -> str:
    """A credential from the environment, else `sandbox_default` (the caller passes one only for
    a system that is the local sandbox). Never log the value."""
    value = env(name, sandbox_default)
    if value is None:
        raise ConfigError(f"{name} is not set: set it to the credential of the system it names")
    return value


def ca_bundle() -> str | None:
    """The CA bundle (PEM) the hub verifies HTTPS certificates against; None = the system's store.

    `HUB_CA_BUNDLE`; else, in a home that has a sandbox, its bundle (`$HUB_HOME/sandbox/tls/
    ca-bundle.pem`: the public CAs plus the local one the world was generated with, so real
    vendors still verify); else the standard `REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE`.
    Verification is never off.
    """
    if (value := env("HUB_CA_BUNDLE")) is not None:
        return _bundle_file("HUB_CA_BUNDLE", value)
    sandbox_bundle = sandbox_dir() / "tls" / "ca-bundle.pem"
    if sandbox_bundle.is_file():
        return str(sandbox_bundle)
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if (value := env(name)) is not None:
            return _bundle_file(name, value)
    return None


def _bundle_file(name: str, value: str) -> str:
    if not Path(value).is_file():
        raise ConfigError(
            f"{name} names {value!r}, which is not a file: point it at a PEM bundle of CA "
            "certificates (the sandbox's is `ca_bundle` in `hub sandbox status --json`) or unset it"
        )
    return value


def sandbox_scheme() -> str:
    """`https` (the sandbox's default, as every vendor), or `http` for `hub sandbox up --http`."""
    scheme = env("HUB_SANDBOX_SCHEME", "https")
    if scheme not in ("https", "http"):
        raise ConfigError(f"HUB_SANDBOX_SCHEME must be https or http (got {scheme!r:.20})")
    return scheme


def is_loopback(url: str) -> bool:
    """Whether a URL points at this machine, where the sandbox stand-ins (and only they) answer."""
    return urlsplit(url).hostname in LOOPBACK


def port_base() -> int:
    return int(env("HUB_SANDBOX_PORT_BASE", str(DEFAULT_PORT_BASE)))


def partition_start() -> str:
    """First day (UTC, `YYYY-MM-DD`) of the daily partitions of incremental sources."""
    return env("HUB_PARTITION_START", "2026-10-01")


def wait_report_seconds() -> float:
    """How often a run waiting for a pool slot says so in its log (`HUB_WAIT_REPORT_SECONDS`)."""
    return float(env("HUB_WAIT_REPORT_SECONDS", "30"))


def landing_settle_seconds() -> float:
    """How long a dropped file must have been left unchanged before a load takes it
    (`HUB_LANDING_SETTLE_SECONDS`): a younger one may still be being written and waits."""
    value = env("HUB_LANDING_SETTLE_SECONDS", "2")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigError(
            f"HUB_LANDING_SETTLE_SECONDS must be a number of seconds, 0 or more (got {value!r:.20})"
        )
    return seconds


def warehouse_lock_wait() -> float:
    """Seconds a process waits for the DuckDB file lock before it fails clearly."""
    return float(env("HUB_WAREHOUSE_LOCK_WAIT", "120"))


def dagster_storage_url() -> str | None:
    """The scale-out instance's Postgres URL (`HUB_DAGSTER_STORAGE_URL`); None means embedded."""
    return env("HUB_DAGSTER_STORAGE_URL")


def warehouse_pool_limit() -> int:
    """Concurrent writers of a Postgres warehouse in the scale-out profile."""
    return int(env("HUB_WAREHOUSE_POOL_LIMIT", "4"))


def celery_queue() -> str:
    return env("HUB_CELERY_QUEUE", "dagster")


def git_url() -> str | None:
    """The repository's web URL, to link asset pages to their code (`HUB_GIT_URL`)."""
    return env("HUB_GIT_URL")


def git_branch() -> str:
    return env("HUB_GIT_BRANCH", "main")


def landscape_path() -> Path:
    """The integration landscape inventory (`HUB_LANDSCAPE`; default `landscape.yaml` in the repository)."""
    default = Path(__file__).resolve().parents[1] / "landscape.yaml"
    return Path(env("HUB_LANDSCAPE", str(default)))


def load_max_retries() -> int:
    return int(env("HUB_LOAD_MAX_RETRIES", "3"))


def load_retry_delay() -> float:
    return float(env("HUB_LOAD_RETRY_DELAY", "30"))


def contract_max_reject_share() -> float:
    """Share of a load's rows the contract may refuse before its check is an ERROR."""
    return float(env("HUB_CONTRACT_MAX_REJECT_SHARE", "0.1"))


def direct_arrow_load() -> bool:
    return env("HUB_DIRECT_ARROW_LOAD", "1") != "0"


def ui_url() -> str:
    """The Dagster UI's base URL, for every link the hub builds (alerts, asset metadata, the CLI)."""
    return (env("HUB_UI_URL", UI_URL_DEFAULT) or UI_URL_DEFAULT).rstrip("/")


def ui_link(path: str) -> str:
    """A page of the Dagster UI, e.g. `assets/recon/report`."""
    return f"{ui_url()}/{path.lstrip('/')}"


def reports_dir() -> Path:
    """Where the reconciliation report is written: `$HUB_HOME/reports`."""
    return hub_home() / "reports"


def progress_seconds() -> float:
    """Long work (a push, a large load, a backfill waited for) reports progress at most this often."""
    return float(env("HUB_PROGRESS_SECONDS", "10"))


def alert_webhook_url() -> str | None:
    return env("HUB_ALERT_WEBHOOK_URL")


ACCESS_KINDS = ("writer", "analyst", "auditor")


def access_role(kind: str) -> tuple[str, str | None]:
    """(name, password) of the warehouse role of `kind` (`writer`, `analyst`, `auditor`):
    `HUB_ACCESS_<KIND>_ROLE` (default `hub_<kind>`) and `HUB_ACCESS_<KIND>_PASSWORD` (unset: the
    role's password is left as it is). Never log the password."""
    upper = kind.upper()
    return env(f"HUB_ACCESS_{upper}_ROLE", f"hub_{kind}"), env(f"HUB_ACCESS_{upper}_PASSWORD")


def access_admin_url() -> str | None:
    """The Postgres URL `hub access` connects with to create roles and set grants
    (`HUB_ACCESS_ADMIN_URL`: a role that may create roles and owns the warehouse's tables);
    unset: `HUB_WAREHOUSE_URL`."""
    return env("HUB_ACCESS_ADMIN_URL") or warehouse_url()


def ui_credentials() -> tuple[str, str]:
    """The login the UI proxy asks for (`HUB_UI_USER`, `HUB_UI_PASSWORD`); both required."""
    user, password = env("HUB_UI_USER"), env("HUB_UI_PASSWORD")
    if not user or not password:
        missing = " and ".join(n for n, v in (("HUB_UI_USER", user), ("HUB_UI_PASSWORD", password)) if not v)
        raise ConfigError(f"{missing} not set: set the login the UI proxy will ask for")
    if ":" in user:
        raise ConfigError(
            "HUB_UI_USER must not contain ':' (it separates user and hash in the htpasswd file)"
        )
    return user, password


def ui_proxy_listen() -> tuple[str, int]:
    """Where the UI proxy listens: `HUB_UI_PROXY_HOST` (default 127.0.0.1), `HUB_UI_PROXY_PORT` (3080)."""
    return env("HUB_UI_PROXY_HOST", "127.0.0.1"), int(env("HUB_UI_PROXY_PORT", "3080"))
