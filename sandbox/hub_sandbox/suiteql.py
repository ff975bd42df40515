"""The SuiteQL subset the ERP stand-in answers, parsed strictly into SQL over the ERP's tables.

    SELECT item[, item…] FROM customer | item | transaction | transactionline
    [WHERE field op value [AND field op value…]]
    [ORDER BY field [ASC | DESC][, …]]

An item is a `field` or `TO_CHAR(field, 'fmt')`, either with an optional `AS alias`; `op` is
one of = != <> < <= > >=; a value is a 'quoted string', a number or `TO_TIMESTAMP('text',
'fmt')`. The formats are 'YYYY-MM-DD HH24:MI:SS' and 'YYYY-MM-DD'. A date or date-time
selected without TO_CHAR answers NetSuite's default date format (`M/D/YYYY`, no time).
Anything else is refused as NetSuite refuses a query: 400 `INVALID_PARAMETER`, "Invalid
search query". Records and fields are the hub's SuiteQL mapping (`integration_hub.systems.erp.
SUITEQL`), plus the constants that scope it (`transaction.type` is always 'SalesOrd',
`transactionline.mainline` always 'F': the stand-in's ERP holds sales orders and item lines only).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pyarrow as pa

from integration_hub.systems.erp import PRIMARY_KEYS, SUITEQL

# record -> (ERP table, SuiteQL field -> (ERP column, Arrow type))
RECORDS = {
    spec.name: (table, {field: (column, kind) for column, (field, kind) in spec.fields.items()})
    for table, spec in SUITEQL.items()
}
CONSTANTS = {"transaction": {"type": "SalesOrd"}, "transactionline": {"mainline": "F"}}
FORMATS = {"YYYY-MM-DD HH24:MI:SS": "%Y-%m-%d %H:%M:%S", "YYYY-MM-DD": "%Y-%m-%d"}
OPERATORS = {"=": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
STATEMENT = re.compile(
    r"^\s*SELECT\s+(?P<items>.+?)\s+FROM\s+(?P<record>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>.+?))?\s*$",
    re.I | re.S,
)
ITEM = re.compile(
    r"\s*(?:TO_CHAR\(\s*(?P<char>\w+)\s*,\s*'(?P<fmt>[^']*)'\s*\)|(?P<field>\w+))"
    r"(?:\s+AS\s+(?P<alias>\w+))?\s*(?:,|$)",
    re.I,
)
CONDITION = re.compile(
    r"\s*(?P<field>\w+)\s*(?P<op>>=|<=|<>|!=|=|<|>)\s*"
    r"(?:TO_TIMESTAMP\(\s*'(?P<ts>[^']*)'\s*,\s*'(?P<fmt>[^']*)'\s*\)|'(?P<text>(?:[^']|'')*)'|(?P<num>-?\d+(?:\.\d+)?))"
    r"\s*(?:\bAND\b|$)",
    re.I,
)
ORDER = re.compile(r"\s*(?P<field>\w+)(?:\s+(?P<dir>ASC|DESC))?\s*(?:,|$)", re.I)


class SuiteqlError(ValueError):
    """A query the subset refuses; the message is NetSuite's error detail."""


@dataclass(frozen=True)
class Column:
    name: str  # as the answer names it (the field, its alias, or exprN)
    sql: str  # the ERP column (quoted) or a constant
    kind: pa.DataType
    fmt: str | None  # a strftime format from TO_CHAR; None = the value as text


@dataclass(frozen=True)
class Query:
    table: str  # the ERP table
    columns: tuple[Column, ...]
    where: str  # SQL, "?" placeholders
    args: tuple
    order: str  # SQL


def _fail(detail: str) -> SuiteqlError:
    return SuiteqlError(f"Invalid search query. Detailed unprocessed description follows. {detail}")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _scan(pattern: re.Pattern, text: str, what: str) -> list[re.Match]:
    """Every match of `pattern` laid end to end over `text`, or an error naming what it could not read."""
    found, pos = [], 0
    while pos < len(text):
        match = pattern.match(text, pos)
        if match is None or match.end() == pos:
            raise _fail(f"Search error occurred: cannot read the {what} at {text[pos : pos + 40]!r}.")
        found.append(match)
        pos = match.end()
    return found


def parse(text: str) -> Query:
    statement = STATEMENT.match(text or "")
    if statement is None:
        raise _fail("Search error occurred: only SELECT … FROM record [WHERE …] [ORDER BY …] is supported.")
    record = statement["record"].lower()
    if record not in RECORDS:
        raise _fail(f"Search error occurred: Record '{statement['record']}' was not found.")
    table, fields = RECORDS[record]
    constants = CONSTANTS.get(record, {})

    def field_of(name: str) -> tuple[str, pa.DataType]:
        name = name.lower()
        if name in constants:
            return f"'{constants[name]}'", pa.string()
        if name not in fields:
            raise _fail(f"Search error occurred: Field '{name}' for record '{record}' was not found.")
        return _ident(fields[name][0]), fields[name][1]

    columns = []
    for n, item in enumerate(_scan(ITEM, statement["items"], "select list"), start=1):
        name = item["char"] or item["field"]
        sql, kind = field_of(name)
        fmt = None
        if item["char"]:
            if item["fmt"] not in FORMATS:
                raise _fail(f"Search error occurred: unsupported TO_CHAR format '{item['fmt']}'.")
            fmt = FORMATS[item["fmt"]]
        default_name = name.lower() if not item["char"] else f"expr{n}"
        columns.append(Column((item["alias"] or default_name).lower(), sql, kind, fmt))

    clauses, args = [], []
    for cond in _scan(CONDITION, statement["where"] or "", "condition"):
        sql, kind = field_of(cond["field"])
        if cond["ts"] is not None:
            if cond["fmt"] not in FORMATS:
                raise _fail(f"Search error occurred: unsupported TO_TIMESTAMP format '{cond['fmt']}'.")
            try:
                value = dt.datetime.strptime(cond["ts"], FORMATS[cond["fmt"]])
            except ValueError:
                raise _fail(
                    f"Search error occurred: '{cond['ts']}' does not match '{cond['fmt']}'."
                ) from None
            if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
                raise _fail(f"Search error occurred: Field '{cond['field']}' is not a date.")
        elif cond["text"] is not None:
            value = cond["text"].replace("''", "'")
        else:
            value = float(cond["num"]) if "." in cond["num"] else int(cond["num"])
        clauses.append(f"{sql} {OPERATORS[cond['op']]} ?")
        args.append(value)

    if statement["order"]:
        order = ", ".join(
            f"{field_of(o['field'])[0]} {(o['dir'] or 'ASC').upper()}"
            for o in _scan(ORDER, statement["order"], "ORDER BY list")
        )
    else:  # NetSuite promises no order; a stable one keeps offset paging exact
        order = ", ".join(_ident(k) for k in PRIMARY_KEYS[table])
    return Query(table, tuple(columns), " AND ".join(clauses), tuple(args), order)


def render(value, column: Column) -> str | None:
    """A stored value as SuiteQL answers it: text, dates in the TO_CHAR format or `M/D/YYYY`."""
    if value is None:
        return None
    if pa.types.is_timestamp(column.kind) or pa.types.is_date(column.kind):
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        elif not isinstance(value, dt.datetime):  # a date (Postgres)
            value = dt.datetime(value.year, value.month, value.day)
        return value.strftime(column.fmt) if column.fmt else f"{value.month}/{value.day}/{value.year}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if pa.types.is_integer(column.kind) else repr(value)
    return str(value)
