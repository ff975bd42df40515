"""Identity resolution against the sandbox truth, and its determinism."""

from __future__ import annotations

import itertools

import pandas as pd

from integration_hub.engine import identity


def true_customer(system: str, source_id: str) -> str:
    """Who a record really is, from how the world derives each system's ids from the ERP key."""
    if system == "erp":
        return f"erp:{int(source_id)}"
    if system == "crm":  # 001<15 digits>, duplicates 001D<14 digits>
        return f"erp:{int(source_id[4:] if source_id.startswith('001D') else source_id[3:])}"
    shop_id = int(source_id)
    return f"stranger:{shop_id}" if shop_id >= 7_900_000_000 else f"erp:{shop_id - 7_000_000_000}"


def same_customer_pairs(groups: dict[str, list[tuple[str, str]]]) -> set[frozenset]:
    return {frozenset(p) for members in groups.values() for p in itertools.combinations(members, 2)}


def precision_recall(xref: pd.DataFrame) -> tuple[float, float, int]:
    """Pairwise precision and recall of the resolved clusters; and the number of true pairs."""
    predicted, truth = {}, {}
    for system, source_id, customer_id in xref[["system", "source_id", "customer_id"]].itertuples(
        index=False
    ):
        predicted.setdefault(customer_id, []).append((system, source_id))
        truth.setdefault(true_customer(system, source_id), []).append((system, source_id))
    p, t = same_customer_pairs(predicted), same_customer_pairs(truth)
    return len(p & t) / len(p), len(p & t) / len(t), len(t)


def xref_of(warehouse) -> pd.DataFrame:
    with warehouse.connect() as con:
        return con.df("SELECT * FROM canonical.customer_xref")


def test_precision_and_recall_are_perfect_on_the_default_seed(canonical_world):
    precision, recall, pairs = precision_recall(xref_of(canonical_world[0]))
    assert pairs > 2000
    assert (precision, recall) == (1.0, 1.0)


def test_the_planted_identity_traps_resolve_as_the_truth_says(canonical_world, sandbox_world):
    x = xref_of(canonical_world[0]).set_index(["system", "source_id"])
    cid = x["customer_id"]
    nf, found = sandbox_world.truth["non_findings"], sandbox_world.truth["discrepancies"]
    for d in nf["shop_customer_email_differs"]:
        shop = ("shop", str(d["shop_customer_id"]))
        assert cid[shop] == cid[("erp", str(d["customer_id"]))]
        assert (
            x.loc[shop, "match_rule"] == "phone_name"
            and x.loc[shop, "matched_to"] == f"erp:{d['customer_id']}"
        )
    for d in nf["shared_phone_distinct_customers"]:
        assert cid[("erp", str(d["customer_id"]))] != cid[("erp", str(d["twin_customer_id"]))]
    for d in nf["crm_account_number_missing"]:
        crm = ("crm", d["crm_account_id"])
        assert cid[crm] == cid[("erp", str(d["customer_id"]))] and x.loc[crm, "match_rule"] == "email"
    for d in found["crm_duplicate_account"]:
        assert cid[("crm", d["crm_account_id"])] == cid[("erp", str(d["customer_id"]))]
    for d in found["shop_customer_unmatched"]:
        assert x.loc[("shop", str(d["shop_customer_id"])), "match_rule"] == "anchor"
    assert set(x["match_rule"]) == {"anchor", "external_id", "email", "phone_name"}
    assert x["confidence"].between(0, 1).all()


def test_resolving_again_gives_the_same_ids(canonical_world):
    warehouse, _ = canonical_world
    before = xref_of(warehouse).sort_values(["system", "source_id"]).reset_index(drop=True)
    identity.build_xref(warehouse)
    after = xref_of(warehouse).sort_values(["system", "source_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    records, pairs = identity.candidates(warehouse)
    fresh = identity.resolve(records, pairs, previous=None).to_pandas()  # no history: ids from the anchors
    fresh = fresh.sort_values(["system", "source_id"]).reset_index(drop=True)
    pd.testing.assert_series_equal(before["customer_id"], fresh["customer_id"])


def _records(*rows) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["source_system", "source_id", "account_number", "email", "phone", "name"]
    )


def _pairs(records: pd.DataFrame) -> pd.DataFrame:
    """Candidate pairs as the warehouse query builds them, for small in-memory cases."""
    out = []
    for rule in identity.RULES:
        col = identity._RULE_COLUMN[rule]
        m = records.merge(records, on=col, suffixes=("", "_to"))
        m = m[m[col].notna() & ~((m.source_system == m.source_system_to) & (m.source_id == m.source_id_to))]
        out.append(pd.DataFrame({"source_system": m.source_system, "source_id": m.source_id,
                                 "to_system": m.source_system_to, "to_id": m.source_id_to, "rule": rule,
                                 "name": m["name"], "to_name": m.name_to}))  # fmt: skip
    return pd.concat(out, ignore_index=True)


def test_a_customer_keeps_its_id_when_a_new_record_joins_it():
    records = _records(
        ("erp", "1", "C1", "ada@x.org", "+111", "Ada Lovelace"),
        ("shop", "9", None, "ada@x.org", None, "Ada Lovelace"),  # staging normalised the email
    )
    previous = pd.DataFrame({"system": ["shop"], "source_id": ["9"], "customer_id": ["cus_from_last_run"]})
    xref = identity.resolve(records, _pairs(records), previous).to_pandas()
    assert list(xref["customer_id"]) == ["cus_from_last_run", "cus_from_last_run"]


def test_a_shared_phone_with_another_name_is_not_a_match():
    records = _records(
        ("erp", "1", "C1", "a@x.org", "+4912345678", "Ada Lovelace"),
        ("erp", "2", "C2", "g@x.org", "+4912345678", "Grace Hopper"),
        ("shop", "7", None, "grace@home.example", "+4912345678", "GRACE  hopper"),
        ("shop", "8", None, "alan@home.example", "+4912345678", "Alan Turing"),
    )
    xref = identity.resolve(records, _pairs(records)).to_pandas().set_index(["system", "source_id"])
    assert xref.loc[("erp", "1"), "customer_id"] != xref.loc[("erp", "2"), "customer_id"]
    assert xref.loc[("shop", "7"), "customer_id"] == xref.loc[("erp", "2"), "customer_id"]
    assert xref.loc[("shop", "7"), "match_rule"] == "phone_name"
    assert xref.loc[("shop", "8"), "match_rule"] == "anchor"
