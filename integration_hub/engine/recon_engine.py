"""The reconciliation engine: a flow is declared once as data and compiled to set-based SQL.

A `Flow` names two models (a table or a SELECT), the columns that join them, the columns
it compares (each with its tolerance) and the finding kind for every way the two sides
can disagree. `run_flow` compiles that into one FULL OUTER JOIN (plus a count of repeated
keys for a side that may repeat them; `recon_compiler`), runs it inside the warehouse (written
in DuckDB's dialect, transpiled by sqlglot for Postgres) and appends the findings to
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

import sqlglot
from sqlglot import exp

from integration_hub.engine import audit
from integration_hub.engine.recon_compiler import compile_flow, model_sql
from integration_hub.engine.sql_models import to_dialect
from integration_hub.warehouse import Warehouse, WarehouseLockedError, literal, quote

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
    """An asset-check rule: any finding of `kind` fails its check as a warning; with severity
    ERROR, findings above `max_share` of the left rows fail it as an error.

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
class Grace:
    """Rows of one side (`left` or `right`) changed (their `column`, a UTC timestamp) after
    `system`'s last load began cannot be in that system's data yet: its next load is not due
    (the ERP's is nightly). They are not called missing until that load has run. With no load
    of `system` on record (tables written by hand), no row is spared."""

    side: str
    column: str
    system: str

    def __post_init__(self) -> None:
        if self.side not in ("left", "right"):
            raise ValueError(f"grace side must be 'left' or 'right', got {self.side!r}")


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
    grace: Grace | None = None

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
            tree = sqlglot.parse_one(f"SELECT * FROM {model_sql(model)} AS m", read="duckdb")
            ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
            found |= {(t.db, t.name) for t in tree.find_all(exp.Table) if t.db and t.name not in ctes}
        return sorted(found)

    def threshold(self, kind: str) -> Threshold:
        return next((t for t in self.thresholds if t.kind == kind), Threshold(kind))

    @property
    def results_table(self) -> str:
        """The name of the table in `recon` keeping the flow's findings."""
        return results_name(self.name)


def results_name(flow: str) -> str:
    return f"{flow}__results"


def results_table(flow: str) -> str:
    """`recon.<flow>__results`, quoted: where a flow's findings are kept, one run after another."""
    return quote(SCHEMA, results_name(flow))


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


def last_load_began(warehouse: Warehouse, system: str) -> dt.datetime | None:
    """When `system`'s last completed dlt load began (its load id is that time), UTC; None if none."""
    if not warehouse.table_exists(f"raw_{system}", "_dlt_loads"):
        return None
    with warehouse.connect() as con:
        newest = con.scalar(
            f"SELECT max(load_id) FROM {quote('raw_' + system, '_dlt_loads')} WHERE status = 0"
        )
    return dt.datetime.fromtimestamp(float(newest), dt.UTC).replace(tzinfo=None) if newest else None


def run_flow(warehouse: Warehouse, flow: Flow, run_id: str, run_at: dt.datetime | None = None) -> FlowResult:
    """Reconcile one flow and append its findings and summary (a re-run of `run_id` replaces them)."""
    run_at = run_at or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    cutoff = last_load_began(warehouse, flow.grace.system) if flow.grace else None
    sql = {name: to_dialect(q, warehouse.dialect) for name, q in compile_flow(flow, cutoff).items()}
    results, summary = results_table(flow.name), quote(SCHEMA, SUMMARY)
    head = f"{literal(run_id)}, CAST({literal(run_at.isoformat(sep=' '))} AS TIMESTAMP), {literal(flow.name)}"
    warehouse.ensure_schema(SCHEMA)
    with warehouse.connect() as con:
        con.execute(f"CREATE TABLE IF NOT EXISTS {results} ({RESULT_COLUMNS})")
        con.execute(f"CREATE TABLE IF NOT EXISTS {summary} ({SUMMARY_COLUMNS})")
    started = audit.now()
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
    _audit(warehouse, flow, result, started)
    return result


def _audit(warehouse: Warehouse, flow: Flow, result: FlowResult, started: dt.datetime) -> None:
    """One `reconcile` movement per flow run: rows_in = both sides' rows, rows_out = matched
    pairs, rows_rejected = findings (each kind counted in the details)."""
    systems = sorted({schema.removeprefix("raw_") for schema, _ in flow.tables if schema.startswith("raw_")})
    audit.record(
        warehouse,
        audit.Movement(
            run_id=result.run_id, asset=f"recon/{flow.name}", system="hub", direction="reconcile",
            resource=f"{SCHEMA}.{flow.results_table}", rows_in=result.left_rows + result.right_rows,
            rows_out=result.matched, rows_rejected=result.total_findings, started_at=started,
            details={"flow": flow.name, "entity": flow.entity, "left_rows": result.left_rows,
                     "right_rows": result.right_rows, "findings": result.findings, "systems": systems},
        ),
    )  # fmt: skip


def _reconcile(warehouse, flow, sql, results, summary, head, run_id, run_at) -> FlowResult:
    """Replace this run's rows in one transaction, so a failure leaves the history as it was."""
    with warehouse.connect() as con, con.transaction():
        con.execute(f"DELETE FROM {results} WHERE run_id = {literal(run_id)}")
        con.execute(f"DELETE FROM {summary} WHERE run_id = {literal(run_id)} AND flow = {literal(flow.name)}")
        con.execute(sql["pairs"])
        con.execute(
            f"INSERT INTO {results} SELECT {head}, f.kind, {literal(flow.entity)}, f.left_key, f.right_key, "
            f"f.left_value, f.right_value, f.difference FROM ({sql['findings']}) f"
        )
        stats = con.rows(sql["stats"])[0]
        con.execute(sql["drop"])
        counts = dict(
            con.rows(f"SELECT kind, count(*) FROM {results} WHERE run_id = {literal(run_id)} GROUP BY kind")
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
            f"INSERT INTO {summary} VALUES ({head}, {literal(flow.entity)}, {result.left_rows}, {result.right_rows}, "
            f"{result.matched}, {literal(json.dumps(findings, sort_keys=True))}, {result.match_rate!r}, "
            f"{literal(json.dumps(amounts, sort_keys=True))})"
        )
    return result


def sample_findings(con, flow: str, run_id: str, size: int = SAMPLE_SIZE) -> dict[str, list[dict]]:
    """The first few findings of each kind of one run, ordered by key, for metadata and reports."""
    rows = con.rows(
        "SELECT kind, left_key, right_key, left_value, right_value, difference FROM ("
        "SELECT *, row_number() OVER (PARTITION BY kind ORDER BY left_key, right_key) AS n "
        f"FROM {results_table(flow)} WHERE run_id = ?) s WHERE n <= {int(size)} ORDER BY kind, n",
        [run_id],
    )
    names = ("left_key", "right_key", "left_value", "right_value", "difference")
    out: dict[str, list[dict]] = {}
    for kind, *values in rows:
        out.setdefault(kind, []).append(dict(zip(names, values, strict=True)))
    return out
