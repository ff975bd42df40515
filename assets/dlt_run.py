"""dagster-dlt's asset specs and run, without what a reader only met as noise.

`build_dlt_asset_specs` attaches the dlt source, pipeline and translator to every spec's
metadata for `DagsterDltResource.run` to find them; the hub hands them to `run` itself, and
the UI could only show them as "(unserializable)". `DagsterDltResource.run` (dagster-dlt
0.29) calls dlt's deprecated `drop_pending_packages`, which warns at every load, and puts the
load package's file paths (`jobs`) into every materialization.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, DagsterDltTranslator
from dagster_dlt.constants import META_KEY_PIPELINE, META_KEY_SOURCE, META_KEY_TRANSLATOR
from dagster_dlt.translator import DltResourceTranslatorData

DLT_OBJECTS = {META_KEY_SOURCE, META_KEY_PIPELINE, META_KEY_TRANSLATOR}


def plain(specs: list[dg.AssetSpec]) -> list[dg.AssetSpec]:
    """The specs without dagster-dlt's objects in their metadata."""
    return [
        spec.replace_attributes(metadata={k: v for k, v in spec.metadata.items() if k not in DLT_OBJECTS})
        for spec in specs
    ]


def run(
    context: dg.AssetExecutionContext, source: Any, pipeline: dlt.Pipeline, translator: DagsterDltTranslator
) -> Iterator[dg.MaterializeResult]:
    """`DagsterDltResource.run` as dagster-dlt 0.29 does it (the selected resources, one
    materialization each with dlt's table metadata), less two things a reader only met as noise:
    the pending packages of a failed load are aborted with dlt's current `abort_packages` (the
    resource calls its deprecated alias, which warns at every run), and each materialization
    leaves out dlt's `jobs` (the load package's file paths)."""
    resources = {
        translator.get_asset_spec(DltResourceTranslatorData(resource=r, pipeline=pipeline)).key: r
        for r in source.selected_resources.values()
    }
    if context.is_subset:
        resources = {key: r for key, r in resources.items() if key in context.selected_asset_keys}
        source = source.with_resources(*(r.name for r in resources.values()))
    # A package left pending by a failed load would be loaded first, and fail again.
    if pipeline.config.restore_from_destination:
        pipeline.drop()  # local state is restored from the destination by the run
    else:
        pipeline.abort_packages()  # keeps the local state: its cursors are not in the destination
    info = pipeline.run(source)
    info.raise_on_failed_jobs()
    dlt_resource: DagsterDltResource = context.resources.dlt
    for key, resource in resources.items():
        metadata = dlt_resource.extract_resource_metadata(context, resource, info, pipeline)
        yield dg.MaterializeResult(asset_key=key, metadata={k: v for k, v in metadata.items() if k != "jobs"})
