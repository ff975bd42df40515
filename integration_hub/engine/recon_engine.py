"""The reconciliation engine: a flow is declared once as data and compiled to set-based SQL.

A `Flow` names two models (a table or a SELECT), the columns that join them, the columns
it compares (each with its tolerance) and the finding kind for every way the two sides
can disagree. `run_flow` compiles that into one FULL OUTER JOIN (plus a count of repeated
keys for a side that may repeat them), runs it inside the warehouse (written in DuckDB's
dialect, transpiled by sqlglot for Postgres) and appends the findings to
`recon.<flow>__results` and one row to `recon.summary`, both kept over time. No row leaves
the warehouse except the counts and a small sample, so it scales with the database, not Python.

Each model must expose `id` (the record's own key, reported as `left_key`/`right_key`), the
join columns and the compared columns. A side's join keys are taken as unique unless the flow
declares a duplicate kind for that side; then, within a group of records sharing a key, the
first by `id` is the original and every later one a duplicate.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal

import sqlglot
from sqlglot import exp

from integration_hub.warehouse import Warehouse, WarehouseLockedError

SCHEMA = "recon"
SUMMARY = "summary"
SAMPLE_SIZE = 5

RESULT_COLUMNS = (
    "run_id VARCHAR, run_at TIMESTAMP, flow VARCHAR, kind VARCHAR, entity VARCHAR, left_key VARCHAR, "
    "right_key VARCHAR, left_value VARCHAR, right_value VARCHAR, difference DOUBLE PRECISION"
)
SUMMARY_COLUMNS = (
    "run_id VARCHAR, run_at TIMESTAMP, flow VARCHAR, entity VARCHAR, left_rows BIGINT, right_rows BIGINT, "
    "matched BIGINT, findings VARCHAR, match_rate DOUBLE PRECISION, amounts VARCHAR"
)


@dataclass(frozen=True)
class Compare:
    """One compared column and the finding it raises when the sides differ beyond tolerance.

    `as_` picks the comparison: `money` or `number` (|r - l| <= abs_tol + rel_tol * |l|, in exact
    decimals, so a difference equal to the tolerance matches), `date` (within `days`), `text`
    (case and whitespace-insensitive) or `exact`. `kind_over`, when set, is raised instead of `kind`
    when the right side is the larger (e.g. overpaid rather than partially paid).
    """

    column: str
    kind: str
    as_: str = "exact"
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    days: int = 0
    right_column: str | None = None
    kind_over: str | None = None

    def __post_init__(self) -> None:
        if self.as_ not in ("money", "number", "date", "text", "exact"):
            raise ValueError(
                f"Compare {self.column!r}: as_ must be money, number, date, text or exact, not {self.as_!r}"
            )

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.kind, self.kind_over) if self.kind_over else (self.kind,)


@dataclass(frozen=True)
class Threshold:
    """An asset-check rule: findings of `kind` may be at most `max_share` of the left rows.

    A kind without a declared threshold gets the default: warn on any finding.
    """

    kind: str
    max_share: float = 0.0
    severity: str = "WARN"

    def __post_init__(self) -> None:
        if self.severity not in ("WARN", "ERROR"):
            raise ValueError(
                f"Threshold {self.kind!r}: severity must be WARN or ERROR, not {self.severity!r}"
            )


@dataclass(frozen=True)
class Flow:
    """A reconciliation between two models, declared as data (see the module docstring)."""

    name: str
    entity: str
    left: str
    right: str
    on: tuple[str, ...]
    compares: tuple[Compare, ...] = ()
    missing_right: str | None = None  # a left row with no right row
    missing_left: str | None = None  # a right row with no left row
    duplicate_right: str | None = None
    duplicate_left: str | None = None
    # Sums over the right model reported in the summary (e.g. fees), never findings.
    amounts: dict[str, str] = field(default_factory=dict)
    thresholds: tuple[Threshold, ...] = ()
    description: str = ""

    @property
    def kinds(self) -> list[str]:
        found = [self.missing_right, self.missing_left, self.duplicate_right, self.duplicate_left]
        found += [k for c in self.compares for k in c.kinds]
        return [k for k in found if k]

    @property
    def tables(self) -> list[tuple[str, str]]:
        """(schema, table) of every warehouse table the two models read, from the SQL itself."""
        found = set()
        for model in (self.left, self.right):
            tree = sqlglot.parse_one(f"SELECT * FROM {_model(model)} AS m", read="duckdb")
            ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
            found |= {(t.db, t.name) for t in tree.find_all(exp.Table) if t.db and t.name not in ctes}
        return sorted(found)

    def threshold(self, kind: str) -> Threshold:
        return next((t for t in self.thresholds if t.kind == kind), Threshold(kind))

    @property
    def results_table(self) -> str:
        return f"{self.name}__results"


@dataclass
class FlowResult:
    flow: str
    run_id: str
    run_at: dt.datetime
    left_rows: int
    right_rows: int
    matched: int
    findings: dict[str, int]
    amounts: dict[str, float]
    samples: dict[str, list[dict]]
    keys_seen: int  # distinct join keys expected to match: pairs plus one-sided keys that are findings

    @property
    def match_rate(self) -> float:
        """Matched pairs over the keys expected to match (1.0 when there are none)."""
        return self.matched / self.keys_seen if self.keys_seen else 1.0

    @property
    def total_findings(self) -> int:
        return sum(self.findings.values())


def _model(sql_or_table: str) -> str:
    text = sql_or_table.strip()
    return f"({text})" if text.lower().startswith(("select", "with")) else text


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


PAIRS = "_recon_pairs"  # session-temporary: one row per join key that is not a clean match


def _side(flow: Flow, side: str) -> str:
    """A side's records, their columns renamed `<side>_<column>`, with `<side>_hit` marking presence."""
    cols = [c.column if side == "l" else (c.right_column or c.column) for c in flow.compares]
    names = dict.fromkeys(["id", *flow.on, *cols])
    select = ", ".join(f"m.{c} AS {side}_{c}" for c in names)
    return f"SELECT {select}, TRUE AS {side}_hit FROM {_model(flow.left if side == 'l' else flow.right)} m"


def _repeated(flow: Flow, side: str) -> str:
    """Keys held by more than one record of a side (usually none): a count-only aggregation."""
    keys = ", ".join(f"m.{k}" for k in flow.on)
    return (
        f"SELECT {keys}, count(*) AS n FROM {_model(flow.left if side == 'l' else flow.right)} m "
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


def compile_flow(flow: Flow) -> dict[str, str]:
    """The flow's SQL, in DuckDB's dialect: `pairs` (a temp table of the keys that are not a clean
    one-to-one match, first record of each side side by side, with one mismatch flag per compare),
    then `findings` and `stats` read from it. Matched pairs are counted, never stored, and the
    records are joined as they are: only repeated keys are aggregated, so the work is one join."""
    on = " AND ".join(f"l.l_{k} = r.r_{k}" for k in flow.on)
    flags = [_differs(c) for c in flow.compares]
    any_mismatch = " OR ".join(f"m_{i}" for i in range(len(flags))) or "FALSE"
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
        + f" FROM ({_side(flow, 'l')}) l FULL OUTER JOIN ({_side(flow, 'r')}) r ON {on}"
        + "".join(repeats)
    )
    # A key held twice joins as a cross product: its first record of each side (lowest id) stands for it.
    # A NULL key matches nothing, so each such record is its own group.
    group = ", ".join(f"coalesce(l_{k}, r_{k})" for k in flow.on)
    no_key = " OR ".join(f"coalesce(l_{k}, r_{k}) IS NULL" for k in flow.on)
    pairs = (
        f"CREATE TEMP TABLE {PAIRS} AS SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {group}, "
        f"CASE WHEN {no_key} THEN coalesce(CAST(l_id AS VARCHAR), CAST(r_id AS VARCHAR)) END ORDER BY l_id NULLS LAST, r_id NULLS LAST) AS pair_rank "
        f"FROM ({joined}) j WHERE l_hit IS NULL OR r_hit IS NULL OR l_n > 1 OR r_n > 1 OR {any_mismatch}) p "
        "WHERE pair_rank = 1"
    )
    null = "CAST(NULL AS VARCHAR)"
    nodiff = "CAST(NULL AS DOUBLE PRECISION)"

    def part(kind: str, left_key: str, right_key: str, rest: str, values=(null, null, nodiff)) -> str:
        lv, rv, diff = values
        return (
            f"SELECT {kind} AS kind, CAST({left_key} AS VARCHAR) AS left_key, CAST({right_key} AS VARCHAR) AS "
            f"right_key, {lv} AS left_value, {rv} AS right_value, {diff} AS difference {rest}"
        )

    parts = []
    if flow.missing_right:
        parts.append(part(_literal(flow.missing_right), "l_id", "NULL", f"FROM {PAIRS} WHERE r_hit IS NULL"))
    if flow.missing_left:
        parts.append(part(_literal(flow.missing_left), "NULL", "r_id", f"FROM {PAIRS} WHERE l_hit IS NULL"))
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
            f"FROM {_model(model)} m JOIN {PAIRS} p ON {on} WHERE p.{side}_n > 1"
        )
        parts.append(part(_literal(kind), "left_id", "right_id", f"FROM ({dupes}) d WHERE n > 1"))
    for i, (c, (_, diff, over)) in enumerate(zip(flow.compares, flags, strict=True)):
        kind = _literal(c.kind)
        if c.kind_over:
            kind = f"CASE WHEN {over} THEN {_literal(c.kind_over)} ELSE {kind} END"
        values = (f"CAST(l_{c.column} AS VARCHAR)", f"CAST(r_{c.right_column or c.column} AS VARCHAR)", diff)
        parts.append(part(kind, "l_id", "r_id", f"FROM {PAIRS} WHERE l_hit AND r_hit AND m_{i}", values))
    if not parts:
        raise ValueError(f"flow {flow.name!r} declares no finding kind: nothing to reconcile")
    amounts = "".join(
        f", (SELECT sum({expr}) FROM {_model(flow.right)} a) AS {name}" for name, expr in flow.amounts.items()
    )
    # Each key is one record plus its duplicates, and each key not kept in pairs is a matched pair:
    # paired keys = left keys - left-only keys; matched = paired keys - mismatched pairs.
    left_rows = f"(SELECT count(*) FROM {_model(flow.left)} c)"
    paired = (
        f"({left_rows} - (SELECT coalesce(sum(l_n - 1), 0) FROM {PAIRS} WHERE l_n > 1) "
        f"- (SELECT count(*) FROM {PAIRS} WHERE r_hit IS NULL))"
    )
    mismatched = f"(SELECT count(*) FROM {PAIRS} WHERE l_hit AND r_hit AND ({any_mismatch}))"
    # A one-sided key counts against the match rate only when the flow calls it a finding.
    one_sided = [
        f"(SELECT count(*) FROM {PAIRS} WHERE {side}_hit IS NULL)"
        for side, kind in (("r", flow.missing_right), ("l", flow.missing_left))
        if kind
    ]
    stats = (
        f"SELECT {left_rows} AS left_rows, (SELECT count(*) FROM {_model(flow.right)} c) AS right_rows, "
        f"{paired} - {mismatched} AS matched, {' + '.join([paired, *one_sided])} AS keys_seen{amounts}"
    )
    return {
        "pairs": pairs,
        "findings": " UNION ALL ".join(parts),
        "stats": stats,
        "drop": f"DROP TABLE {PAIRS}",
    }


def _sql_for(warehouse: Warehouse, sql: str) -> str:
    """Flows are written once in DuckDB's dialect; Postgres gets a sqlglot transpilation."""
    if warehouse.dialect == "duckdb":
        return sql
    return sqlglot.transpile(sql, read="duckdb", write="postgres")[0]


def run_flow(warehouse: Warehouse, flow: Flow, run_id: str, run_at: dt.datetime | None = None) -> FlowResult:
    """Reconcile one flow and append its findings and summary (a re-run of `run_id` replaces them)."""
    run_at = run_at or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    sql = {name: _sql_for(warehouse, q) for name, q in compile_flow(flow).items()}
    results = f'"{SCHEMA}"."{flow.results_table}"'
    summary = f'"{SCHEMA}"."{SUMMARY}"'
    head = (
        f"{_literal(run_id)}, CAST({_literal(run_at.isoformat(sep=' '))} AS TIMESTAMP), {_literal(flow.name)}"
    )
    warehouse.ensure_schema(SCHEMA)
    with warehouse.connect() as con:
        con.execute(f"CREATE TABLE IF NOT EXISTS {results} ({RESULT_COLUMNS})")
        con.execute(f"CREATE TABLE IF NOT EXISTS {summary} ({SUMMARY_COLUMNS})")
    try:
        result = _reconcile(warehouse, flow, sql, results, summary, head, run_id, run_at)
    except WarehouseLockedError:
        raise
    except Exception as exc:
        models = ", ".join(".".join(t) for t in flow.tables)
        raise RuntimeError(
            f"flow {flow.name!r} could not run: {str(exc).splitlines()[0].rstrip('.!')}. "
            f"It reads {models}; materialize any that is missing. Earlier results are untouched."
        ) from exc
    return result


def _reconcile(warehouse, flow, sql, results, summary, head, run_id, run_at) -> FlowResult:
    """Replace this run's rows in one transaction, so a failure leaves the history as it was."""
    with warehouse.connect() as con:
        if con.dialect == "duckdb":
            con.execute("BEGIN TRANSACTION")
        con.execute(f"DELETE FROM {results} WHERE run_id = {_literal(run_id)}")
        con.execute(
            f"DELETE FROM {summary} WHERE run_id = {_literal(run_id)} AND flow = {_literal(flow.name)}"
        )
        con.execute(sql["pairs"])
        con.execute(
            f"INSERT INTO {results} SELECT {head}, f.kind, {_literal(flow.entity)}, f.left_key, f.right_key, "
            f"f.left_value, f.right_value, f.difference FROM ({sql['findings']}) f"
        )
        stats = con.rows(sql["stats"])[0]
        con.execute(sql["drop"])
        counts = dict(
            con.rows(f"SELECT kind, count(*) FROM {results} WHERE run_id = {_literal(run_id)} GROUP BY kind")
        )
        samples = sample_findings(con, flow.name, run_id)
        findings = {k: int(counts.get(k, 0)) for k in dict.fromkeys(flow.kinds)}
        amounts = {name: float(v or 0) for name, v in zip(flow.amounts, stats[4:], strict=True)}
        result = FlowResult(
            flow=flow.name,
            run_id=run_id,
            run_at=run_at,
            left_rows=int(stats[0]),
            right_rows=int(stats[1]),
            matched=int(stats[2]),
            keys_seen=int(stats[3]),
            findings=findings,
            amounts=amounts,
            samples=samples,
        )
        con.execute(
            f"INSERT INTO {summary} VALUES ({head}, {_literal(flow.entity)}, {result.left_rows}, {result.right_rows}, "
            f"{result.matched}, {_literal(json.dumps(findings, sort_keys=True))}, {result.match_rate!r}, "
            f"{_literal(json.dumps(amounts, sort_keys=True))})"
        )
        if con.dialect == "duckdb":
            con.execute("COMMIT")
    return result


def sample_findings(con, flow: str, run_id: str, size: int = SAMPLE_SIZE) -> dict[str, list[dict]]:
    """The first few findings of each kind of one run, ordered by key, for metadata and reports."""
    rows = con.rows(
        "SELECT kind, left_key, right_key, left_value, right_value, difference FROM ("
        "SELECT *, row_number() OVER (PARTITION BY kind ORDER BY left_key, right_key) AS n "
        f'FROM {SCHEMA}."{flow}__results" WHERE run_id = ?) s WHERE n <= {int(size)} ORDER BY kind, n',
        [run_id],
    )
    names = ("left_key", "right_key", "left_value", "right_value", "difference")
    out: dict[str, list[dict]] = {}
    for kind, *values in rows:
        out.setdefault(kind, []).append(dict(zip(names, values, strict=True)))
    return out
