"""Row contracts: what a source row must carry before it may land in `raw_<system>`.

A row that breaks its contract (a key missing, a number that is not one) is diverted
before the incremental cursor and the loader see it, and kept with its reason, so one
bad row neither fails the load nor disappears.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dlt.extract.resource import DltResource
from dlt.extract.source import DltSource

_DECIMAL = re.compile(r"-?\d+(\.\d+)?")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True)
class Kind:
    """A field type: a name for the reason text and a test of the value."""

    name: str
    test: Callable[[Any], bool]
    nullable: bool = False

    def accepts(self, value: Any) -> bool:
        return (value is None and self.nullable) or (value is not None and self.test(value))

    @property
    def or_null(self) -> Kind:
        return Kind(f"{self.name} or null", self.test, nullable=True)


INTEGER = Kind("integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = Kind("number", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
TEXT = Kind("text", lambda v: isinstance(v, str) and v != "")
DECIMAL_TEXT = Kind("decimal text", lambda v: isinstance(v, str) and bool(_DECIMAL.fullmatch(v)))
TIMESTAMP = Kind("ISO timestamp", lambda v: isinstance(v, str) and bool(_TIMESTAMP.fullmatch(v)))


@dataclass(frozen=True)
class Contract:
    """Required fields of one resource and their kinds; `key` names the row in a reject."""

    key: str
    fields: Mapping[str, Kind]

    def violation(self, row: Mapping[str, Any]) -> str | None:
        """Why the row is refused, or None when it is fine."""
        if not isinstance(row, Mapping):
            return f"expected an object, got {type(row).__name__}"
        for name, kind in self.fields.items():
            if name not in row:
                return f"missing field {name!r}"
            if not kind.accepts(row[name]):
                return f"field {name!r}: expected {kind.name}, got {row[name]!r:.60}"
        return None


@dataclass
class Rejects:
    """Rows a source refused, by resource: `(key, reason, payload)`, for the caller to quarantine."""

    by_resource: dict[str, list[tuple[str, str, dict]]] = field(default_factory=lambda: defaultdict(list))

    def guard(self, resource: DltResource, contract: Contract) -> DltResource:
        """Divert rows that break `contract`, ahead of every other step (cursor included)."""

        def accept(row: Any) -> bool:
            reason = contract.violation(row)
            if reason is None:
                return True
            key = row.get(contract.key) if isinstance(row, Mapping) else None
            self.by_resource[resource.name].append((str(key), reason, row))
            return False

        return resource.add_filter(accept, insert_at=1)

    def count(self, resource: str) -> int:
        return len(self.by_resource.get(resource, []))


def guarded(source: DltSource, contracts: Mapping[str, Contract], rejects: Rejects | None) -> DltSource:
    """`source` with every contracted resource guarded; rejects go to `rejects` (or are counted away)."""
    sink = rejects if rejects is not None else Rejects()
    for name, contract in contracts.items():
        sink.guard(source.resources[name], contract)
    return source
