"""The engine on small hand-written tables: tolerances at their boundaries, duplicates, history."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pytest

from integration_hub.engine.recon_compiler import compile_flow
from integration_hub.engine.recon_engine import Compare, Flow, run_flow
from integration_hub.warehouse import Warehouse


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(path=str(tmp_path / "warehouse.duckdb"))


def write(warehouse, table: str, rows: list[dict], schema: pa.Schema | None = None) -> None:
    """Rows as literals: money strings become exact decimals."""
    rows = [{k: Decimal(v) if k == "amount" else v for k, v in row.items()} for row in rows]
    warehouse.write_arrow("t", table, pa.Table.from_pylist(rows, schema=schema), mode="replace")


def findings(warehouse, flow: Flow, run_id: str = "r") -> dict[str, dict[str, tuple]]:
    """kind -> left or right key -> (left_value, right_value, difference)."""
    out: dict[str, dict[str, tuple]] = {}
    with warehouse.connect() as con:
        for kind, lk, rk, lv, rv, diff in con.rows(
            f"SELECT kind, left_key, right_key, left_value, right_value, difference "
            f"FROM recon.{flow.results_table} WHERE run_id = ?",
            [run_id],
        ):
            out.setdefault(kind, {})[lk or rk] = (lv, rv, diff)
    return out


MONEY = pa.schema([("id", pa.string()), ("k", pa.int64()), ("amount", pa.decimal128(18, 2))])


def money_flow(**compare) -> Flow:
    return Flow(
        name="money", entity="invoice", left="t.l", right="t.r", on=("k",),
        compares=(Compare("amount", "amount_mismatch", as_="money", **compare),),
    )  # fmt: skip


def test_a_difference_equal_to_the_tolerance_matches_one_cent_more_does_not(warehouse):
    left = [
        {"id": f"L{i}", "k": i, "amount": a} for i, a in enumerate(["100.00", "100.00", "100.00", "100.00"])
    ]
    right = [
        {"id": f"R{i}", "k": i, "amount": a} for i, a in enumerate(["100.01", "99.99", "100.02", "99.98"])
    ]
    write(warehouse, "l", left, MONEY)
    write(warehouse, "r", right, MONEY)
    result = run_flow(warehouse, money_flow(abs_tol=0.01), "r")
    assert findings(warehouse, money_flow()) == {
        "amount_mismatch": {
            "L2": ("100.00", "100.02", pytest.approx(0.02)),
            "L3": ("100.00", "99.98", pytest.approx(-0.02)),
        }
    }
    assert (result.matched, result.keys_seen, result.match_rate) == (2, 4, 0.5)


def test_relative_tolerance_scales_with_the_left_amount(warehouse):
    write(
        warehouse,
        "l",
        [{"id": "small", "k": 1, "amount": "10.00"}, {"id": "big", "k": 2, "amount": "10000.00"}],
        MONEY,
    )
    write(
        warehouse,
        "r",
        [{"id": "s", "k": 1, "amount": "10.50"}, {"id": "b", "k": 2, "amount": "10010.00"}],
        MONEY,
    )
    run_flow(warehouse, money_flow(rel_tol=0.001), "r")
    # 0.1% of 10,000 is 10.00 (a match at the boundary); 0.1% of 10 is 0.01 (0.50 is a mismatch).
    assert set(findings(warehouse, money_flow())["amount_mismatch"]) == {"small"}


def test_dates_within_n_days_match(warehouse):
    schema = pa.schema([("id", pa.string()), ("k", pa.int64()), ("due", pa.date32())])
    day = dt.date(2026, 1, 10)
    write(warehouse, "l", [{"id": f"L{d}", "k": d, "due": day} for d in range(4)], schema)
    write(
        warehouse, "r", [{"id": f"R{d}", "k": d, "due": day + dt.timedelta(days=d)} for d in range(4)], schema
    )
    flow = Flow(
        name="dates", entity="invoice", left="t.l", right="t.r", on=("k",),
        compares=(Compare("due", "due_date_mismatch", as_="date", days=2),),
    )  # fmt: skip
    run_flow(warehouse, flow, "r")
    assert findings(warehouse, flow) == {"due_date_mismatch": {"L3": ("2026-01-10", "2026-01-13", 3.0)}}


def test_text_compares_ignore_case_and_spacing_but_not_content(warehouse):
    schema = pa.schema([("id", pa.string()), ("k", pa.int64()), ("name", pa.string())])
    write(warehouse, "l", [{"id": "a", "k": 1, "name": "Ada Lovelace"}, {"id": "b", "k": 2, "name": "Alan Turing"},
                           {"id": "c", "k": 3, "name": None}], schema)  # fmt: skip
    write(warehouse, "r", [{"id": "x", "k": 1, "name": "  ADA   lovelace "}, {"id": "y", "k": 2, "name": "Alan Turin"},
                           {"id": "z", "k": 3, "name": "Someone"}], schema)  # fmt: skip
    flow = Flow(
        name="names", entity="customer", left="t.l", right="t.r", on=("k",),
        compares=(Compare("name", "name_mismatch", as_="text"),),
    )  # fmt: skip
    run_flow(warehouse, flow, "r")
    assert set(findings(warehouse, flow)["name_mismatch"]) == {"b", "c"}


def test_missing_duplicated_and_directional_kinds(warehouse):
    write(warehouse, "l", [{"id": f"SO-{i}", "k": i, "amount": "50.00"} for i in range(1, 5)], MONEY)
    write(warehouse, "r", [
        {"id": "in_2", "k": 2, "amount": "25.00"}, {"id": "in_3", "k": 3, "amount": "60.00"},
        {"id": "in_4", "k": 4, "amount": "50.00"}, {"id": "in_4d", "k": 4, "amount": "50.00"},
        {"id": "in_9", "k": 9, "amount": "9.00"},
    ], MONEY)  # fmt: skip
    flow = Flow(
        name="invoices", entity="invoice", left="t.l", right="t.r", on=("k",),
        missing_right="invoice_missing", missing_left="invoice_without_order", duplicate_right="invoice_duplicated",
        compares=(Compare("amount", "partially_paid", as_="money", abs_tol=0.01, kind_over="overpaid"),),
    )  # fmt: skip
    result = run_flow(warehouse, flow, "r")
    assert result.findings == {
        "invoice_missing": 1, "invoice_without_order": 1, "invoice_duplicated": 1, "partially_paid": 1, "overpaid": 1,
    }  # fmt: skip
    with warehouse.connect() as con:
        rows = con.rows("SELECT kind, left_key, right_key FROM recon.invoices__results ORDER BY kind")
    assert rows == [
        ("invoice_duplicated", "SO-4", "in_4d"), ("invoice_missing", "SO-1", None),
        ("invoice_without_order", None, "in_9"), ("overpaid", "SO-3", "in_3"), ("partially_paid", "SO-2", "in_2"),
    ]  # fmt: skip
    assert (result.matched, result.keys_seen) == (1, 5)


def test_runs_are_kept_over_time_and_a_rerun_replaces_its_own_rows(warehouse):
    write(warehouse, "l", [{"id": "a", "k": 1, "amount": "1.00"}], MONEY)
    write(warehouse, "r", [{"id": "b", "k": 1, "amount": "2.00"}], MONEY)
    flow = money_flow()
    for run_id in ("r1", "r2", "r2"):
        run_flow(warehouse, flow, run_id)
    with warehouse.connect() as con:
        assert con.rows("SELECT run_id, count(*) FROM recon.money__results GROUP BY 1 ORDER BY 1") == [
            ("r1", 1),
            ("r2", 1),
        ]
        summary = con.rows(
            "SELECT run_id, flow, matched, findings, match_rate FROM recon.summary ORDER BY run_id"
        )
    assert summary == [
        ("r1", "money", 0, json.dumps({"amount_mismatch": 1}), 0.0),
        ("r2", "money", 0, json.dumps({"amount_mismatch": 1}), 0.0),
    ]


def test_bad_declarations_and_missing_models_say_what_is_wrong(warehouse):
    with pytest.raises(ValueError, match="as_ must be money, number, date, text or exact"):
        Compare("amount", "x", as_="fuzzy")
    with pytest.raises(ValueError, match="declares no finding kind"):
        compile_flow(Flow(name="empty", entity="x", left="t.l", right="t.r", on=("k",)))
    with pytest.raises(RuntimeError, match=r"flow 'money' could not run.*t\.l"):
        run_flow(warehouse, money_flow(), "r")


def test_records_without_a_key_are_each_missing_never_duplicates(warehouse):
    write(
        warehouse,
        "l",
        [{"id": "SO-1", "k": 1, "amount": "5.00"}, {"id": "SO-2", "k": None, "amount": "5.00"}],
        MONEY,
    )
    write(warehouse, "r", [{"id": "in_1", "k": 1, "amount": "5.00"}, {"id": "in_x", "k": None, "amount": "1.00"},
                           {"id": "in_y", "k": None, "amount": "1.00"}], MONEY)  # fmt: skip
    flow = Flow(
        name="nulls", entity="invoice", left="t.l", right="t.r", on=("k",),
        missing_right="invoice_missing", missing_left="invoice_without_order", duplicate_right="invoice_duplicated",
    )  # fmt: skip
    result = run_flow(warehouse, flow, "r")
    assert result.findings == {"invoice_missing": 1, "invoice_without_order": 2, "invoice_duplicated": 0}
    assert (result.left_rows, result.right_rows, result.matched, result.keys_seen) == (2, 3, 1, 4)
