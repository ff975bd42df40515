"""What a load leaves in a run's captured output and on its asset pages: data, not noise.

dagster-dlt's resource called dlt's deprecated `drop_pending_packages` (a warning per system and
run), Arrow tables declared their primary keys nullable where dlt's schema does not ("several
column hints were different", one per resource), and every raw asset carried dagster-dlt's
objects as "(unserializable)" metadata and the load package's file paths as `jobs`.
"""

from __future__ import annotations

import logging
import warnings

import dagster as dg

from tests.test_ingestion_e2e import expected_counts, load_everything

NOISE = ("drop_pending_packages is deprecated", "several column hints were different")
DLT_OBJECTS = {"dagster_dlt/source", "dagster_dlt/pipeline", "dagster_dlt/translator"}


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_load_logs_no_dlt_deprecation_or_hint_warnings_and_shows_no_dlt_objects(make_sandbox, capfd):
    box = make_sandbox(export=True)
    kept, dlt_log = Kept(), logging.getLogger("dlt")
    dlt_log.addHandler(kept)
    instance = dg.DagsterInstance.ephemeral()
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            loaded = load_everything(instance)
    finally:
        dlt_log.removeHandler(kept)
    out, err = capfd.readouterr()

    expected = expected_counts(box.truth)
    assert {f"{s}.{r}": n for (s, r), n in loaded.items()} == {
        k: v for k, v in expected.items() if k in {f"{s}.{r}" for s, r in loaded}
    }, "the load is real: every resource landed its rows"
    captured = "\n".join([out, err, *kept.lines, *(str(w.message) for w in warned)])
    for noise in NOISE:
        assert noise not in captured

    from assets import ingestion

    for assets_def in ingestion.build_assets():
        for key, spec in assets_def.specs_by_key.items():
            assert not DLT_OBJECTS & set(spec.metadata), key
    run = instance.get_runs(limit=1)[0]
    materialized = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    pages = [r.event_log_entry.asset_materialization for r in materialized.records]
    loads = [p for p in pages if "covered_by_partition" not in p.metadata]  # the rest: past days covered
    assert len(loads) == len(loaded)
    for page in loads:
        assert "jobs" not in page.metadata and not DLT_OBJECTS & set(page.metadata)
        assert "dagster/column_schema" in page.metadata, "dlt's table metadata is kept"
