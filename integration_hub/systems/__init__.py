"""Connected systems: one module per system, holding everything the hub knows about it.

A module in this package is a system when it defines `SYSTEM`, a `System` descriptor: its
adapter (a plain dlt source: auth, paging, cursors, row contracts) and/or its destination
writers, where its client reaches it and with which credentials, how to count its records
at the source, how it tells that a record was deleted there, the keys of its raw tables, the
schedule that loads it, its rank in identity
survivorship and the keys `hub audit trace` follows. Every layer loops over `registry()`:
ingestion, completeness reconciliation, trace, automation, identity, the client resources
and the sandbox. Adding a system means dropping one module here (plus one SQL transformer
per entity it carries); nothing else is edited. Modules under `kit/` are shared helpers.

No Dagster here. An adapter knows its own system only and runs on its own
(`crm.source(base_url=…, client_id=…, client_secret=…)`); the descriptor beside it is the one
place that writes down what the hub knows about the system, including the canonical rows it
feeds (for completeness and trace), in plain data.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from integration_hub import settings

LOCATIONS = ("url", "database", "folder")
SCHEDULES = ("hourly", "nightly")


@dataclass(frozen=True)
class Credential:
    """A secret of the system's client: the environment variable that holds it, and the
    sandbox stand-in's public default (used only while the system is the sandbox's)."""

    var: str
    sandbox: str | None = None
    # The location schemes whose client needs it (empty: all). The ERP's database URL needs no
    # SuiteQL token: the credential is then "" instead of a configuration error.
    schemes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TraceKeys:
    """How `hub audit trace` finds a record's rows in this system's raw tables.

    - `raw`: (canonical key, resource, column): raw rows whose column holds that key
      (`("erp_order_id", "sales_orders", "order_id")`);
    - `ids`: (canonical table, column): what `<system>:<id>` names in canonical;
    - `customers`: (resource, column): the raw table of the system's customer records,
      keyed as `canonical.customer_xref.source_id`.
    """

    raw: tuple[tuple[str, str, str], ...] = ()
    ids: tuple[tuple[str, str], ...] = ()
    customers: tuple[str, str] | None = None


@dataclass(frozen=True)
class System:
    """One connected system, declared once (see the module docstring).

    `location` says what its client needs: `url` (an API at `HUB_<NAME>_URL`, else its
    sandbox stand-in), `database` (a SQLAlchemy-style URL) or `folder` (files dropped in
    `$HUB_HOME/landing/<name>`). `default_location` gives a `database` or `folder` system's
    location when its variable is unset.
    """

    name: str
    description: str
    location: str = "url"
    sandbox_port: int | None = None  # offset from HUB_SANDBOX_PORT_BASE of the sandbox stand-in
    default_location: Callable[[], str] | None = None
    credentials: Mapping[str, Credential] = field(default_factory=dict)  # client keyword -> credential
    # The adapter, when the hub reads the system: resource -> description, the dlt source,
    # read by updated-at window (daily partitions) or by dropped file.
    resources: Mapping[str, str] = field(default_factory=dict)
    source: Callable[..., Any] | None = None
    incremental: bool = True
    file_pattern: str | None = None  # a folder system's files, e.g. "*.csv"
    # A folder system's raw table where each load records every file it took: `file_name`,
    # `sha256` (of the content), `seen_at`. Its landing sensor reads it, so files loaded by any
    # run (the demo's, `hub run`'s) are not asked for again.
    files_table: str | None = None
    arrow_sink: bool = False  # the source yields Arrow chunks a DuckDB warehouse takes directly
    schedule: str = "nightly"  # the job that loads it between nights: hourly, or nightly only
    changes: Callable[..., dict] | None = None  # a cheap "anything new since?" probe for a sensor
    # Completeness: resource -> SQL of its record key in raw_<name>.<resource>; resource ->
    # (canonical entity whose quarantine holds its rejects, SQL counting its canonical rows).
    raw_keys: Mapping[str, str] = field(default_factory=dict)
    canonical_rows: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    count: Callable[..., dict[str, int]] | None = None  # resource -> rows at the source now
    # resource -> how the source tells a record was deleted (`kit/deletions.py`: Flagged, Listed,
    # KeySet); after each load of it, raw rows deleted at the source become tombstones.
    deletions: Mapping[str, Any] = field(default_factory=dict)
    identity_rank: int | None = None  # survivorship of customer master data: 0 is the master
    trace: TraceKeys = TraceKeys()
    writers: Mapping[str, type] = field(default_factory=dict)  # destination object -> writer class

    def __post_init__(self) -> None:
        problems = []
        if self.location not in LOCATIONS:
            problems.append(f"location must be one of {LOCATIONS}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {SCHEDULES}")
        if self.source is None and not self.writers:
            problems.append("it declares neither a source nor a writer")
        if self.source is not None and not self.resources:
            problems.append("a source needs `resources` (resource -> description)")
        if unknown := sorted(set(self.raw_keys) - set(self.resources)):
            problems.append(f"raw_keys name resources it does not have: {unknown}")
        if unknown := sorted(set(self.deletions) - set(self.resources)):
            problems.append(f"deletions name resources it does not have: {unknown}")
        if self.location == "folder" and not self.file_pattern:
            problems.append("a folder system needs `file_pattern`")
        if self.location != "url" and self.default_location is None:
            problems.append(f"a {self.location} system needs `default_location`")
        if problems:
            raise ValueError(f"system {self.name!r}: " + "; ".join(problems))

    @property
    def url_var(self) -> str:
        return f"HUB_{self.name.upper()}_URL"

    def location_value(self, override: str | None = None) -> str:
        """Where the system is: `override`, else its variable, else its default (the sandbox)."""
        explicit = override or settings.env(self.url_var)
        if explicit:
            return explicit.rstrip("/") if self.location == "url" else explicit
        if self.default_location is not None:
            return self.default_location()
        if self.sandbox_port is None:
            raise ValueError(f"set {self.url_var}: system {self.name!r} has no sandbox stand-in")
        return f"{settings.sandbox_scheme()}://127.0.0.1:{settings.port_base() + self.sandbox_port}"

    def secret(self, keyword: str, location: str | None = None) -> str:
        """A credential of the client, from its environment variable. The sandbox's public default
        applies only while the system is the sandbox's own (on this machine): a real system's
        URL without its credential is a configuration error, never a demo secret sent to it."""
        credential = self.credentials[keyword]
        value = settings.env(credential.var)
        if value:
            return value
        where = self.location_value(location)
        if credential.schemes and urlsplit(where).scheme not in credential.schemes:
            return ""
        if credential.sandbox is not None and settings.is_loopback(where):
            return credential.sandbox
        raise settings.ConfigError(
            f"{credential.var} is not set: {self.name} is at {_shown(where)}, not the local sandbox, "
            f"so set {credential.var} to its credential"
        )

    def check(self) -> list[str]:
        """What is wrong with this system's configuration now, one line each (empty when usable)."""
        try:
            self.client_kwargs()
        except (settings.ConfigError, ValueError) as exc:
            return [str(exc)]
        return []

    def describe_kwargs(self) -> dict[str, str]:
        """Arguments that build the source only to describe its resources (asset definitions):
        its default location and no credentials, so a code location loads without secrets."""
        where = {"url": "base_url", "database": "url", "folder": "folder"}[self.location]
        location = self.default_location() if self.default_location else "http://127.0.0.1"
        return {where: location, **dict.fromkeys(self.credentials, "")}

    def client_kwargs(self, location: str | None = None) -> dict[str, str]:
        """The keyword arguments the adapter's `source()`, its writers and its counter take."""
        where = {"url": "base_url", "database": "url", "folder": "folder"}[self.location]
        return {
            where: self.location_value(location),
            **{k: self.secret(k, location) for k in self.credentials},
        }


def _shown(url: str) -> str:
    """A URL safe to print: scheme, host and port only."""
    parts = urlsplit(url)
    return (
        f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        if parts.hostname
        else url
    )


@functools.cache
def registry() -> dict[str, System]:
    """Every system module in this package, by name, in name order."""
    found: dict[str, System] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "kit":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        system = getattr(module, "SYSTEM", None)
        if not isinstance(system, System):
            raise TypeError(
                f"system module {module.__name__} must define SYSTEM = System(...) (see {__name__})"
            )
        found[system.name] = system
    return found


def get(name: str) -> System:
    try:
        return registry()[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; connected: {', '.join(registry())}") from None


def sources() -> dict[str, System]:
    """The systems the hub reads from."""
    return {name: s for name, s in registry().items() if s.source is not None}


def writer_class(system: str, obj: str) -> type:
    """The writer class of destination `system`.`obj`."""
    try:
        return registry()[system].writers[obj]
    except KeyError:
        known = ", ".join(f"{s.name}.{o}" for s in registry().values() for o in s.writers)
        raise ValueError(f"no writer for destination {system}.{obj}; known: {known}") from None


def writer(system: str, obj: str, base_url: str | None = None):
    """A writer for `system`.`obj`, with the system's URL (or `base_url`) and credentials."""
    return writer_class(system, obj)(**get(system).client_kwargs(base_url))


def sandbox_credentials() -> dict[str, str]:
    """Environment variable -> the sandbox's public default, for every system."""
    return {
        c.var: c.sandbox for s in registry().values() for c in s.credentials.values() if c.sandbox is not None
    }


def config_problems() -> list[str]:
    """Every connected system's configuration problems, one line each."""
    return [line for s in registry().values() for line in s.check()]


def secret_values() -> set[str]:
    """The credentials currently in effect (set, or the sandbox's), so an alert can redact them."""
    values = (settings.env(c.var, c.sandbox) for s in registry().values() for c in s.credentials.values())
    return {v for v in values if v}
