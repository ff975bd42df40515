"""Row contracts: what a source row must carry before it may land in `raw_<system>`.

A row that breaks its contract (a key missing, a number that is not one) is diverted
before the incremental cursor and the loader see it, and kept with its reason, so one
bad row neither fails the load nor disappears. Arrow tables are checked column-wise
(`Contract.split`): only the rows a column test doubts are read as dicts and judged row
by row, so their reasons are the same as on the row path.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
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
    # The same test over an Arrow column (a boolean mask; may be stricter, never looser), if any.
    column_test: Callable[[pa.ChunkedArray], pa.ChunkedArray] | None = None

    def accepts(self, value: Any) -> bool:
        return (value is None and self.nullable) or (value is not None and self.test(value))

    def accepts_column(self, column: pa.ChunkedArray) -> pa.ChunkedArray | None:
        """Which values pass, column-wise; None when this kind has no column test."""
        if self.column_test is None or not pa.types.is_string(column.type):
            return None
        return pc.fill_null(self.column_test(column), self.nullable)

    @property
    def or_null(self) -> Kind:
        return Kind(f"{self.name} or null", self.test, nullable=True, column_test=self.column_test)


INTEGER = Kind("integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = Kind("number", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
TEXT = Kind("text", lambda v: isinstance(v, str) and v != "", column_test=lambda c: pc.not_equal(c, ""))
DECIMAL_TEXT = Kind(
    "decimal text",
    lambda v: isinstance(v, str) and bool(_DECIMAL.fullmatch(v)),
    column_test=lambda c: pc.match_substring_regex(c, rf"^{_DECIMAL.pattern}$"),
)
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

    def split(self, table: pa.Table) -> tuple[pa.Table, list[tuple[str, str, dict]]]:
        """The rows of `table` that keep the contract, and the refused ones as `(key, reason, row)`."""
        mask = pa.array([True] * table.num_rows, pa.bool_())
        for name, kind in self.fields.items():
            passed = kind.accepts_column(table[name]) if name in table.column_names else None
            mask = pc.and_(mask, passed) if passed is not None else pa.array([False] * table.num_rows)
        if pc.all(mask).as_py() is not False:
            return table, []
        rejected, kept = [], []
        for row in table.filter(pc.invert(mask)).to_pylist():
            reason = self.violation(row)
            if reason:
                rejected.append((str(row.get(self.key)), reason, row))
            else:
                kept.append(row)
        good = table.filter(mask)
        if kept:
            good = pa.concat_tables([good, pa.Table.from_pylist(kept, schema=table.schema)])
        return good, rejected


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
