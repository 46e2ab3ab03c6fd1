"""The collector checks what it received against what Resource Graph says there is, and never
hangs on a misbehaving server: rows compared with totalRecords per query chain (a shortfall is
a gap, in the scope table and COV001), endless skip tokens bounded, long waits capped and
turned into gaps, and a whole answer bounded by --timeout however slowly it trickles."""

from __future__ import annotations

import pytest

from auditor.collect import _ORDER, PAGING_TOLERANCE, Scope, collect, paging_tolerance
from auditor.engine import evaluate, load_rules
from auditor.estate import Estate
from tests.fake_arg import subscription_id
from tests.test_collect import VMQ, FakeCredential, expected, ids, make_fake, paging, run

SUB1 = subscription_id(1)
VMS = "microsoft.compute/virtualmachines"


# --- 2: rows received against totalRecords ---------------------------------------------------

@pytest.mark.parametrize("kind", ["skip-ahead", "short-page"])
def test_rows_lost_while_paging_are_a_gap_with_scope_and_cov001(kind):
    with make_fake(subscriptions=1) as fake:
        fake.add_fault(kind, when=paging(VMQ))
        got = run(fake)
    shortfalls = [g for g in got.gaps if g["table"] == "virtual_machines"]
    assert len(shortfalls) == 1
    gap = shortfalls[0]
    assert gap["status"] == "incomplete" and gap["ids"] == [SUB1]
    assert "of 20 rows" in gap["detail"] and "totalRecords" in gap["detail"]
    assert got.scope[0]["status"] == "incomplete"
    assert "virtual_machines" in got.scope[0]["detail"]
    assert len(ids(got.rows, VMS)) < 20  # what was received is kept
    deltas = got.stats["paging_deltas"]
    assert any(d["table"] == "virtual_machines" and d["received"] < d["total"] for d in deltas)


def test_a_shortfall_is_a_cov001_finding():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("skip-ahead", when=paging(VMQ))
        snapshot = collect(Scope(), credential=FakeCredential(), endpoint=fake.endpoint,
                           page_size=5, backoff=0.01)
    rules = [rule for rule in load_rules() if rule.id == "COV001"]
    findings = evaluate(Estate(snapshot), rules)
    assert len(findings) == 1 and "incomplete" in findings["message"].iloc[0]
    assert any(g["status"] == "incomplete" for g in snapshot.manifest["gaps"])


def test_a_total_that_moves_a_little_is_tolerated_and_recorded():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("drift", when=paging(VMQ))  # totalRecords says one more row than there is
        got = run(fake)
    assert ids(got.rows) == expected(fake)
    assert got.gaps == [] and got.scope[0]["status"] == "ok"
    assert {"table": "virtual_machines", "scope": "subscriptions", "ids": [SUB1], "total": 21,
            "received": 20} in got.stats["paging_deltas"]


def test_the_tolerance_is_small_and_documented():
    assert PAGING_TOLERANCE == 0.001
    assert paging_tolerance(20) == 1 and paging_tolerance(100_000) == 100


def test_a_truncated_result_is_a_gap():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("truncated", when=paging(VMQ))
        got = run(fake)
    assert any(g["table"] == "virtual_machines" and "truncated" in g["detail"] for g in got.gaps)
    assert got.scope[0]["status"] != "ok"


def test_no_fault_no_delta():
    with make_fake(subscriptions=1) as fake:
        got = run(fake)
    assert got.gaps == [] and got.stats["paging_deltas"] == []


# --- 8: no hang ------------------------------------------------------------------------------

def test_endless_skip_tokens_are_bounded_by_total_records():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("endless", times=10**6, when=lambda body, path: VMQ in body.get("query", ""))
        got = run(fake)
        vm_pages = [r for r in fake.log if r.body and VMQ in r.body.get("query", "")
                    and "| project" in r.body["query"]]
    assert [g["table"] for g in got.gaps] == ["virtual_machines"]
    assert "skipToken" in got.gaps[0]["detail"]
    assert len(vm_pages) <= 20 // 5 + 3  # the pages the total needs, then three empty ones


def test_a_long_retry_after_is_capped_and_becomes_a_gap():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("429", times=1, retry_after="3600",
                       when=lambda body, path: "microsoft.compute/images'" in body.get("query", ""))
        got = run(fake, max_wait=0.5)
    assert [g["table"] for g in got.gaps] == ["managed_images"]
    assert "Retry-After 3600 s" in got.gaps[0]["detail"] and "0.5 s" in got.gaps[0]["detail"]


def test_a_long_quota_reset_is_capped_and_becomes_a_gap():
    with make_fake(subscriptions=1, quota=1000) as fake:
        # one worker runs the tables in order: the definitions' answer spends the quota, so the
        # queries that come after it (managed images, galleries, ...) would wait ten hours
        fake.add_fault("quota-spent",
                       when=lambda body, path: "microsoft.compute/galleries/images'" in body.get("query", ""))
        got = run(fake, max_wait=0.5, max_workers=1)
    after = _ORDER[_ORDER.index("gallery_images") + 1:]
    assert sorted(g["table"] for g in got.gaps) == sorted(after)
    assert all("quota" in g["detail"] and "0.5 s" in g["detail"] for g in got.gaps)
    assert {s["status"] for s in got.scope} == {"failed"}


def test_a_trickling_answer_is_bounded_by_the_timeout_and_retried():
    with make_fake(subscriptions=1) as fake:
        # one byte every 50 ms: each read is quick, the whole answer would take minutes
        fake.add_fault("trickle", when=paging(VMQ), delay=0.05)
        got = run(fake, timeout=1)
    assert ids(got.rows) == expected(fake)
    # retried; on a loaded machine an ordinary answer may time out too
    assert set(got.stats["retries"]) == {"connection"} and got.stats["retries"]["connection"] >= 1
    assert got.gaps == []


# --- 10: one lone surrogate in a collected row -----------------------------------------------

def test_a_lone_surrogate_in_a_collected_row_is_a_problem_not_the_end():
    with make_fake(subscriptions=1) as fake:
        row = next(r for r in fake.resources if r["type"] == "microsoft.compute/galleries")
        row["tags"]["owner"] = "bad\ud800name"
        snapshot = collect(Scope(), credential=FakeCredential(), endpoint=fake.endpoint,
                           page_size=5, backoff=0.01)
    tags = snapshot.tables["resource_tags"]
    assert "bad\ufffdname" in set(tags["value"].astype(str))
    assert any("surrogate" in p for p in snapshot.manifest["problems"])
    assert len(snapshot.tables["machines"]) == 21


def test_a_page_of_machines_simdjson_refuses_is_read_by_the_standard_parser():
    """A machine-sized page is split by simdjson; one it refuses (a lone surrogate, a number
    beyond 64 bits) is read as the other pages are, its values repaired and named."""
    with make_fake(subscriptions=1) as fake:
        vms = [r for r in fake.resources if r["type"] == "microsoft.compute/virtualmachines"]
        vms[0]["tags"]["owner"] = "bad\ud800name"
        vms[-1]["properties"]["extra"] = 2**70
        snapshot = collect(Scope(), credential=FakeCredential(), endpoint=fake.endpoint,
                           page_size=5, backoff=0.01)
    assert "bad\ufffdname" in set(snapshot.tables["resource_tags"]["value"].astype(str))
    assert any("surrogate" in p for p in snapshot.manifest["problems"])
    assert len(snapshot.tables["machines"]) == 21


def test_subscriptions_lost_while_listing_the_tenant_are_a_scope_row():
    with make_fake(subscriptions=12, vms=1) as fake:
        fake.add_fault("skip-ahead", when=paging("resourcecontainers"))
        got = run(fake)
    tenant = [s for s in got.scope if s["status"] != "ok"]
    assert len(tenant) == 1 and tenant[0]["status"] == "incomplete"
    assert tenant[0]["subscription_id"].startswith("/") and "of 12 rows" in tenant[0]["detail"]
    assert any(g["table"] == "subscriptions" and g["status"] == "incomplete" for g in got.gaps)
