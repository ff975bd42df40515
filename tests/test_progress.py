"""Long work reports progress now and then, short work says nothing (`integration_hub.engine.progress`)."""

from __future__ import annotations

import logging

import dlt
import pytest

from integration_hub.engine.progress import DltProgress, Meter


def test_a_meter_reports_counts_share_rate_and_time_left_at_most_once_a_period():
    lines: list[str] = []
    meter = Meter("sync crm_accounts → crm", "records sent", 1_500_000, lines.append, every=0)
    for _ in range(3):
        meter.add(500_000)
    assert [line.split(" in ")[0] for line in lines] == [
        "sync crm_accounts → crm: 500,000 of 1,500,000 (33%) records sent",
        "sync crm_accounts → crm: 1,000,000 of 1,500,000 (67%) records sent",
        "sync crm_accounts → crm: 1,500,000 of 1,500,000 (100%) records sent",
    ]
    assert "left" in lines[0] and "left" not in lines[-1] and lines[0].split(", ")[1].endswith("/s")

    quiet: list[str] = []
    meter = Meter("load", "rows", None, quiet.append, every=3600)
    for _ in range(1000):
        meter.add(1000)
    assert quiet == [] and meter.line().startswith("load: 1,000,000 rows in ")


@pytest.mark.parametrize(("every", "expect_lines"), [(0, True), (3600, False)])
def test_dlt_progress_logs_dlt_counters_only_for_a_step_longer_than_the_period(tmp_path, every, expect_lines):
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger(f"test_progress_{every}")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    pipeline = dlt.pipeline(
        pipeline_name=f"progress_{every}", pipelines_dir=str(tmp_path), destination=dlt.destinations.duckdb(
            str(tmp_path / "w.duckdb")), dataset_name="raw_x", progress=DltProgress(logger, every=every),
    )  # fmt: skip
    pipeline.run([{"id": i} for i in range(2000)], table_name="things")
    assert bool(records) == expect_lines
    if expect_lines:
        assert any("things: 2000" in r for r in records), records
