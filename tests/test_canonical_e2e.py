"""End to end: the sandbox over real HTTP/SQL, real dlt loads, then the transforms on those raw tables.

The SQL models were written against raw tables shaped like dlt's (tests/raw_world.py); this
proves they read the real ones: same canonical counts, same identities, nothing lost.
"""

from __future__ import annotations

import dagster as dg
import pytest

from integration_hub.warehouse import Warehouse
from tests.raw_world import materialize_transforms
from tests.test_canonical_world import ACCOUNTING
from tests.test_identity_resolution import precision_recall
from tests.test_ingestion_e2e import load_everything


@pytest.mark.slow
def test_transforms_on_real_raw_loads_give_the_truth(make_sandbox):
    box = make_sandbox(export=True)
    warehouse = Warehouse()
    load_everything(dg.DagsterInstance.ephemeral())
    result = materialize_transforms(warehouse)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations()), [
        (e.asset_key.to_user_string(), e.check_name, e.metadata)
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    for table, count in box.truth["expected"].items():
        assert warehouse.row_count(*table.split(".")) == count, table
    with warehouse.connect() as con:
        xref = con.df("SELECT system, source_id, customer_id FROM canonical.customer_xref")
        for source, (represented_sql, filtered_sql) in ACCOUNTING.items():
            rows = con.scalar(f"SELECT count(*) FROM {source}")
            assert rows == con.scalar(represented_sql) + con.scalar(filtered_sql), source
    precision, recall, _ = precision_recall(xref)
    assert (precision, recall) == (1.0, 1.0)
