"""EXM rules: they judge the exemptions file's entries against the audit's findings and its
as-of date (matching and validation are in test_exemptions)."""

import json

import pytest

from auditor.engine import apply_config, evaluate
from tests.builders import compliant_estate_resources, estate_of, rid
from tests.test_exemptions import audit, by_rule, entry


@pytest.fixture
def pack(rules):
    return list(rules.values())


def test_exm001_not_before_the_day_after_expiry(tmp_path, pack):
    findings = audit(tmp_path, pack, entry(expires="2026-11-15"), machines=("vm-a",),
                     as_of="2026-11-15T23:59:00Z")
    assert by_rule(findings, "PIN001")["exempted"].all()
    assert by_rule(findings, "EXM001").empty


def test_exm001_expired_exemption_does_not_exempt(tmp_path, pack):
    findings = audit(tmp_path, pack, entry(expires="2026-11-14"), machines=("vm-a",),
                     as_of="2026-11-15T00:00:00Z")
    assert not by_rule(findings, "PIN001")["exempted"].any()
    expired = by_rule(findings, "EXM001")
    assert len(expired) == 1 and by_rule(findings, "EXM002").empty
    found = expired.iloc[0]
    assert found["severity"] == "medium" and found["resource_type"] == "image-audit/exemption"
    assert found["resource_id"] == "exemption:PIN001:" + rid("virtualMachines", "vm-a")
    assert found["message"] == (
        f"exemptions.yaml entry 1 (PIN001 on {rid('virtualMachines', 'vm-a')}, approved by "
        "ciso@example.com) expired on 2026-11-14; it no longer exempts the 1 finding(s) it "
        "matches.")
    assert json.loads(found["evidence"])["expires"] == "2026-11-14"


def test_exm002_exemption_that_matches_nothing(tmp_path, pack):
    findings = audit(tmp_path, pack, entry(resource=rid("virtualMachines", "gone")))
    unused = by_rule(findings, "EXM002")
    assert list(unused["severity"]) == ["info"]
    assert "matches no finding" in unused["message"].iloc[0]
    assert findings["rule_id"].iloc[0] == "PIN001"  # still ordered most severe first


def test_exm002_not_for_an_entry_that_matches(tmp_path, pack):
    findings = audit(tmp_path, pack, entry(), machines=("vm-a",))
    assert by_rule(findings, "EXM002").empty and by_rule(findings, "EXM001").empty


def test_exm002_not_for_an_expired_entry_that_matches_nothing(tmp_path, pack):
    """An expired entry is EXM001 whether or not it matches: one finding per problem."""
    findings = audit(tmp_path, pack, entry(resource="/gone", expires="2020-01-01"))
    assert by_rule(findings, "EXM002").empty
    assert list(by_rule(findings, "EXM001")["message"].str.contains("the 0 finding")) == [True]


def test_exm002_fingerprint_is_stable_when_the_file_is_reordered(tmp_path, pack):
    gone = entry(resource=rid("virtualMachines", "Gone"))
    other = entry(resource=rid("virtualMachines", "vm-a"))
    first = by_rule(audit(tmp_path, pack, gone, other), "EXM002")
    second = by_rule(audit(tmp_path, pack, other, gone), "EXM002")
    assert list(first["fingerprint"]) == list(second["fingerprint"]) == [
        "EXM002:exemption:pin001:" + rid("virtualMachines", "gone").lower()]
    assert list(first["resource_name"]) != list(second["resource_name"])


def test_exm_rules_follow_the_config(tmp_path, pack):
    rules = apply_config(pack, {"rules": {"EXM002": {"enabled": False},
                                          "EXM001": {"severity": "high"}}})
    findings = audit(tmp_path, pack, entry(resource="/nothing"), entry(expires="2020-01-01"),
                     rules=rules)
    assert by_rule(findings, "EXM002").empty
    assert list(by_rule(findings, "EXM001")["severity"]) == ["high"]


def test_exm_rules_do_not_run_without_an_exemptions_file(pack):
    findings = evaluate(estate_of(*compliant_estate_resources()), pack)
    assert findings.empty
