"""LIC: a `plan` marks a third-party Marketplace purchase (fixtures in
tests/fixtures/azure/licensing, Compute API 2021-03-01 shapes)."""

import json
from pathlib import Path

from tests.builders import vm

FIXTURES = Path(__file__).parent / "fixtures" / "azure" / "licensing"
PLAN = {"name": "fortinet_fg-vm_payg_2023", "publisher": "fortinet",
        "product": "fortinet_fortigate-vm_v5"}


def fixture(name: str) -> list[dict]:
    document = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return document["value"] if "value" in document else [document]


def test_lic001_triggers_on_third_party_plan(run_rule):
    findings = run_rule("LIC001", *fixture("vm_third_party_plan_2021-03-01.json"))
    row = findings.iloc[0]
    assert row["message"] == (
        "fw-edge-01 was deployed from third-party Marketplace plan "
        "fortinet/fortinet_fortigate-vm_v5/fortinet_fg-vm_payg_2023; the publisher's terms for it "
        "(free, bring-your-own-licence or billed per hour) belong in the licence inventory.")
    assert "charge" not in row["message"] and "paid" not in row["title"].lower()
    assert json.loads(row["evidence"])["license_type"] is None


def test_lic001_shows_license_type_in_evidence(run_rule):
    machine = vm("byol", plan=PLAN)
    machine["properties"]["licenseType"] = "Windows_Server"
    findings = run_rule("LIC001", machine)
    assert json.loads(findings.iloc[0]["evidence"])["license_type"] == "Windows_Server"


def test_lic001_pass_first_party_pay_as_you_go_and_hybrid_benefit(run_rule):
    assert run_rule("LIC001", *fixture("vm_windows_payg_license_type_2021-03-01.json")).empty


def test_lic001_pass_without_plan(run_rule):
    assert run_rule("LIC001", vm()).empty
