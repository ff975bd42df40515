"""A reconciliation flow compiled to set-based SQL, in DuckDB's dialect (transpiled for Postgres
by the engine that runs it).

The two models are joined as they are, in one FULL OUTER JOIN: only a side that may repeat its
keys is aggregated (a count of repeated keys, usually empty). The keys that are not a clean
one-to-one match go to a temp table of pairs; the findings and the statistics are read from
it, and matched pairs are counted, never stored.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING

from integration_hub.engine.sql_models import is_query
from integration_hub.warehouse import literal

if TYPE_CHECKING:
    from integration_hub.engine.recon_engine import Compare, Flow

PAIRS = "_recon_pairs"  # session-temporary: one row per join key that is not a clean match
_NULL = "CAST(NULL AS VARCHAR)"
_NO_DIFFERENCE = "CAST(NULL AS DOUBLE PRECISION)"


def model_sql(sql_or_table: str) -> str:
    """A model as a FROM item: a table as it is, a query in parentheses."""
    text = sql_or_table.strip()
    return f"({text})" if is_query(text) else text


def _side(flow: Flow, side: str, cutoff: dt.datetime | None = None) -> str:
    """A side's records, their columns renamed `<side>_<column>`, with `<side>_hit` marking presence."""
    cols = [c.column if side == "l" else (c.right_column or c.column) for c in flow.compares]
    names = dict.fromkeys(["id", *flow.on, *cols])
    select = ", ".join(f"m.{c} AS {side}_{c}" for c in names)
    return f"SELECT {select}, TRUE AS {side}_hit, {_young(flow, side, cutoff)} AS {side}_young FROM {model_sql(flow.left if side == 'l' else flow.right)} m"


def _young(flow: Flow, side: str, cutoff: dt.datetime | None) -> str:
    """Whether a record changed after `cutoff` (its grace: not yet expected on the other side)."""
    grace = flow.grace
    if grace is None or cutoff is None or grace.side[0] != side:
        return "FALSE"
    return f"coalesce(m.{grace.column} > CAST({literal(cutoff.isoformat(sep=' '))} AS TIMESTAMP), FALSE)"


def _repeated(flow: Flow, side: str) -> str:
    """Keys held by more than one record of a side (usually none): a count-only aggregation."""
    keys = ", ".join(f"m.{k}" for k in flow.on)
    return (
        f"SELECT {keys}, count(*) AS n FROM {model_sql(flow.left if side == 'l' else flow.right)} m "
        f"GROUP BY {keys} HAVING count(*) > 1"
    )


def _differs(c: Compare) -> tuple[str, str, str]:
    """(SQL that is true when the pair mismatches, SQL of the difference, SQL 'right is larger')."""
    lc, rc = f"l_{c.column}", f"r_{c.right_column or c.column}"
    one_null = f"(({lc} IS NULL) <> ({rc} IS NULL))"
    if c.as_ in ("money", "number"):
        dec = "DECIMAL(18, 4)"
        lv, rv = f"CAST({lc} AS {dec})", f"CAST({rc} AS {dec})"
        tol = f"CAST({Decimal(str(c.abs_tol))} AS {dec})"
        if c.rel_tol:
            tol += f" + CAST({Decimal(str(c.rel_tol))} AS DECIMAL(18, 8)) * abs({lv})"
        return (
            f"({one_null} OR coalesce(abs({rv} - {lv}) > {tol}, FALSE))",
            f"CAST({rv} - {lv} AS DOUBLE PRECISION)",
            f"{rv} > {lv}",
        )
    if c.as_ == "date":
        lv, rv = f"CAST({lc} AS DATE)", f"CAST({rc} AS DATE)"
        return (
            f"({one_null} OR coalesce(abs({rv} - {lv}) > {int(c.days)}, FALSE))",
            f"CAST({rv} - {lv} AS DOUBLE PRECISION)",
            f"{rv} > {lv}",
        )
    if c.as_ == "text":

        def norm(x: str) -> str:
            return rf"regexp_replace(lower(trim(CAST({x} AS VARCHAR))), '\s+', ' ', 'g')"

        return f"({norm(lc)} IS DISTINCT FROM {norm(rc)})", "CAST(NULL AS DOUBLE PRECISION)", "FALSE"
    return f"({lc} IS DISTINCT FROM {rc})", "CAST(NULL AS DOUBLE PRECISION)", "FALSE"


def compile_flow(flow: Flow, cutoff: dt.datetime | None = None) -> dict[str, str]:
    """The flow's SQL, in DuckDB's dialect: `pairs` (a temp table of the keys that are not a clean
    one-to-one match, first record of each side side by side, with one mismatch flag per compare),
    then `findings` and `stats` read from it, and `drop` (the temp table)."""
    flags = [_differs(c) for c in flow.compares]
    any_mismatch = " OR ".join(f"m_{i}" for i in range(len(flags))) or "FALSE"
    return {
        "pairs": _pairs(flow, flags, any_mismatch, cutoff),
        "findings": _findings(flow, flags),
        "stats": _stats(flow, any_mismatch),
        "drop": f"DROP TABLE {PAIRS}",
    }


def _pairs(
    flow: Flow, flags: list[tuple[str, str, str]], any_mismatch: str, cutoff: dt.datetime | None
) -> str:
    """The temp table of keys that are not a clean match, each key's first record of each side."""
    on = " AND ".join(f"l.l_{k} = r.r_{k}" for k in flow.on)
    # Only a side that declares a duplicate kind may repeat a key: its repeated keys are counted
    # (a count-only aggregation, usually empty); the other side's keys are taken as unique.
    counted, repeats = [], []
    for side, kind in (("l", flow.duplicate_left), ("r", flow.duplicate_right)):
        if kind:
            match = " AND ".join(f"d{side}.{k} = {side}.{side}_{k}" for k in flow.on)
            counted.append(f"CASE WHEN {side}_hit THEN coalesce(d{side}.n, 1) END AS {side}_n")
            repeats.append(f" LEFT JOIN ({_repeated(flow, side)}) d{side} ON {match}")
        else:
            counted.append(f"CASE WHEN {side}_hit THEN 1 END AS {side}_n")
    joined = (
        f"SELECT l.*, r.*, {', '.join(counted)}"
        + "".join(f", ({differs}) AS m_{i}" for i, (differs, _, _) in enumerate(flags))
        + f" FROM ({_side(flow, 'l', cutoff)}) l FULL OUTER JOIN ({_side(flow, 'r', cutoff)}) r ON {on}"
        + "".join(repeats)
    )
    # A key held twice joins as a cross product: its first record of each side (lowest id) stands for it.
    # A NULL key matches nothing, so each such record is its own group.
    group = ", ".join(f"coalesce(l_{k}, r_{k})" for k in flow.on)
    no_key = " OR ".join(f"coalesce(l_{k}, r_{k}) IS NULL" for k in flow.on)
    return (
        f"CREATE TEMP TABLE {PAIRS} AS SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {group}, "
        f"CASE WHEN {no_key} THEN coalesce(CAST(l_id AS VARCHAR), CAST(r_id AS VARCHAR)) END ORDER BY l_id NULLS LAST, r_id NULLS LAST) AS pair_rank "
        f"FROM ({joined}) j WHERE l_hit IS NULL OR r_hit IS NULL OR l_n > 1 OR r_n > 1 OR {any_mismatch}) p "
        "WHERE pair_rank = 1"
    )


def _finding(
    kind: str, left_key: str, right_key: str, rest: str, values=(_NULL, _NULL, _NO_DIFFERENCE)
) -> str:
    lv, rv, diff = values
    return (
        f"SELECT {kind} AS kind, CAST({left_key} AS VARCHAR) AS left_key, CAST({right_key} AS VARCHAR) AS "
        f"right_key, {lv} AS left_value, {rv} AS right_value, {diff} AS difference {rest}"
    )


def _findings(flow: Flow, flags: list[tuple[str, str, str]]) -> str:
    """One SELECT per finding kind over the pairs, in one UNION ALL."""
    parts = []
    if flow.missing_right:
        parts.append(
            _finding(
                literal(flow.missing_right),
                "l_id",
                "NULL",
                f"FROM {PAIRS} WHERE r_hit IS NULL AND NOT l_young",
            )
        )
    if flow.missing_left:
        parts.append(
            _finding(
                literal(flow.missing_left),
                "NULL",
                "r_id",
                f"FROM {PAIRS} WHERE l_hit IS NULL AND NOT r_young",
            )
        )
    for side, kind in (("r", flow.duplicate_right), ("l", flow.duplicate_left)):
        if not kind:
            continue
        # Only keys with more than one record are re-read; every record after the first is a duplicate.
        model = flow.right if side == "r" else flow.left
        on = " AND ".join(f"m.{k} = p.{side}_{k}" for k in flow.on)
        keys = ", ".join(f"m.{k}" for k in flow.on)
        ids = ("p.l_id", "m.id") if side == "r" else ("m.id", "p.r_id")
        dupes = (
            f"SELECT {ids[0]} AS left_id, {ids[1]} AS right_id, "
            f"row_number() OVER (PARTITION BY {keys} ORDER BY m.id) AS n "
            f"FROM {model_sql(model)} m JOIN {PAIRS} p ON {on} WHERE p.{side}_n > 1"
        )
        parts.append(_finding(literal(kind), "left_id", "right_id", f"FROM ({dupes}) d WHERE n > 1"))
    for i, (c, (_, diff, over)) in enumerate(zip(flow.compares, flags, strict=True)):
        kind = literal(c.kind)
        if c.kind_over:
            kind = f"CASE WHEN {over} THEN {literal(c.kind_over)} ELSE {kind} END"
        values = (f"CAST(l_{c.column} AS VARCHAR)", f"CAST(r_{c.right_column or c.column} AS VARCHAR)", diff)
        parts.append(_finding(kind, "l_id", "r_id", f"FROM {PAIRS} WHERE l_hit AND r_hit AND m_{i}", values))
    if not parts:
        raise ValueError(f"flow {flow.name!r} declares no finding kind: nothing to reconcile")
    return " UNION ALL ".join(parts)


def _stats(flow: Flow, any_mismatch: str) -> str:
    """Row counts of both sides, matched pairs, the keys expected to match, and the flow's amounts."""
    amounts = "".join(
        f", (SELECT sum({expr}) FROM {model_sql(flow.right)} a) AS {name}"
        for name, expr in flow.amounts.items()
    )
    # Each key is one record plus its duplicates, and each key not kept in pairs is a matched pair:
    # paired keys = left keys - left-only keys; matched = paired keys - mismatched pairs.
    left_rows = f"(SELECT count(*) FROM {model_sql(flow.left)} c)"
    paired = (
        f"({left_rows} - (SELECT coalesce(sum(l_n - 1), 0) FROM {PAIRS} WHERE l_n > 1) "
        f"- (SELECT count(*) FROM {PAIRS} WHERE r_hit IS NULL))"
    )
    mismatched = f"(SELECT count(*) FROM {PAIRS} WHERE l_hit AND r_hit AND ({any_mismatch}))"
    # A one-sided key counts against the match rate only when the flow calls it a finding.
    one_sided = [
        f"(SELECT count(*) FROM {PAIRS} WHERE {side}_hit IS NULL AND NOT {'l' if side == 'r' else 'r'}_young)"
        for side, kind in (("r", flow.missing_right), ("l", flow.missing_left))
        if kind
    ]
    return (
        f"SELECT {left_rows} AS left_rows, (SELECT count(*) FROM {model_sql(flow.right)} c) AS right_rows, "
        f"{paired} - {mismatched} AS matched, {' + '.join([paired, *one_sided])} AS keys_seen{amounts}"
    )
