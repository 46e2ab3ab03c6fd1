"""REP: replication status (filled by a --deep collection)."""

import pytest

from tests.builders import version

PUBLISHED = "2026-11-14T14:00:00Z"  # 10 hours before AS_OF


def region(name, state, progress=100, details=""):
    return {"region": name, "state": state, "progress": progress, "details": details}


def replicated(*summary, published=PUBLISHED, name="1.0.0"):
    row = version(name=name, published=published)
    row["properties"]["replicationStatus"] = {"summary": list(summary)}
    return row


@pytest.fixture
def rep003(run_rule):
    return lambda *versions, **kwargs: run_rule("REP003", *versions, **kwargs)


def test_rep003_failed_region(rep003):
    findings = rep003(
        replicated(region("West Europe", "Completed"), region("East US", "Failed", 40, "quota"))
    )
    assert len(findings) == 1
    finding = findings.iloc[0]
    assert finding["region"] == "eastus" and finding["severity"] == "high"
    assert finding["message"] == "1.0.0 failed to replicate in eastus."
    assert '"details":"quota"' in finding["evidence"]
    assert finding["fingerprint"].endswith("/versions/1.0.0@eastus")


def test_rep003_stuck_replicating(rep003):
    findings = rep003(replicated(region("West Europe", "Replicating", 35)))
    assert "still replicating (35% done) more than 6 hours" in findings.iloc[0]["message"]


def test_rep003_recent_replication_is_not_stuck(rep003):
    recent = replicated(region("westeurope", "Replicating", 35), published="2026-11-14T23:00:00Z")
    assert rep003(recent).empty
    assert len(rep003(recent, params={"stuck_hours": 0.5})) == 1


def test_rep003_pass(rep003):
    assert rep003(replicated(region("West Europe", "Completed"), region("East US", "Completed"))).empty


def test_rep003_without_deep_collection_has_nothing_to_judge(rep003):
    assert rep003(version()).empty
