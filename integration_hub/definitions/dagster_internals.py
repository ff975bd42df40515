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


CODE_LOCATION = "integration_hub.definitions"  # workspace.yaml's module: the location's name in the UI
REPOSITORY = "__repository__"  # the repository a `Definitions` object becomes


def execute_as_code_location(
    job_name: str,
    instance: dg.DagsterInstance,
    *,
    partition_key: str | None = None,
    tags: dict | None = None,
    run_config: dict | None = None,
    run_id: str | None = None,
):
    """Run a job of the hub's code location in this process, recorded as the UI records a launch.

    A run that `execute_in_process` or `execute_job` records carries no code-location origin:
    the UI's Jobs → job → Runs (which filters on the `.dagster/repository` tag an origin gives),
    the Overview timeline and "Re-execute" do not know it belongs to the job. Launching through
    the webserver would give one, at the price of loading the code location in another process.
    Here the run is created as a launch creates it (`DagsterInstance.create_run_for_job` with a
    `RemoteJobOrigin` naming workspace.yaml's location and the job's Python origin) and executed
    like `dagster api execute_run` executes it (`execute_run` of a `ReconstructableJob`). Both
    are internals (`dagster._core`): no public call takes an origin; an origin argument to
    `execute_job` (or `execute_in_process`) would replace this. Returns Dagster's
    `JobExecutionResult`. Steps run in this process (the run config says so), as before.
    """
    import sys
    from pathlib import Path

    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run
    from dagster._core.execution.execute_in_process import merge_run_tags
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    root = str(Path(__file__).resolve().parents[2])  # workspace.yaml's working directory
    recon = ReconstructableRepository.for_module(CODE_LOCATION, "defs", root).get_reconstructable_job(
        job_name
    )
    job = recon.get_definition()
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=CODE_LOCATION, working_directory=root
    )
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(ManagedGrpcPythonEnvCodeLocationOrigin(target, CODE_LOCATION), REPOSITORY),
        job_name,
    )
    run_tags = merge_run_tags(
        job_def=job, partition_key=partition_key, tags=tags, asset_selection=None, instance=instance,
        run_config=run_config,
    )  # fmt: skip
    if not run_config and partition_key and job.partitioned_config:
        run_config = job.partitioned_config.get_run_config_for_partition_key(partition_key)
    # In this process, as `execute_in_process` ran it, whatever the executor's default (multiprocess
    # on Postgres): the CLI's run is the CLI's process.
    run_config = {"execution": {"config": {"in_process": {}}}, **(run_config or {})}
    run = instance.create_run_for_job(
        job_def=job,
        run_id=run_id,
        run_config=run_config,
        tags=run_tags,
        remote_job_origin=origin,
        job_code_origin=recon.get_python_origin(),
    )
    return execute_run(recon, run, instance, raise_on_error=False)
