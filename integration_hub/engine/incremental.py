"""Incremental models: a model says in its own file that it builds by key, and how to find the
keys that changed; the runner then recomputes exactly those keys with the model's own SQL.

A model file declares it dbt-style, after its description::

    {{ config(materialized='incremental', unique_key='order_id') }}
    SELECT ...                                   -- the model, as for a full build
    {% changed_keys %}
    SELECT 'SHOP-' || CAST(id AS VARCHAR) AS order_id FROM {{ changes('raw_shop.orders') }}

`{{ changes('t') }}` is what changed in upstream table `t` since this model last read it: the raw
rows of newer dlt loads (`_dlt_load_id`; a detected deletion bumps it too), or, for a table the
hub builds, the keys its builds logged (`_hub.changes__<layer>__<name>`, old and vanished keys
included). The block returns the model's `unique_key` columns. An incremental build computes
the model's SQL for those keys only, vets the rows as a full build does, and in one transaction
deletes the target's rows of those keys, inserts the new ones, logs the keys for its own readers
and moves its watermarks. The result therefore equals a full build whenever the block names
every key whose rows could differ (a superset is harmless); a key is replaced with all its rows,
so `unique_key` may be a group (an order's lines). A killed build leaves table and watermarks as
they were, and the next one reads the same changes again.

A model builds in full when it was never built, when its SQL file (or a seed it reads) changed,
when an upstream table it reads changes of was rebuilt in full or reloaded whole since, or when
asked to. Watermarks are per model and upstream table (`_hub.model_state`); every build takes a
number from one sequence (`_hub.build_seq`), which orders the change logs.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from integration_hub.warehouse import Connection, literal, quote

SCHEMA = "_hub"
CONFIG = re.compile(r"\{\{\s*config\((.*?)\)\s*\}\}\s*\n?", re.S)
BLOCK = re.compile(r"\{%\s*changed_keys\s*%\}", re.I)
CHANGES = re.compile(r"\{\{\s*changes\(\s*'(\w+)\.(\w+)'\s*\)\s*\}\}")
RAW_MARK = "_dlt_load_id"


class IncrementalError(RuntimeError):
    pass


@dataclass(frozen=True)
class Config:
    """A model's `{{ config(...) }}`: `materialized` is `table` (default) or `incremental`."""

    materialized: str = "table"
    unique_key: tuple[str, ...] = ()

    @property
    def incremental(self) -> bool:
        return self.materialized == "incremental"


@dataclass(frozen=True)
class Parsed:
    config: Config
    body: str  # the model's SQL, config removed
    changed_keys: str | None  # the `{% changed_keys %}` block's SQL


def parse(template: str, where: str = "model") -> Parsed:
    """Split a model file into its config, its SQL and its changed-keys block."""
    config = Config()
    if match := CONFIG.search(template):
        config = _config(match.group(1), where)
        template = template[: match.start()] + template[match.end() :]
    body, *block = BLOCK.split(template, maxsplit=1)
    changed = block[0].strip() if block else None
    if config.incremental and (not config.unique_key or not changed):
        raise IncrementalError(
            f"{where}: an incremental model needs unique_key=... in its config and a "
            "`{% changed_keys %}` block returning those columns"
        )
    if config.materialized not in ("table", "incremental"):
        raise IncrementalError(f"{where}: materialized must be 'table' or 'incremental'")
    return Parsed(config, body.rstrip() + "\n", changed)


def _config(args: str, where: str) -> Config:
    try:
        call = ast.parse(f"config({args})", mode="eval").body
        values = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as exc:
        raise IncrementalError(f"{where}: config(...) must be keyword=literal pairs: {exc}") from None
    unknown = set(values) - {"materialized", "unique_key"}
    if unknown:
        raise IncrementalError(f"{where}: unknown config {sorted(unknown)}")
    key = values.get("unique_key", ())
    return Config(values.get("materialized", "table"), (key,) if isinstance(key, str) else tuple(key))


def references(block: str) -> list[tuple[str, str]]:
    """The (schema, table) of every `{{ changes('schema.table') }}` in a block."""
    return sorted(set(CHANGES.findall(block)))


def plain(block: str) -> str:
    """The block with `changes('t')` read as the whole table `t` (to find its dependencies)."""
    return CHANGES.sub(lambda m: f"{m.group(1)}.{m.group(2)}", block)


def fingerprint(sql: str, files: list[Path]) -> str:
    """What a model's rows depend on besides its inputs' rows: its SQL and the seed files it reads."""
    digest = hashlib.sha256(sql.encode())
    for path in sorted(files):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def log_table(layer: str, name: str) -> str:
    return quote(SCHEMA, f"changes__{layer}__{name}")


# ---- state ------------------------------------------------------------------------------------

_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.build_seq (seq BIGINT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.model_state (model VARCHAR PRIMARY KEY, fingerprint VARCHAR,
        last_seq BIGINT, full_seq BIGINT, marks VARCHAR)""",
]


@dataclass
class State:
    fingerprint: str
    last_seq: int
    full_seq: int
    marks: dict[str, str | int]


def ensure_state(con: Connection) -> None:
    with con.transaction():
        con.lock_ddl()
        for ddl in _DDL:
            con.execute(ddl)
        if con.scalar(f"SELECT count(*) FROM {SCHEMA}.build_seq") == 0:
            con.execute(f"INSERT INTO {SCHEMA}.build_seq VALUES (0)")


def next_seq(con: Connection) -> int:
    """The next build number (inside the caller's transaction: a rolled-back build gives it back)."""
    con.execute(f"UPDATE {SCHEMA}.build_seq SET seq = seq + 1")
    return int(con.scalar(f"SELECT seq FROM {SCHEMA}.build_seq"))


def read_state(con: Connection, model: str) -> State | None:
    rows = con.rows(
        f"SELECT fingerprint, last_seq, full_seq, marks FROM {SCHEMA}.model_state WHERE model = ?", [model]
    )
    if not rows:
        return None
    fp, last, full, marks = rows[0]
    return State(fp, int(last), int(full), json.loads(marks or "{}"))


def save_state(con: Connection, model: str, state: State) -> None:
    con.execute(f"DELETE FROM {SCHEMA}.model_state WHERE model = ?", [model])
    con.execute(
        f"INSERT INTO {SCHEMA}.model_state VALUES (?, ?, ?, ?, ?)",
        [model, state.fingerprint, state.last_seq, state.full_seq, json.dumps(state.marks, sort_keys=True)],
    )


# ---- one build's window on its inputs ------------------------------------------------------------


@dataclass
class Window:
    """What one build reads: in full, or the changes of each referenced table in (low, high]."""

    full: bool
    reason: str
    low: dict[str, str | int] = field(default_factory=dict)
    high: dict[str, str | int] = field(default_factory=dict)

    def expand(self, block: str) -> str:
        """The changed-keys block with each `changes('t')` as the subquery of t's changes."""

        def changes(match: re.Match) -> str:
            schema, table = match.group(1), match.group(2)
            name = f"{schema}.{table}"
            if schema.startswith("raw_"):
                return (
                    f"(SELECT * FROM {quote(schema, table)} WHERE {RAW_MARK} > {literal(str(self.low[name]))} "
                    f"AND {RAW_MARK} <= {literal(str(self.high[name]))})"
                )
            return (
                f"(SELECT * FROM {log_table(schema, table)} WHERE _seq > {int(self.low[name])} "
                f"AND _seq <= {int(self.high[name])})"
            )

        return CHANGES.sub(changes, block)


def window(
    con: Connection,
    model: str,
    refs: list[tuple[str, str]],
    fp: str,
    exists: bool,
    full: bool = False,
    watch: list[str] = (),
) -> Window:
    """Whether `model` can build from changes, and the range of changes of each table it reads.

    `watch` names other hub-built tables it reads without reading their changes (a model that
    is not incremental, say): rebuilt in full since, they make this build full too."""
    state = read_state(con, model)
    watch = [w for w in watch if w not in {f"{s}.{t}" for s, t in refs}]
    high = {f"{s}.{t}": _high(con, s, t) for s, t in [*refs, *(tuple(w.split(".", 1)) for w in watch)]}
    reason = (
        "asked for a full build" if full
        else "first build" if state is None or not exists
        else "its SQL file or a seed it reads changed" if state.fingerprint != fp
        else None
    )  # fmt: skip
    if reason is None:
        for schema, table in refs:
            name = f"{schema}.{table}"
            low = state.marks.get(name)
            if low is None:
                reason = f"it did not read {name} before"
            elif schema.startswith("raw_") and high[name] is None:
                reason = f"{name} has no {RAW_MARK} to tell its changes by"
            elif schema.startswith("raw_"):
                oldest = con.scalar(f"SELECT min({RAW_MARK}) FROM {quote(schema, table)}")
                if oldest is not None and str(oldest) > str(low):
                    reason = f"{name} was reloaded whole since"
            elif (upstream := read_state(con, name)) is None or upstream.full_seq > int(low):
                reason = f"{name} was rebuilt in full since"
            if reason:
                break
    for name in watch if reason is None else ():
        low, upstream = state.marks.get(name), read_state(con, name)
        if low is None or upstream is None or upstream.full_seq > int(low):
            reason = f"{name} was rebuilt in full since"
            break
    if reason:
        return Window(True, reason, high=high)
    return Window(False, "changes since the last build", low=dict(state.marks), high=high)


def _high(con: Connection, schema: str, table: str) -> str | int | None:
    """The newest change of a table now: its newest dlt load id ('' when empty, None when some
    row has none), or its last logged build."""
    if schema.startswith("raw_"):
        has_mark = con.rows(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = ? AND table_name = ? AND column_name = ?",
            [schema, table, RAW_MARK],
        )
        newest, unmarked = con.rows(
            f"SELECT max({RAW_MARK}), count(*) - count({RAW_MARK}) FROM {quote(schema, table)}"
        )[0] if has_mark else (None, 1)  # fmt: skip
        if unmarked:  # rows no load id tells apart: changes cannot be found by it
            return None
        return str(newest or "")
    state = read_state(con, f"{schema}.{table}")
    return state.last_seq if state else 0


def log_keys(con: Connection, layer: str, name: str, keys: str, seq: int) -> None:
    """Append the keys of relation `keys` to the model's change log under build `seq`."""
    table = log_table(layer, name)
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {table} AS SELECT *, CAST(0 AS BIGINT) AS _seq FROM {keys} WHERE 1 = 0"
    )
    con.execute(f"INSERT INTO {table} SELECT *, {int(seq)} FROM {keys}")


def finish(con: Connection, model: str, fp: str, seq: int, win: Window) -> None:
    """Record a build: its number, whether it was full, and the watermarks it read up to."""
    before = read_state(con, model)
    full_seq = seq if win.full or before is None else before.full_seq
    save_state(con, model, State(fp, seq, full_seq, dict(win.high)))
