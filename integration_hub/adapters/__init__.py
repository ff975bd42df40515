"""Adapters: one plain dlt source per connected system, discovered by scanning this package.

An adapter knows its own system only (auth, paging, cursors, row contracts): no Dagster,
no canonical names, no sandbox. Adding a system means dropping one module here; nothing
else is edited. A module is an adapter when it defines:

- `SYSTEM`: the system's name (`raw_<SYSTEM>` is its warehouse dataset);
- `DESCRIPTIONS`: resource name → what the table holds (one Dagster asset each);
- `INCREMENTAL`: True for sources read by an updated-at window (`source(..., start, end)`,
  daily-partitioned assets), False for file drops (`source(folder, files, ...)`);
- `source(...)`: the dlt source; every one accepts `rejects` (a `Rejects` sink for rows
  that break the resource's contract).

Modules whose name starts with `_` are shared helpers.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from integration_hub.adapters._contract import Rejects

REQUIRED = ("SYSTEM", "DESCRIPTIONS", "INCREMENTAL", "source")


def discover() -> dict[str, ModuleType]:
    """Every adapter module in this package, by system name, in name order."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        missing = [name for name in REQUIRED if not hasattr(module, name)]
        if missing:
            raise TypeError(f"adapter module {module.__name__} lacks {', '.join(missing)} (see {__name__})")
        found[module.SYSTEM] = module
    return found


__all__ = ["Rejects", "discover"]
