"""End to end: sandbox systems over HTTP/SQL → dlt → staging/canonical → reconciliation, in Dagster.

The findings of the real pipeline are exactly the sandbox's planted discrepancies.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from assets import ingestion, reconciliation, transforms
from integration_hub.warehouse import Warehouse
from resources import systems
from tests.test_recon_truth import assert_exactly_the_truth


@pytest.mark.slow
def test_the_pipeline_reconciles_to_exactly_the_truth(make_sandbox, monkeypatch, tmp_path):
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    box = make_sandbox(export=True)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    warehouse = Warehouse()
    with dg.DagsterInstance.ephemeral() as instance:
        loaded = dg.materialize(
            ingestion.build_assets(),
            resources=ingestion.build_resources(),
            instance=instance,
            partition_key=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        )
        assert loaded.success
        built = dg.materialize(
            [*transforms.ASSETS, *transforms.CHECKS], resources={"warehouse": warehouse}, instance=instance
        )
        assert built.success
        clients = {key: systems.client(system) for system, key in reconciliation.COUNTED.items()}
        result = dg.materialize(
            reconciliation.ASSETS, resources={"warehouse": warehouse, **clients}, instance=instance
        )
        assert result.success
    assert_exactly_the_truth(warehouse, box.truth, result.run_id)
    with warehouse.connect() as con:  # and nothing was lost between the sources and canonical
        complete = con.rows(
            "SELECT flow, matched FROM recon.summary WHERE flow LIKE '%completeness' ORDER BY 1"
        )
    assert complete == [("canonical_completeness", 8), ("source_completeness", 11)]
