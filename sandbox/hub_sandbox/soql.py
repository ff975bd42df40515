"""The SOQL subset the CRM stand-in answers, parsed strictly into SQL over its record store.

    SELECT COUNT() | field[, field…] FROM Account | Contact
    [WHERE field op literal [AND field op literal…]]
    [ORDER BY SystemModstamp | LastModifiedDate | Id [ASC | DESC][, …]]
    [LIMIT n]

`op` is one of = != <> < <= > >=; a literal is a 'quoted string', a dateTime
(`2026-10-01T00:00:00Z` or with a `+hh:mm` offset), a number, true, false or null. Anything
else is refused as Salesforce refuses it: `MALFORMED_QUERY`, or `INVALID_FIELD` for a field
the object does not have. Records are always ordered by (SystemModstamp, Id), so paging is
stable while the business ticks on; `SystemModstamp` and `LastModifiedDate` are the store's
`updated_at` (every change here is a user's, so the two never differ).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from hub_sandbox.api import TS_FORMAT

OBJECTS = {"account": ("Account", "accounts"), "contact": ("Contact", "contacts")}
SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
FIELDS = {
    "Account": SYSTEM_FIELDS + ("AccountNumber", "Name", "Email__c", "Phone", "BillingCountry", "Industry",
                                "Lifetime_Value__c", "Last_Order_Date__c"),
    "Contact": SYSTEM_FIELDS + ("AccountId", "FirstName", "LastName", "Email", "Phone"),
}  # fmt: skip
STAMPS = {"SystemModstamp", "LastModifiedDate"}  # the store's `updated_at`
ORDERABLE = STAMPS | {"Id"}
OPERATORS = {"=": "IS", "!=": "IS NOT", "<>": "IS NOT", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
TOKEN = re.compile(r"\s*(?:('(?:[^'\\]|\\.)*')|(!=|<>|>=|<=|=|<|>)|([(),])|([A-Za-z0-9_.:+\-]+))")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class SoqlError(ValueError):
    """A query the subset refuses; `code` is Salesforce's error code for it."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: object


@dataclass(frozen=True)
class Query:
    sobject: str  # Account | Contact
    resource: str  # the store's resource
    fields: tuple[str, ...] | None  # None: SELECT COUNT()
    where: tuple[Condition, ...]
    descending: bool
    limit: int | None


def parse(text: str) -> Query:
    """The query, or a `SoqlError` saying what is wrong."""
    tokens = _tokens(text)
    pos = 0

    def peek(offset: int = 0) -> str | None:
        return tokens[pos + offset] if pos + offset < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = peek()
        if token is None or (expected is not None and token.upper() != expected):
            raise _malformed(
                f"expected {expected or 'more'} at {' '.join(tokens[pos : pos + 3]) or 'the end'}"
            )
        pos += 1
        return token

    take("SELECT")
    raw_fields: list[str] | None = []
    if (peek() or "").upper() == "COUNT" and peek(1) == "(" and peek(2) == ")":
        pos, raw_fields = pos + 3, None
    else:
        raw_fields.append(take())
        while peek() == ",":
            take(",")
            raw_fields.append(take())
    take("FROM")
    name = take()
    if name.lower() not in OBJECTS:
        raise SoqlError(
            "INVALID_TYPE", f"sObject type '{name}' is not supported. (this CRM has Account and Contact)"
        )
    sobject, resource = OBJECTS[name.lower()]
    fields = None if raw_fields is None else tuple(_field(sobject, f) for f in raw_fields)
    where: list[Condition] = []
    if (peek() or "").upper() == "WHERE":
        take("WHERE")
        while True:
            field = _field(sobject, take())
            op = take()
            if op not in OPERATORS:
                raise _malformed(f"expected a comparison operator after {field}, got {op!r}")
            where.append(Condition(field, op, _literal(field, take())))
            if (peek() or "").upper() != "AND":
                break
            take("AND")
    descending = False
    if (peek() or "").upper() == "ORDER":
        take("ORDER")
        take("BY")
        directions = set()
        while True:
            field = _field(sobject, take())
            if field not in ORDERABLE:
                raise _malformed(f"ORDER BY takes {', '.join(sorted(ORDERABLE))} here, not {field}")
            direction = "ASC"
            if (peek() or "").upper() in ("ASC", "DESC"):
                direction = take().upper()
            directions.add(direction)
            if peek() != ",":
                break
            take(",")
        if len(directions) > 1:
            raise _malformed("ORDER BY fields must all go the same direction here")
        descending = directions == {"DESC"}
    limit = None
    if (peek() or "").upper() == "LIMIT":
        take("LIMIT")
        value = take()
        if not value.isdigit():
            raise _malformed(f"LIMIT takes a whole number, not {value!r}")
        limit = int(value)
    if peek() is not None:
        raise _malformed(f"unexpected token: '{peek()}'")
    return Query(sobject, resource, fields, tuple(where), descending, limit)


def sql_filter(query: Query) -> tuple[str, list]:
    """The WHERE conditions as SQL over `records` (column `updated_at`, JSON `body`) and arguments."""
    parts, args = [], []
    for c in query.where:
        op = OPERATORS[c.op]
        if c.field in STAMPS:
            if c.value is None:
                raise _malformed(f"{c.field} cannot be compared with null here")
            column = "updated_at"
            if op in ("IS", "IS NOT"):
                op = "=" if op == "IS" else "!="
        elif c.field == "IsDeleted":
            column = "coalesce(json_extract(body, '$.IsDeleted'), 0)"
        else:
            column = f"json_extract(body, '$.{c.field}')"
        value = int(c.value) if isinstance(c.value, bool) else c.value
        parts.append(f"{column} {op} ?")
        args.append(value)
    return " AND ".join(parts), args


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise _malformed(f"unexpected character at position {pos}: {text[pos : pos + 10]!r}")
        tokens.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return tokens


def _field(sobject: str, name: str) -> str:
    """The field's own spelling (SOQL names are case-insensitive), or INVALID_FIELD."""
    for field in FIELDS[sobject]:
        if field.lower() == name.lower():
            return field
    raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'.")


def _literal(field: str, token: str) -> object:
    lowered = token.lower()
    if lowered == "null":
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if token.startswith("'"):
        if field in STAMPS:
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{field}' must be of type dateTime and should not be enclosed in quotes",
            )
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    if DATETIME.match(token):
        stamp = dt.datetime.fromisoformat(token.replace("Z", "+00:00")).astimezone(dt.UTC)
        return stamp.strftime(TS_FORMAT)
    if NUMBER.match(token):
        return float(token) if "." in token else int(token)
    raise _malformed(f"not a literal: {token!r}")


def _malformed(message: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", message)
