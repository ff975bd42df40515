"""Who may read and write the Postgres warehouse: the hub's three roles and their grants.

- the **writer** runs the hub (`HUB_WAREHOUSE_URL` logs in as it): it owns every hub schema and
  table, so its builds can create, swap and drop them; it is the only role that can write;
- the **analyst** reads canonical and recon only through views in `analyst_canonical` and
  `analyst_recon`, where every column the canonical model flags as personal data
  (`engine/pii.py`) reads `•••`; it cannot reach the tables under them, nor raw, staging,
  sync, audit or quarantine;
- the **auditor** reads the audit schema and the reverse syncs' changelog, nothing else.

`apply` makes the database say exactly that, every time it runs (idempotent): what it grants
is granted, what another grant gave these roles beyond it is revoked. What keeps it true
between runs of `apply`:
- tables the writer creates in `audit` and views it creates in the analyst schemas are
  readable by their role at once (default privileges);
- a table the hub rebuilds is swapped in one transaction that creates the views on it again
  with their owner and grants (`model_build._swap`); the analyst's view of it is derived anew
  from the new table's columns (`views_after_swap`), and a canonical table swapped in for the
  first time gets one, so a model's new or dropped column never leaves a view behind;
- a recon table that did not exist when `apply` ran (a new flow's findings) has no analyst
  view until `apply` runs again.

Postgres only: an embedded DuckDB file has one user, the owner of the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from integration_hub import settings
from integration_hub.engine import pii
from integration_hub.engine.dependent_views import View
from integration_hub.warehouse import Connection, Warehouse, literal, quote

AUDIT_SCHEMA = "audit"
MASKED_LAYERS = ("canonical", "recon")
VIEW_SCHEMA = "analyst_{layer}"
# The schemas the hub writes (raw_<system>, dlt's raw_<system>_staging, every layer, the
# incremental state): the writer owns them; nobody else is granted anything in them but below.
LAYER_SCHEMAS = ("staging", "canonical", "recon", "sync", "audit", "quarantine", "seeds", "_hub")
RAW_PREFIX = "raw_"
# Tables of a build in progress or its key logs: never given an analyst view.
_NOT_SERVED = re.compile(r"^(_build_|changes__|_dlt_)")
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_WRITE = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")


class AccessError(RuntimeError):
    """The roles cannot be applied as configured; the message says which setting to change."""


@dataclass(frozen=True)
class Role:
    kind: str  # writer, analyst, auditor
    name: str
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Roles:
    """The three roles, named by the environment (`settings.access_role`) or by a prefix (tests)."""

    writer: Role
    analyst: Role
    auditor: Role

    @classmethod
    def from_env(cls) -> Roles:
        return cls(*(Role(kind, *settings.access_role(kind)) for kind in settings.ACCESS_KINDS))

    @classmethod
    def prefixed(cls, prefix: str, passwords: dict[str, str] | None = None) -> Roles:
        passwords = passwords or {}
        return cls(*(Role(k, f"{prefix}{k}", passwords.get(k)) for k in settings.ACCESS_KINDS))

    def __iter__(self) -> Iterator[Role]:
        return iter((self.writer, self.analyst, self.auditor))

    def check(self) -> None:
        names = [r.name for r in self]
        for role in self:
            if not _ROLE_NAME.match(role.name):
                raise AccessError(
                    f"HUB_ACCESS_{role.kind.upper()}_ROLE={role.name!r} is not a plain role name: "
                    "use lower-case letters, digits and '_' (at most 63)"
                )
        if len(set(names)) != len(names):
            raise AccessError(f"the writer, analyst and auditor roles must differ (got {names})")


def view_schema(layer: str) -> str:
    return VIEW_SCHEMA.format(layer=layer)


def hub_schemas(con: Connection) -> list[str]:
    """The hub's schemas present in the database: its layers, raw_<system> and the analyst views."""
    wanted = (*LAYER_SCHEMAS, *(view_schema(layer) for layer in MASKED_LAYERS))
    return [
        s
        for (s,) in con.rows("SELECT nspname FROM pg_namespace ORDER BY nspname")
        if s in wanted or s.startswith(RAW_PREFIX)
    ]


def masked_select(con: Connection, layer: str, table: str) -> tuple[str, list[str]]:
    """The analyst view's SELECT over `layer.table` and the columns it masks."""
    columns = [
        c
        for (c,) in con.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [layer, table],
        )
    ]
    hidden = pii.personal_columns(layer, table, columns)
    parts = [
        f"CASE WHEN {quote(c)} IS NULL THEN NULL ELSE {literal(pii.MASK)} END AS {quote(c)}"
        if c in hidden
        else quote(c)
        for c in columns
    ]
    return f"SELECT {', '.join(parts)} FROM {quote(layer, table)}", sorted(hidden)


def apply(warehouse: Warehouse, roles: Roles) -> dict:
    """Create the roles if missing and set every grant as the module docstring says; returns what
    it did (no secret). The connection must be allowed to create roles and to give the hub's
    tables to the writer (a superuser, or a CREATEROLE role that owns them and is a member of the writer)."""
    if warehouse.dialect != "postgres":
        raise AccessError(
            "access roles need the Postgres warehouse (HUB_WAREHOUSE_URL or HUB_ACCESS_ADMIN_URL); "
            "the embedded DuckDB file is protected by its file permissions (docs/security.md)"
        )
    roles.check()
    # Imported here: `model_build._swap` imports this module, and needs none of the syncs.
    from integration_hub.engine.sync_engine.declaration import CHANGELOG, ensure_tables

    ensure_tables(warehouse)  # the changelog exists before it is granted
    with warehouse.connect() as con, con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(hashtext('integration_hub.access'))")
        _ensure_roles(con, roles)
        w, readers = quote(roles.writer.name), f"{quote(roles.analyst.name)}, {quote(roles.auditor.name)}"
        database = quote(con.scalar("SELECT current_database()"))
        con.execute(f"GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {database} TO {w}")
        con.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {readers}")
        con.execute(f"REVOKE CREATE ON DATABASE {database} FROM {readers}")
        con.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for schema in (*LAYER_SCHEMAS, *(view_schema(layer) for layer in MASKED_LAYERS)):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        schemas = hub_schemas(con)
        owned = _give_to_writer(con, schemas, roles.writer.name)
        for schema in schemas:  # start from nothing: a grant made by hand beyond this is taken back
            s = quote(schema)
            con.execute(f"REVOKE ALL ON SCHEMA {s} FROM PUBLIC, {readers}")
            con.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC, {readers}")
            con.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {w} IN SCHEMA {s} REVOKE ALL ON TABLES FROM {readers}"
            )
        auditor = quote(roles.auditor.name)
        con.execute(f"GRANT USAGE ON SCHEMA {quote(AUDIT_SCHEMA)} TO {auditor}")
        con.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {quote(AUDIT_SCHEMA)} TO {auditor}")
        con.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {w} IN SCHEMA {quote(AUDIT_SCHEMA)} GRANT SELECT ON TABLES TO {auditor}"
        )
        sync_schema, changelog = CHANGELOG.split(".")
        con.execute(f"GRANT USAGE ON SCHEMA {quote(sync_schema)} TO {auditor}")
        con.execute(f"GRANT SELECT ON {quote(sync_schema, changelog)} TO {auditor}")
        views = {layer: _masked_views(con, layer, roles) for layer in MASKED_LAYERS}
    return {
        "database": warehouse.display_name,
        "roles": {r.kind: r.name for r in roles},
        "passwords_set": [r.kind for r in roles if r.password],
        "schemas": schemas,
        "ownership_given_to_writer": owned,
        "analyst_views": views,
    }


def _ensure_roles(con: Connection, roles: Roles) -> None:
    for role in roles:
        name = quote(role.name)
        found = con.rows(
            "SELECT rolsuper, rolname = current_user FROM pg_roles WHERE rolname = ?", [role.name]
        )
        if found and (found[0][0] or found[0][1]):
            raise AccessError(
                f"HUB_ACCESS_{role.kind.upper()}_ROLE names {role.name!r}, a superuser or the role applying "
                "the grants: name a dedicated role, which the hub creates"
            )
        if not found:
            con.execute(f"CREATE ROLE {name}")
        con.execute(f"ALTER ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
        if role.password:
            # The server receives a SCRAM verifier, never the password (statement logs cannot show it).
            verifier = con.raw.pgconn.encrypt_password(
                role.password.encode(), role.name.encode(), b"scram-sha-256"
            ).decode()
            con.execute(f"ALTER ROLE {name} PASSWORD {literal(verifier)}")
    # Membership in another hub role would hand over its rights (a writer granted to the analyst).
    names = [r.name for r in roles]
    for granted, member in con.rows(
        "SELECT pg_get_userbyid(roleid), pg_get_userbyid(member) FROM pg_auth_members "
        "WHERE pg_get_userbyid(roleid) = ANY(?) AND pg_get_userbyid(member) = ANY(?)",
        [names, names],
    ):
        con.execute(f"REVOKE {quote(granted)} FROM {quote(member)}")


_KINDS = {
    "r": "TABLE",
    "p": "TABLE",
    "f": "FOREIGN TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "S": "SEQUENCE",
}


def _give_to_writer(con: Connection, schemas: list[str], writer: str) -> int:
    """Make the writer the owner of the hub's schemas and everything in them; returns how many
    objects changed owner. Owned sequences follow their table."""
    count = 0
    for schema in schemas:
        if (
            con.scalar("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = ?", [schema])
            != writer
        ):
            con.execute(f"ALTER SCHEMA {quote(schema)} OWNER TO {quote(writer)}")
            count += 1
        objects = con.rows(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ? AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') "
            "AND pg_get_userbyid(c.relowner) <> ? AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d "
            "WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))) "
            "ORDER BY c.relkind = 'S', c.relname",
            [schema, writer],
        )
        for name, kind in objects:
            con.execute(f"ALTER {_KINDS[kind]} {quote(schema, name)} OWNER TO {quote(writer)}")
            count += 1
    return count


def _masked_views(con: Connection, layer: str, roles: Roles) -> dict[str, list[str]]:
    """Create or update one masked view per table of `layer`, drop views whose table is gone;
    returns {view: masked columns}."""
    target, writer, analyst = view_schema(layer), quote(roles.writer.name), quote(roles.analyst.name)
    tables = [
        t
        for (t,) in con.rows(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ? AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1",
            [layer],
        )
        if not _NOT_SERVED.match(t)
    ]
    existing = {v for (v,) in con.rows("SELECT viewname FROM pg_views WHERE schemaname = ?", [target])}
    for stale in sorted(existing - set(tables)):
        con.execute(f"DROP VIEW {quote(target, stale)}")
    made = {}
    for table in tables:
        sql, hidden = masked_select(con, layer, table)
        view = quote(target, table)
        con.execute("SAVEPOINT masked_view")
        try:  # in place, so views others built on it stay; a changed column list needs a new view
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {sql}")
        except Exception:
            con.execute("ROLLBACK TO SAVEPOINT masked_view")
            con.execute(f"DROP VIEW IF EXISTS {view}")
            con.execute(f"CREATE VIEW {view} AS {sql}")
        con.execute("RELEASE SAVEPOINT masked_view")
        con.execute(f"ALTER VIEW {view} OWNER TO {writer}")
        con.execute(_comment(layer, table, hidden))
        made[f"{target}.{table}"] = hidden
    s = quote(target)
    con.execute(f"GRANT USAGE ON SCHEMA {s} TO {analyst}")
    con.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {analyst}")
    con.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {writer} IN SCHEMA {s} GRANT SELECT ON TABLES TO {analyst}"
    )
    return made


def _comment(layer: str, table: str, hidden: list[str]) -> str:
    note = f"{layer}.{table} for analysts; personal data masked: {', '.join(hidden) or 'none'}"
    return f"COMMENT ON VIEW {quote(view_schema(layer), table)} IS {literal(note)}"


def views_after_swap(con: Connection, layer: str, table: str, views: list[View]) -> list[View]:
    """The views to create on `layer.table` just swapped in (Postgres), given those that read the
    old one: the analyst's view of it derived from the new table's columns, or a new one when
    `apply` has set up the layer's analyst schema and the table had none. Readable by whoever
    may use that schema (the analyst), owned by the schema's owner (the writer)."""
    if layer not in MASKED_LAYERS or _NOT_SERVED.match(table):
        return views
    target = view_schema(layer)
    owner = con.scalar("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = ?", [target])
    if owner is None:  # `apply` never ran here: no analyst schema, no analyst view
        return views
    sql, hidden = masked_select(con, layer, table)
    comment = _comment(layer, table, hidden)
    for i, view in enumerate(views):
        if (view.schema, view.name) == (target, table):
            kept = tuple(s for s in view.statements if not s.startswith("COMMENT ON"))
            return [*views[:i], replace(view, definition=sql, statements=(*kept, comment)), *views[i + 1 :]]
    readers = con.rows(
        "SELECT quote_ident(pg_get_userbyid(a.grantee)) FROM pg_namespace n, aclexplode(n.nspacl) a "
        "WHERE n.nspname = ? AND a.privilege_type = 'USAGE' AND a.grantee NOT IN (0, n.nspowner)",
        [target],
    )
    grants = tuple(f"GRANT SELECT ON {quote(target, table)} TO {r}" for (r,) in readers)
    return [*views, View(target, table, False, sql, owner, (*grants, comment))]


def show(warehouse: Warehouse, roles: Roles) -> list[dict]:
    """What each role can read and write now, from the database's own catalog (not from what
    `apply` meant): per role, whether it exists and may log in, and its readable and writable
    tables by schema (`public` and system schemas left out)."""
    if warehouse.dialect != "postgres":
        raise AccessError(
            "access roles need the Postgres warehouse (HUB_WAREHOUSE_URL or HUB_ACCESS_ADMIN_URL); "
            "the embedded DuckDB file is protected by its file permissions (docs/security.md)"
        )
    roles.check()
    report = []
    with warehouse.connect() as con:
        for role in roles:
            found = con.rows("SELECT rolcanlogin FROM pg_roles WHERE rolname = ?", [role.name])
            entry = {"kind": role.kind, "role": role.name, "exists": bool(found),
                     "login": bool(found and found[0][0]), "read": {}, "write": {}, "masked": {}}  # fmt: skip
            if found:
                rows = con.rows(
                    "SELECT n.nspname, c.relname, "
                    "has_schema_privilege(?::name, n.oid, 'USAGE') AND has_table_privilege(?::name, c.oid, 'SELECT'), "
                    "has_schema_privilege(?::name, n.oid, 'USAGE') AND (" + " OR ".join(
                        f"has_table_privilege(?::name, c.oid, '{p}')" for p in _WRITE) + ") "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND n.nspname NOT IN ('information_schema', 'public') "
                    "AND n.nspname !~ '^pg_' ORDER BY 1, 2",
                    [role.name] * (3 + len(_WRITE)),
                )  # fmt: skip
                for schema, table, read, write in rows:
                    if read:
                        entry["read"].setdefault(schema, []).append(table)
                    if write:
                        entry["write"].setdefault(schema, []).append(table)
                for layer in MASKED_LAYERS:
                    for table in entry["read"].get(view_schema(layer), []):
                        if con.scalar("SELECT to_regclass(?)", [quote(layer, table)]) is not None:
                            entry["masked"][f"{view_schema(layer)}.{table}"] = masked_select(
                                con, layer, table
                            )[1]
            report.append(entry)
    return report
