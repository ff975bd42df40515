"""The Postgres views that read a table about to be replaced, as they must be created again.

Analysts' and BI tools' views (plain or materialized, reading the table directly or through
other views) would block dropping a canonical table on Postgres. `dependent_views` finds them
with everything needed to create them again on the new table in the same transaction: their
definition, owner, grants, comment and, for materialized views, indexes. DuckDB binds views
by name when they are queried, so it needs none of this.
"""

from __future__ import annotations

from dataclasses import dataclass

from integration_hub.warehouse import Connection, literal, quote


@dataclass(frozen=True)
class View:
    """A Postgres view (or materialized view) as it must be created again."""

    schema: str
    name: str
    materialized: bool
    definition: str
    owner: str
    statements: tuple[str, ...]  # grants, comment, indexes

    def create(self, con: Connection) -> None:
        kind = "MATERIALIZED VIEW" if self.materialized else "VIEW"
        qualified = quote(self.schema, self.name)
        try:
            con.execute(f"CREATE {kind} {qualified} AS {self.definition}")
            if self.owner != con.scalar("SELECT current_user"):
                con.execute(f"ALTER {kind} {qualified} OWNER TO {quote(self.owner)}")
            for statement in self.statements:
                con.execute(statement)
        except Exception as exc:
            raise RuntimeError(
                f"the view {self.schema}.{self.name}, which reads the table being replaced, cannot be "
                f"created again on the new table ({str(exc).strip().splitlines()[0]}); the old table and "
                "its views are kept: change or drop the view, or the model, then rebuild"
            ) from exc


def dependent_views(con: Connection, schema: str, table: str) -> list[View]:
    """The views that read `schema.table`, directly or through each other, in creation order."""
    found = con.rows(
        """
        WITH RECURSIVE deps(oid, depth) AS (
            SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
            WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = to_regclass(?)
              AND r.ev_class <> d.refobjid
            UNION
            SELECT r.ev_class, deps.depth + 1 FROM deps
            JOIN pg_depend d ON d.refobjid = deps.oid AND d.classid = 'pg_rewrite'::regclass
            JOIN pg_rewrite r ON r.oid = d.objid
            WHERE r.ev_class <> d.refobjid
        )
        SELECT c.oid, n.nspname, c.relname, c.relkind = 'm', pg_get_viewdef(c.oid),
               pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'), max(deps.depth)
        FROM deps JOIN pg_class c ON c.oid = deps.oid JOIN pg_namespace n ON n.oid = c.relnamespace
        GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY max(deps.depth), 2, 3
        """,
        [quote(schema, table)],
    )
    views = []
    for oid, view_schema, name, materialized, definition, owner, comment, _ in found:
        kind = "MATERIALIZED VIEW" if materialized else "VIEW"
        qualified = quote(view_schema, name)
        grants = con.rows(
            "SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END "
            "FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE c.oid = ? AND a.grantee <> c.relowner",
            [oid],
        )
        statements = [f"GRANT {privilege} ON {qualified} TO {grantee}" for privilege, grantee in grants]
        if comment is not None:
            statements.append(f"COMMENT ON {kind} {qualified} IS {literal(comment)}")
        if materialized:
            statements += [
                d for (d,) in con.rows("SELECT indexdef FROM pg_indexes WHERE schemaname = ? AND tablename = ?",
                                       [view_schema, name])
            ]  # fmt: skip
        definition = definition.strip().removesuffix(";")
        views.append(View(view_schema, name, materialized, definition, owner, tuple(statements)))
    return views
