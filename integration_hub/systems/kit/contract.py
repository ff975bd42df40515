"""Row contracts: what a source row must carry before it may land in `raw_<system>`.

A row that breaks its contract (a key missing, a number that is not one) is diverted
before the incremental cursor and the loader see it, and kept with its reason, so one
bad row neither fails the load nor disappears. Arrow tables are checked column-wise
(`Contract.split`): only the rows a column test doubts (a failed test, or a column whose
type cannot tell) are judged row by row, on the records as the source sent them where
they are at hand, so their reasons are the same as on the row path.

Beyond each field's kind, a contract may state `rules`: conditions across a row's fields
(`not_negative`, `difference`, `date_not_after`, or any `Rule`), checked once the fields
passed their kinds, in the same two ways. `Contract.deduplicate` refuses rows that share a
key with different content (a batch that says two things about one record).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
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
class Rule:
    """A condition across a row's fields, judged once the fields passed their kinds.

    `check` says why a row breaks it (None when it holds). `column_test` is the same over an
    Arrow table: a boolean mask that may be stricter, never looser (a row it fails or leaves
    null is judged by `check`), or None when the table cannot tell (every row is judged).
    A rule reads fields the contract declares, so `check` sees values of their kinds.
    """

    check: Callable[[Mapping[str, Any]], str | None]
    column_test: Callable[[pa.Table], pa.ChunkedArray | pa.Array | None] | None = None


# Decimal text that the column tests compute exactly (decimal128(24, 6)); other decimal text
# (more digits) is left to the row check, which reads it as a Python Decimal.
_EXACT_DECIMAL = r"-?\d{1,18}(\.\d{1,6})?"


def _decimals(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    """A text column as exact decimals, null where a value is not (or not exactly) one."""
    if name not in table.column_names or not pa.types.is_string(table[name].type):
        return None
    column = table[name]
    exact = pc.match_substring_regex(column, rf"^{_EXACT_DECIMAL}$")
    return pc.if_else(exact, column, pa.scalar(None, pa.string())).cast(pa.decimal128(24, 6))


def not_negative(*names: str) -> Rule:
    """Each of the (decimal text) fields `names` is zero or more."""

    def check(row: Mapping[str, Any]) -> str | None:
        for name in names:
            if Decimal(row[name]) < 0:
                return f"field {name!r}: negative amount {row[name]!r:.60}"
        return None

    def column_test(table: pa.Table) -> pa.ChunkedArray | None:
        masks = []
        for name in names:
            values = _decimals(table, name)
            if values is None:
                return None
            masks.append(pc.greater_equal(values, pa.scalar(0, values.type)))
        mask = masks[0]
        for more in masks[1:]:
            mask = pc.and_(mask, more)
        return mask

    return Rule(check, column_test)


def difference(result: str, minuend: str, subtrahend: str) -> Rule:
    """`result == minuend - subtrahend` exactly (decimal text: to the cent for amounts in cents)."""

    def check(row: Mapping[str, Any]) -> str | None:
        expected = Decimal(row[minuend]) - Decimal(row[subtrahend])
        if Decimal(row[result]) != expected:
            return (
                f"field {result!r}: {row[result]!r:.30} is not {minuend} - {subtrahend} "
                f"({row[minuend]!r:.30} - {row[subtrahend]!r:.30} = '{expected}')"
            )
        return None

    def column_test(table: pa.Table) -> pa.ChunkedArray | None:
        values = [_decimals(table, name) for name in (result, minuend, subtrahend)]
        if any(v is None for v in values):
            return None
        return pc.equal(pc.subtract(values[1], values[2]), values[0])

    return Rule(check, column_test)


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_OF_DAY = re.compile(r" (?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d")
# Valid calendar dates from year 1000 on, except 29 February (left to the row check, which knows
# leap years): what the column test passes without asking Python.
_PLAIN_DATE = (
    r"^[1-9]\d{3}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
    r"|02-(?:0[1-9]|1\d|2[0-8]))$"
)


def date_not_after(name: str, latest: Callable[[], dt.date], with_time: bool = False) -> Rule:
    """Field `name` is a valid `YYYY-MM-DD` date, no later than `latest()` (asked when checked).

    `with_time` also takes a date with a time of day, `YYYY-MM-DD HH:MM:SS` (as Stripe's reports
    write dates); its date is judged.
    """
    shape = "YYYY-MM-DD or YYYY-MM-DD HH:MM:SS" if with_time else "YYYY-MM-DD"

    def check(row: Mapping[str, Any]) -> str | None:
        value = row[name]
        if with_time and _TIME_OF_DAY.fullmatch(value[10:]):
            value = value[:10]
        try:
            day = dt.date.fromisoformat(value) if _ISO_DATE.fullmatch(value) else None
        except ValueError:
            day = None
        if day is None:
            return f"field {name!r}: not a valid date ({shape}), got {row[name]!r:.60}"
        if day > (last := latest()):
            return f"field {name!r}: {value} is in the future (the latest date accepted now is {last})"
        return None

    def column_test(table: pa.Table) -> pa.ChunkedArray | None:
        if name not in table.column_names or not pa.types.is_string(table[name].type):
            return None
        column = table[name]
        pattern = _PLAIN_DATE[:-1] + r"(?: (?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)?$" if with_time else _PLAIN_DATE
        plain = pc.match_substring_regex(column, pattern)
        # Plain dates compare as text in date order.
        day = pc.utf8_slice_codeunits(column, 0, 10) if with_time else column
        return pc.and_(plain, pc.less_equal(day, latest().isoformat()))

    return Rule(check, column_test)


@dataclass(frozen=True)
class Contract:
    """Required fields of one resource and their kinds, and rules across fields; `key` names the
    row in a reject."""

    key: str
    fields: Mapping[str, Kind]
    rules: Sequence[Rule] = ()

    def violation(self, row: Mapping[str, Any]) -> str | None:
        """Why the row is refused, or None when it is fine."""
        if not isinstance(row, Mapping):
            return f"expected an object, got {type(row).__name__}"
        for name, kind in self.fields.items():
            if name not in row:
                return f"missing field {name!r}"
            if not kind.accepts(row[name]):
                return f"field {name!r}: expected {kind.name}, got {row[name]!r:.60}"
        for rule in self.rules:
            if reason := rule.check(row):
                return reason
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
        for rule in self.rules:
            passed = rule.column_test(table) if rule.column_test is not None else None
            mask = (
                pc.and_(mask, pc.fill_null(passed, False))
                if passed is not None
                else pa.array([False] * table.num_rows)
            )
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

    def deduplicate(self, table: pa.Table) -> tuple[pa.Table, list[tuple[str, str, Any]]]:
        """`table` with each key once, and the refused rows as `(key, reason, row)`.

        Rows that repeat a key with the same content are one record sent twice: the first is
        kept. Rows that share a key with different content contradict each other and none can
        be told right, so all of them are refused, each naming the duplicate. A key that breaks
        its kind (empty, missing) is left for `split` to refuse.
        """
        if self.key not in table.column_names or table.num_rows < 2:
            return table, []
        keys = table[self.key]
        counts = pc.value_counts(keys)
        repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values").to_pylist()
        kind = self.fields.get(self.key)
        repeated = [k for k in repeated if k is not None and (kind is None or kind.accepts(k))]
        if not repeated:
            return table, []
        where = np.flatnonzero(pc.is_in(keys, pa.array(repeated, keys.type)).to_numpy(zero_copy_only=False))
        groups: dict[Any, list[tuple[int, dict]]] = defaultdict(list)
        for i, row in zip(where, table.take(pa.array(where)).to_pylist(), strict=True):
            groups[row[self.key]].append((int(i), row))
        keep = np.ones(table.num_rows, dtype=bool)
        rejected = []
        for key, group in groups.items():
            contents = {json.dumps(row, sort_keys=True, default=str) for _, row in group}
            for i, _ in group[1:] if len(contents) == 1 else group:
                keep[i] = False
            if len(contents) > 1:
                differ = sorted({f for _, row in group for f in row if row[f] != group[0][1].get(f)})
                reason = (
                    f"conflicting duplicate: {len(group)} rows share {self.key} {key!r:.60} with "
                    f"different content ({', '.join(differ)} differ); none of them is loaded"
                )
                rejected += [(str(key), reason, row) for _, row in group]
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
