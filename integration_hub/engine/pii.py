"""Which data is personal: the canonical model's flags, and what follows from them.

Personal data is declared once, on the canonical field (`canonical/_field.py`:
`field(..., pii=True)`, read here as the pandera column's `metadata["pii"]`). Everything
else is derived from that flag, never declared again:
- a staging or canonical table carries it in the columns its entity's model flags (a staging
  model's columns are its entity's canonical columns: `union_staging` aligns them by name);
- a query over canonical tables (a sync's source) carries it in the output columns whose
  value derives from a flagged column, traced by sqlglot's column lineage.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from canonical import MODELS
from integration_hub.engine.sql_models import column_sources

CANONICAL = "canonical"
MASK = "•••"
# A table the model does not describe (a raw table: the vendor's field names, and data the model
# never takes in, such as addresses) is judged by its column names.
PERSONAL_NAME = re.compile(r"(e_?mail|phone|first_?name|last_?name|^name$|full_?name|address|street)", re.I)
_MODELLED = ("staging", CANONICAL)  # layers whose tables are an entity of the canonical model


def flagged(entity: str) -> frozenset[str]:
    """The columns of canonical `entity` its model flags as personal data (none for an unknown entity)."""
    model = MODELS.get(entity)
    if model is None:
        return frozenset()
    return frozenset(n for n, col in model.to_schema().columns.items() if (col.metadata or {}).get("pii"))


def of_table(schema: str, table: str) -> frozenset[str] | None:
    """The personal columns of a staging or canonical table by its entity's flags, or `None` when
    the canonical model does not describe the table (a raw table, a table of another layer)."""
    entity = table.split("__")[-1]
    if schema not in _MODELLED or entity not in MODELS:
        return None
    return flagged(entity)


@functools.cache
def _canonical_schema() -> dict[str, dict[str, dict[str, str]]]:
    """The canonical tables' columns, for lineage (which needs names; the type is a placeholder)."""
    return {CANONICAL: {e: dict.fromkeys(m.to_schema().columns, "VARCHAR") for e, m in MODELS.items()}}


def derived(sql: str, columns: Iterable[str]) -> frozenset[str]:
    """The `columns` of `sql`'s output whose value derives from a column the canonical model flags.

    A column whose origin cannot be traced to the canonical model (a table outside it, a star
    over a table it does not describe, an ambiguous name) counts as personal: a needless flag
    costs a line of metadata, a missing one lets personal data pass unmarked. A value computed
    from no column (a literal, `count(*)`) is not personal.
    """
    traced = column_sources(sql, _canonical_schema(), columns)
    return frozenset(column for column, sources in traced.items() if any(map(_personal, sources)))


def _personal(source: tuple[str, str, str] | None) -> bool:
    """Whether a source column is personal data: flagged by the model, or of unknown origin."""
    if source is None or source[0] != CANONICAL or source[1] not in MODELS:
        return True
    return source[2] in flagged(source[1])


def personal_columns(schema: str, table: str, names: Iterable[str]) -> frozenset[str]:
    """Which of a table's columns hold personal data: the model's flags where it describes the
    table, else the column names (`PERSONAL_NAME`)."""
    flagged_here = of_table(schema, table)
    if flagged_here is not None:
        return frozenset(n for n in names if n in flagged_here)
    return frozenset(n for n in names if PERSONAL_NAME.search(n))


def masked(schema: str, table: str, row: Mapping) -> dict:
    """`row` of `schema.table` with its personal values replaced by `MASK` (None stays None)."""
    hide = personal_columns(schema, table, row)
    return {k: MASK if k in hide and v is not None else v for k, v in row.items()}


def masked_payload(sync, payload: Mapping) -> dict:
    """A sync's outgoing payload with the fields its PII derivation flags replaced by `MASK`."""
    return {k: MASK if k in sync.pii and v is not None else v for k, v in payload.items()}
