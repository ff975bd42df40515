"""What the definitions need from Dagster that Dagster does not offer publicly: the one home of
Dagster internals.

Everything else in `definitions/` and `cli/` uses Dagster's public API (`dagster` top-level names,
`build_reconstructable_job`, `execute_job`, and the GraphQL API through the `dagster-graphql` CLI
for backfills). Each function here says which internal it relies on, why no public form does the
job, and what would replace it; a Dagster upgrade that breaks one breaks it here.
"""

from __future__ import annotations

import dagster as dg


def config_field_with_default(executor: dg.ExecutorDefinition, default: dict, description: str) -> dg.Field:
    """`executor`'s own config schema as a field whose default value is `default`.

    `ExecutorDefinition.config_schema`, its `as_field()` and `Field.config_type` are not in Dagster's
    public API (neither in its API docs nor marked public), yet they are the only way to keep a
    built-in executor's whole schema (and whatever options Dagster adds to it) selectable per run
    while changing its default. A default argument to `ExecutorDefinition.configured` would replace
    this; writing the schema out by hand would drift from Dagster's.
    """
    field = executor.config_schema.as_field()
    return dg.Field(field.config_type, default_value=default, description=description)
