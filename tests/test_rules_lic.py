"""LIC: a `plan` marks a third-party Marketplace purchase (fixtures in
tests/fixtures/azure/licensing, Compute API 2021-03-01 shapes)."""

import json
from pathlib import Path

from tests.builders import (
    azure_shape,
    definition,
    gallery,
    gallery_ref,
    managed_image,
    version,
    vm,
)

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


# --- LIC002 ----------------------------------------------------------------------------------

def _built_from(source_id: str) -> dict:
    """The builder's version 1.0.0 of `base`, built from `source_id`."""
    item = version()
    item["properties"]["storageProfile"]["source"] = {"id": source_id}
    return item


def test_lic002_triggers_on_definition_without_the_plan_of_its_source(run_rule):
    build_vm = fixture("vm_third_party_plan_2021-03-01.json")[0]
    findings = run_rule("LIC002", gallery(), definition(), _built_from(build_vm["id"]), build_vm)
    row = findings.iloc[0]
    assert row["resource_type"] == "Microsoft.Compute/galleries/images"
    assert row["message"] == (
        "base has no purchasePlan, but version 1.0.0 was built from fw-edge-01, which carries "
        "Marketplace plan fortinet/fortinet_fortigate-vm_v5/fortinet_fg-vm_payg_2023: "
        "deployments from it fail with \"different plan\".")
    # Through a managed image captured from the build VM.
    image = managed_image("fw-image")
    image["properties"]["sourceVirtualMachine"] = {"id": build_vm["id"]}
    findings = run_rule("LIC002", gallery(), definition(), _built_from(image["id"]), image,
                        build_vm)
    assert "was built from fw-image, which carries Marketplace plan" in findings.iloc[0]["message"]


def test_lic002_triggers_on_machine_plan_other_than_its_definition(run_rule):
    planned = azure_shape("gallery_image_purchase_plan_2024-03-03.json")
    bare = vm("no-plan", image=gallery_ref("fortigate"))
    findings = run_rule("LIC002", gallery(), planned, version(definition_name="fortigate"), bare)
    assert findings.iloc[0]["message"] == (
        "no-plan carries no Marketplace plan but its image definition fortigate has purchasePlan "
        "fortinet/fortinet_fortigate-vm_v5/fortinet_fg-vm_payg_2023: new deployments and "
        "scale-outs from it fail with \"different plan\".")
    assert findings.iloc[0]["resource_type"] == "Microsoft.Compute/virtualMachines"


def test_lic002_pass_matching_plans_and_unknown_sources(run_rule):
    planned = azure_shape("gallery_image_purchase_plan_2024-03-03.json")
    upper = {key: value.upper() for key, value in PLAN.items()}
    assert run_rule("LIC002", gallery(), planned, version(definition_name="fortigate"),
                    vm("same", image=gallery_ref("fortigate"), plan=upper)).empty
    # The build VM was deleted after capture: its plan is unknown, not missing.
    gone = fixture("vm_third_party_plan_2021-03-01.json")[0]["id"]
    assert run_rule("LIC002", gallery(), definition(), _built_from(gone),
                    vm("app", image=gallery_ref())).empty
    # A definition outside the snapshot is not judged.
    assert run_rule("LIC002", vm("other", image=gallery_ref("elsewhere"), plan=PLAN)).empty


def test_lic002_reads_az_sig_image_definition_list_output(run_rule):
    listed = json.loads((FIXTURES.parent / "cli" / "az_sig_image_definition_list_purchase_plan.json")
                        .read_text(encoding="utf-8"))
    machine = vm("other-plan", image=gallery_ref("fortigate"),
                 plan=PLAN | {"name": "fortinet_fg-vm_byol"})
    findings = run_rule("LIC002", gallery(), *listed, version(definition_name="fortigate"), machine)
    assert findings.iloc[0]["message"].startswith(
        "other-plan carries Marketplace plan fortinet/fortinet_fortigate-vm_v5/fortinet_fg-vm_byol "
        "but its image definition fortigate has purchasePlan "
        "fortinet/fortinet_fortigate-vm_v5/fortinet_fg-vm_payg_2023")
