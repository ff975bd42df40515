"""Landing files: each payout report (Stripe's itemized payout reconciliation) loads, or is rejected,
on its own, and safely.

Every test drops files in a temporary `$HUB_HOME/landing/payments`, runs the `payments_files`
job (the real dlt source inside the Dagster asset) and asserts what `raw_payments.settlement`,
`raw_payments.settlement_files` and `quarantine.payments__settlement` hold afterwards.
"""

import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from integration_hub.warehouse import Warehouse, warehouse_from_env
from resources.systems import SystemClient

HEADER = (
    "automatic_payout_id,automatic_payout_effective_at,balance_transaction_id,created_utc,currency,gross,fee,net,"
    "reporting_category,charge_id,invoice_id,payment_metadata[payment_id]\n"
)
DAY = "2026-11-12"
SHAPE = "YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"


def line(i: int, day: str = DAY, gross: str | None = None, fee: str = "0.30", net: str | None = None) -> str:
    """Balance transaction `txn_000i` of payment `py_000i`, paid out on `day`."""
    gross = gross if gross is not None else f"{i}.00"
    net = net if net is not None else f"{i - 1}.70"
    payout = f"po_{day.replace('-', '').replace('/', '')}"
    return (
        f"{payout},{day} 00:00:00,txn_{i:04d},{DAY} 09:30:00,usd,{gross},{fee},{net},charge,ch_{i:04d},"
        f"in_{i:04d},py_{i:04d}\n"
    )


def report(*numbers: int, day: str = DAY) -> str:
    return HEADER + "".join(line(i, day) for i in numbers)


def named(items: list, name: str):
    return next(item for item in items if item.name == name)


@dataclass
class Hub:
    """The payments job over a landing folder in a temporary HUB_HOME, and what the warehouse holds."""

    landing: Path
    job: dg.JobDefinition
    instance: dg.DagsterInstance
    warehouse: Warehouse
    cursor: str | None = None

    def load(self, *files: str) -> dg.ExecuteInProcessResult:
        config = {"ops": {"raw_payments": {"config": {"files": list(files)}}}}
        return self.job.execute_in_process(run_config=config, instance=self.instance, raise_on_error=False)

    def sense(self) -> list[str]:
        """The files the landing sensor asks a run for now."""
        from integration_hub.definitions import automation

        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"payments_client": SystemClient(system="payments"), "warehouse": self.warehouse},
        )
        result = named(automation.SENSORS, "payments_landing")(context)
        self.cursor = result.cursor
        return [request.tags["hub/file"] for request in result.run_requests]

    def settlement(self) -> dict[str, dict[str, tuple]]:
        """file -> payment id (metadata) -> (payout date, gross, fee, net)."""
        out: dict[str, dict[str, tuple]] = {}
        with self.warehouse.connect() as con:
            for file, pid, *values in con.rows(
                "SELECT file_name, payment_metadata_payment_id, left(automatic_payout_effective_at, 10), "
                "gross, fee, net "
                "FROM raw_payments.settlement ORDER BY 1, 2"
            ):
                out.setdefault(file, {})[pid] = tuple(values)
        return out

    def files(self) -> list[tuple]:
        """(file, status, rows, quarantined, reason), oldest first."""
        with self.warehouse.connect() as con:
            return con.rows(
                "SELECT file_name, status, rows, quarantined, reason FROM raw_payments.settlement_files "
                "ORDER BY seen_at, file_name"
            )

    def quarantine(self) -> list[tuple[str, str, str]]:
        """(file, balance_transaction_id, reason) of every quarantined line."""
        if not self.warehouse.table_exists("quarantine", "payments__settlement"):
            return []
        with self.warehouse.connect() as con:
            rows = con.rows("SELECT source_key, reason, payload FROM quarantine.payments__settlement")
        return sorted((json.loads(payload).get("file_name"), key, reason) for key, reason, payload in rows)


def metadata(result: dg.ExecuteInProcessResult, key: str):
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata[key].value


def _hub(tmp_path: Path, monkeypatch, warehouse_url: str | None = None) -> Hub:
    from assets import ingestion
    from integration_hub.definitions import automation

    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HUB_LANDING_SETTLE_SECONDS", "0")
    monkeypatch.delenv("HUB_PAYMENTS_URL", raising=False)
    if warehouse_url:
        monkeypatch.setenv("HUB_WAREHOUSE_URL", warehouse_url)
    else:
        monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    landing = tmp_path / "home" / "landing" / "payments"
    landing.mkdir(parents=True)
    defs = dg.Definitions(
        assets=[a for a in ingestion.build_assets() if a.node_def.name == "raw_payments"],
        jobs=[named(automation.JOBS, "payments_files")],
        resources=ingestion.build_resources(),
    )
    job = defs.resolve_job_def("payments_files")
    return Hub(landing, job, dg.DagsterInstance.ephemeral(), warehouse_from_env())


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Hub:
    return _hub(tmp_path, monkeypatch)


@pytest.fixture
def hub_on_postgres(tmp_path, monkeypatch, postgres_url) -> Iterator[Hub]:
    import psycopg

    database = f"hub_landing_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{database}"')
    try:
        yield _hub(tmp_path, monkeypatch, postgres_url.rsplit("/", 1)[0] + f"/{database}")
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_each_unreadable_file_is_rejected_on_its_own_with_its_reason_and_the_others_load(
    hub, tmp_path, caplog
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(report(900))  # a valid report, but not in the folder
    (hub.landing / "a_good.csv").write_text(report(1, 2))
    (hub.landing / "b_binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (hub.landing / "c_long_line.csv").write_text(
        report(3) + f"{DAY},py_long,in_x,USD,1.00,0.30,{'0' * (1 << 21)}\n"
    )
    (hub.landing / "d_directory.csv").mkdir()
    (hub.landing / "e_link.csv").symlink_to(outside / "secret.csv")
    (hub.landing / "f_no_header.csv").write_text(line(4) + line(5))
    (hub.landing / "g_latin1.csv").write_bytes((HEADER + line(6).replace("usd", "eur é")).encode("latin-1"))
    (hub.landing / "h_empty.csv").write_bytes(b"")
    (hub.landing / "z_good.csv").write_text(report(7))

    # The sensor asks for the regular files only and does not crash on the directory or the link.
    assert hub.sense() == ["a_good.csv", "b_binary.csv", "c_long_line.csv", "f_no_header.csv",
                           "g_latin1.csv", "h_empty.csv", "z_good.csv"]  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="integration_hub.systems"):
        first = hub.load()
    assert first.success  # one step, first attempt: no file fails (or retries) the load

    assert hub.settlement() == {
        "a_good.csv": {"py_0001": (DAY, "1.00", "0.30", "0.70"), "py_0002": (DAY, "2.00", "0.30", "1.70")},
        "z_good.csv": {"py_0007": (DAY, "7.00", "0.30", "6.70")},
    }
    reasons = {f: (status, rows, reason) for f, status, rows, _, reason in hub.files()}
    assert {f: s for f, (s, *_) in reasons.items()} == {
        "a_good.csv": "loaded", "z_good.csv": "loaded", "b_binary.csv": "rejected", "c_long_line.csv": "rejected",
        "d_directory.csv": "rejected", "e_link.csv": "rejected", "f_no_header.csv": "rejected",
        "g_latin1.csv": "rejected", "h_empty.csv": "rejected",
    }  # fmt: skip
    assert "NUL bytes" in reasons["b_binary.csv"][2]
    assert (
        "line 3 is 2097190 bytes long, over the parser's limit of 1048576 bytes"
        in reasons["c_long_line.csv"][2]
    )
    assert "a directory" in reasons["d_directory.csv"][2]
    assert "symbolic link" in reasons["e_link.csv"][2]
    assert "no itemized payout reconciliation report header" in reasons["f_no_header.csv"][2]
    assert "not UTF-8" in reasons["g_latin1.csv"][2]
    assert "empty file" in reasons["h_empty.csv"][2]
    assert hub.quarantine() == []  # neither the link's target nor any rejected file's lines
    rejected = metadata(first, "files_rejected")
    assert [r.split(":")[0] for r in rejected] == sorted(
        f for f, (s, *_) in reasons.items() if s == "rejected"
    )
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "integration_hub.systems" and "rejected" in r.getMessage()
    ]
    assert len(warned) == 7 and all(any(name in w for w in warned) for name in ("b_binary.csv", "e_link.csv"))

    # The same bytes are not tried again; a file whose content changed is.
    (hub.landing / "b_binary.csv").write_text(report(8))
    second = hub.load()
    assert second.success and metadata(second, "files_loaded") == ["b_binary.csv"]
    assert sorted(metadata(second, "files_still_rejected")) == [
        "c_long_line.csv", "d_directory.csv", "e_link.csv", "f_no_header.csv", "g_latin1.csv", "h_empty.csv"
    ]  # fmt: skip
    assert [f[:2] for f in hub.files()[9:]] == [("b_binary.csv", "loaded")]
    assert hub.settlement()["b_binary.csv"] == {"py_0008": (DAY, "8.00", "0.30", "7.70")}


def test_a_byte_order_mark_is_dropped_and_the_header_reads_right(hub):
    (hub.landing / "excel.csv").write_bytes(b"\xef\xbb\xbf" + report(1, 2).replace("\n", "\r\n").encode())

    assert hub.load().success

    assert hub.settlement() == {
        "excel.csv": {"py_0001": (DAY, "1.00", "0.30", "0.70"), "py_0002": (DAY, "2.00", "0.30", "1.70")}
    }
    assert hub.quarantine() == []
    with hub.warehouse.connect() as con:
        columns = {c for (c,) in con.rows(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'raw_payments' AND table_name = 'settlement'"
        )}  # fmt: skip
    assert "automatic_payout_effective_at" in columns and not any(
        "\ufeff" in c or "bom" in c for c in columns
    )


def test_rows_breaking_the_amount_and_date_rules_are_quarantined_with_their_reason(hub, monkeypatch):
    monkeypatch.setenv("HUB_CONTRACT_MAX_REJECT_SHARE", "1")  # mostly bad on purpose: a WARN, not a stop
    today = dt.datetime.now(dt.UTC).date()
    rows = [
        line(1),
        line(2, gross="-2.00", net="-2.30"),  # negative amounts
        line(3, fee="-0.30", net="3.30"),
        line(4, net="3.69"),  # one cent off gross - fee
        line(5, day=str(today + dt.timedelta(days=2))),  # in the future
        line(6, day="2026-02-30"),  # no such day
        line(7, day="2026-02-29"),  # not a leap year
        line(8, day="2024-02-29"),  # a leap year: fine
        line(9, day=str(today + dt.timedelta(days=1))),  # tomorrow: a processor east of UTC
        line(10, day="12/11/2026"),
    ]
    (hub.landing / "rules.csv").write_text(HEADER + "".join(rows))

    result = hub.load()

    assert result.success
    assert sorted(hub.settlement()["rules.csv"]) == ["py_0001", "py_0008", "py_0009"]
    assert hub.quarantine() == [
        ("rules.csv", "txn_0002", "field 'gross': negative amount '-2.00'"),
        ("rules.csv", "txn_0003", "field 'fee': negative amount '-0.30'"),
        ("rules.csv", "txn_0004", "field 'net': '3.69' is not gross - fee ('4.00' - '0.30' = '3.70')"),
        ("rules.csv", "txn_0005", f"field 'automatic_payout_effective_at': {today + dt.timedelta(days=2)} is in "
                                  f"the future (the latest date accepted now is {today + dt.timedelta(days=1)})"),
        ("rules.csv", "txn_0006", f"field 'automatic_payout_effective_at': not a valid date ({SHAPE}), got '2026-02-30 00:00:00'"),
        ("rules.csv", "txn_0007", f"field 'automatic_payout_effective_at': not a valid date ({SHAPE}), got '2026-02-29 00:00:00'"),
        ("rules.csv", "txn_0010", f"field 'automatic_payout_effective_at': not a valid date ({SHAPE}), got '12/11/2026 00:00:00'"),
    ]  # fmt: skip
    assert [f[:4] for f in hub.files()] == [("rules.csv", "loaded", 3, 7)]


def test_conflicting_duplicates_are_all_quarantined_and_exact_ones_load_once(hub, monkeypatch):
    monkeypatch.setenv("HUB_CONTRACT_MAX_REJECT_SHARE", "1")  # mostly bad on purpose: a WARN, not a stop
    rows = [line(1), line(2), line(1), line(3), line(2, gross="2.50", net="2.20"), line(2)]
    (hub.landing / "dupes.csv").write_text(HEADER + "".join(rows))

    assert hub.load().success

    assert hub.settlement() == {
        "dupes.csv": {"py_0001": (DAY, "1.00", "0.30", "0.70"), "py_0003": (DAY, "3.00", "0.30", "2.70")}
    }
    reason = (
        "conflicting duplicate: 3 rows share balance_transaction_id 'txn_0002' with different content "
        "(gross, net differ); none of them is loaded"
    )
    assert hub.quarantine() == [("dupes.csv", "txn_0002", reason)] * 3
    assert [f[:4] for f in hub.files()] == [("dupes.csv", "loaded", 2, 3)]


def test_a_file_still_being_written_waits_until_it_settled(hub, monkeypatch):
    monkeypatch.setenv("HUB_LANDING_SETTLE_SECONDS", "60")
    settled, growing = hub.landing / "settled.csv", hub.landing / "growing.csv"
    settled.write_text(report(1))
    an_hour_ago = time.time() - 3600
    os.utime(settled, (an_hour_ago, an_hour_ago))
    growing.write_text(report(10, 11)[:-9])  # the writer is mid-line

    assert hub.sense() == ["settled.csv"]  # nothing asked for the growing file yet
    first = hub.load()

    assert first.success and metadata(first, "files_waiting") == ["growing.csv"]
    assert metadata(first, "files_loaded") == ["settled.csv"]
    assert hub.settlement() == {"settled.csv": {"py_0001": (DAY, "1.00", "0.30", "0.70")}}
    assert [f[:2] for f in hub.files()] == [("settled.csv", "loaded")]  # the waiting file is not "loaded"
    assert hub.quarantine() == []

    # The writer finishes; a minute later the file has settled: the sensor asks, the run loads it whole.
    growing.write_text(report(10, 11))
    os.utime(growing, (time.time() - 61, time.time() - 61))
    assert hub.sense() == ["growing.csv"]
    second = hub.load("growing.csv")
    assert second.success and metadata(second, "files_loaded") == ["growing.csv"]
    assert hub.settlement()["growing.csv"] == {
        "py_0010": (DAY, "10.00", "0.30", "9.70"), "py_0011": (DAY, "11.00", "0.30", "10.70")
    }  # fmt: skip


def test_a_corrected_file_replaces_the_lines_of_its_previous_version(hub, monkeypatch):
    monkeypatch.setenv("HUB_CONTRACT_MAX_REJECT_SHARE", "1")  # a half line of three: a WARN, not a stop
    corrections_replace_lines(hub)


@pytest.mark.postgres
def test_a_corrected_file_replaces_the_lines_of_its_previous_version_on_postgres(
    hub_on_postgres, monkeypatch
):
    monkeypatch.setenv("HUB_CONTRACT_MAX_REJECT_SHARE", "1")
    corrections_replace_lines(hub_on_postgres)


def corrections_replace_lines(hub: Hub) -> None:
    (hub.landing / "other.csv").write_text(report(100))
    corrected = hub.landing / "settlement_2026-11-12.csv"
    corrected.write_text(report(1, 2) + line(3)[:45])  # the writer paused mid-line: loaded half
    assert hub.sense() == ["other.csv", "settlement_2026-11-12.csv"]
    assert hub.load().success
    assert sorted(hub.settlement()["settlement_2026-11-12.csv"]) == ["py_0001", "py_0002"]
    assert [(f, k) for f, k, _ in hub.quarantine()] == [("settlement_2026-11-12.csv", "txn_0003")]

    # The rest arrives, and the processor corrects line 2 and withdraws line 1.
    corrected.write_text(HEADER + line(2, gross="2.50", net="2.20") + line(3) + line(4))
    assert hub.sense() == ["settlement_2026-11-12.csv"]  # one run for the new content
    result = hub.load("settlement_2026-11-12.csv")

    assert result.success and metadata(result, "files_replaced") == ["settlement_2026-11-12.csv"]
    assert hub.settlement() == {
        "other.csv": {"py_0100": (DAY, "100.00", "0.30", "99.70")},
        "settlement_2026-11-12.csv": {
            "py_0002": (DAY, "2.50", "0.30", "2.20"),
            "py_0003": (DAY, "3.00", "0.30", "2.70"),
            "py_0004": (DAY, "4.00", "0.30", "3.70"),
        },
    }
    files = hub.files()
    assert [f[:3] for f in files] == [
        ("other.csv", "loaded", 1), ("settlement_2026-11-12.csv", "loaded", 2),
        ("settlement_2026-11-12.csv", "replaced", 3),
    ]  # fmt: skip
    assert files[-1][4].startswith("replaces the version with sha256 ")

    # A version with no settlement at all empties the file's lines; an identical re-drop changes nothing.
    corrected.write_text(HEADER)
    assert hub.load().success
    assert hub.settlement() == {"other.csv": {"py_0100": (DAY, "100.00", "0.30", "99.70")}}
    corrected.write_text(HEADER)
    again = hub.load()
    assert metadata(again, "files_skipped") == ["other.csv", "settlement_2026-11-12.csv"]
    assert [f[1:3] for f in hub.files()[3:]] == [("replaced", 0)]
    with hub.warehouse.connect() as con:  # the emptying marker is never stored
        assert (
            con.scalar("SELECT count(*) FROM raw_payments.settlement WHERE balance_transaction_id = ''") == 0
        )


def test_run_config_names_are_plain_names_in_the_folder(hub, tmp_path):
    from integration_hub.systems import payments

    (tmp_path / "home" / "landing" / "outside.csv").write_text(report(900))
    (hub.landing / "inside.csv").write_text(report(1))

    for name, why in [
        ("../outside.csv", "a path, not a file name"),
        (str(tmp_path / "home" / "landing" / "outside.csv"), "a path, not a file name"),
        ("..", "a path, not a file name"),
        ("missing.csv", "not a *.csv file in the folder"),
    ]:
        result = hub.load(name)
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        message = failure.event_specific_data.error.message.strip()
        assert message.endswith(f"{repr(name)[:100]} is {why}") and "\n" not in message
        with pytest.raises(ValueError, match="files= must name files in the landing folder"):
            payments.source(str(hub.landing), files=[name])
    assert not hub.warehouse.table_exists("raw_payments", "settlement")  # nothing was read from outside

    assert hub.load("inside.csv").success
    assert hub.settlement() == {"inside.csv": {"py_0001": (DAY, "1.00", "0.30", "0.70")}}
