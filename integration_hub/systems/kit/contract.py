"""Row contracts: what a source row must carry before it may land in `raw_<system>`.

A row that breaks its contract (a key missing, a number that is not one) is diverted
before the incremental cursor and the loader see it, and kept with its reason, so one
bad row neither fails the load nor disappears. Arrow tables are checked column-wise
(`Contract.split`): only the rows a column test doubts (a failed test, or a column whose
type cannot tell) are judged row by row, on the records as the source sent them where
they are at hand, so their reasons are the same as on the row path.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource, DltSource

_DECIMAL = re.compile(r"-?\d+(\.\d+)?")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True)
class Kind:
    """A field type: a name for the reason text and a test of the value."""

    name: str
    test: Callable[[Any], bool]
    nullable: bool = False
    # The same test over an Arrow column of non-null values: a boolean mask (may be stricter,
    # never looser), or None when the column's type cannot tell (then every row is doubted).
    column_test: Callable[[pa.ChunkedArray], pa.ChunkedArray | None] | None = None

    def accepts(self, value: Any) -> bool:
        return (value is None and self.nullable) or (value is not None and self.test(value))

    def accepts_column(self, column: pa.ChunkedArray) -> pa.ChunkedArray | None:
        """Which values pass, column-wise; None when this kind cannot judge the column."""
        if pa.types.is_null(column.type):  # a page where the field is always null
            return pc.fill_null(pc.is_valid(column), self.nullable) if self.nullable else None
        passed = self.column_test(column) if self.column_test is not None else None
        if passed is None:
            return None
        passed = pc.fill_null(passed, False)
        return pc.or_(passed, pc.is_null(column)) if self.nullable else pc.and_(passed, pc.is_valid(column))

    @property
    def or_null(self) -> Kind:
        return Kind(f"{self.name} or null", self.test, nullable=True, column_test=self.column_test)


def _of_type(*is_type: Callable[[pa.DataType], bool]) -> Callable[[pa.ChunkedArray], pa.ChunkedArray | None]:
    """A column test that passes every value of a column of one of these types."""
    return lambda c: pc.is_valid(c) if any(t(c.type) for t in is_type) else None


def _strings(test: Callable[[pa.ChunkedArray], pa.ChunkedArray]) -> Callable:
    return lambda c: test(c) if pa.types.is_string(c.type) else None


INTEGER = Kind(
    "integer",
    lambda v: isinstance(v, int) and not isinstance(v, bool),
    column_test=_of_type(pa.types.is_integer),
)
NUMBER = Kind(
    "number",
    lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    column_test=_of_type(pa.types.is_integer, pa.types.is_floating),
)
TEXT = Kind(
    "text", lambda v: isinstance(v, str) and v != "", column_test=_strings(lambda c: pc.not_equal(c, ""))
)
DECIMAL_TEXT = Kind(
    "decimal text",
    lambda v: isinstance(v, str) and bool(_DECIMAL.fullmatch(v)),
    column_test=_strings(lambda c: pc.match_substring_regex(c, rf"^{_DECIMAL.pattern}$")),
)
TIMESTAMP = Kind(
    "ISO timestamp",
    lambda v: isinstance(v, str) and bool(_TIMESTAMP.fullmatch(v)),
    column_test=_strings(lambda c: pc.match_substring_regex(c, rf"^{_TIMESTAMP.pattern}$")),
)


def looks_like_timestamps(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Which text values are ISO timestamps (null where the value is null)."""
    return pc.match_substring_regex(column, rf"^{_TIMESTAMP.pattern}$")


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

    def split(
        self, table: pa.Table, rows: Sequence[Any] | None = None
    ) -> tuple[pa.Table, list[tuple[str, str, Any]]]:
        """The rows of `table` that keep the contract, and the refused ones as `(key, reason, row)`.

        `rows` are the records the table was built from, if any: a doubted row is judged, and
        kept in a reject, as the source sent it.
        """
        mask = pa.array([True] * table.num_rows, pa.bool_())
        for name, kind in self.fields.items():
            passed = kind.accepts_column(table[name]) if name in table.column_names else None
            mask = pc.and_(mask, passed) if passed is not None else pa.array([False] * table.num_rows)
        if pc.all(mask).as_py() is not False:
            return table, []
        if isinstance(mask, pa.ChunkedArray):
            mask = mask.combine_chunks()
        keep = mask.to_numpy(zero_copy_only=False).copy()
        rejected = []
        for i in np.flatnonzero(~keep):
            row = rows[i] if rows is not None else table.slice(int(i), 1).to_pylist()[0]
            reason = self.violation(row)
            if reason:
                key = row.get(self.key) if isinstance(row, Mapping) else None
                rejected.append((str(key), reason, row))
            else:
                keep[i] = True
        return table.filter(pa.array(keep)), rejected


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
