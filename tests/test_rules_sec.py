"""SEC: policy violations, Trusted Launch and encryption of image versions (as-of 2026-11-15),
on GET bodies of the API versions that carry (or lack) each property."""

import json

from auditor.columnar import normalize_lines
from tests.builders import (
    azure_fixture,
    definition,
    gallery,
    gallery_ref,
    version,
    vm,
    vmss,
)
from tests.test_columnar import assert_same, by_columns, by_resource, json_lines

VIOLATION = "gallery_image_version_2024_03_03_policy_violation"
TRUSTED = "gallery_image_definition_2024_03_03_trusted_launch_supported"
CONFIDENTIAL = "gallery_image_definition_2024_03_03_confidential_vm"
CONFIDENTIAL_VERSION = "gallery_image_version_2022_03_03_confidential_vm"
STANDARD_VM = "vm_security_type_standard_2025_11_01"


def test_fixture_shapes_give_the_same_columns_both_ways():
    data = json_lines([gallery(), azure_fixture(TRUSTED), azure_fixture(CONFIDENTIAL),
                       azure_fixture(VIOLATION), azure_fixture(CONFIDENTIAL_VERSION),
                       azure_fixture(STANDARD_VM), azure_fixture("vmss_managed_image_2024_03_01"),
                       azure_fixture("resource_graph_vm_generation_1"),
                       azure_fixture("gallery_version_2019-03-01")])
    assert normalize_lines(data) is not None
    assert_same(by_columns(data), by_resource(data))


def test_sec001_triggers_on_a_reported_version(run_rule):
    findings = run_rule("SEC001", gallery(), definition(), azure_fixture(VIOLATION))
    assert findings.iloc[0]["message"] == (
        "Image version base/1.0.0 is reported for a policy violation; Azure lists: "
        "ImageFlaggedUnsafe: "
        "This image was flagged as unsafe by a malware scan.")


def test_sec001_triggers_on_listed_violations_without_the_flag(run_rule):
    listed = version()
    listed["properties"]["safetyProfile"]["policyViolations"] = [{"category": "Other"}]
    findings = run_rule("SEC001", gallery(), definition(), listed)
    assert findings.iloc[0]["message"].endswith("policy violation; Azure lists: Other")


def test_sec001_pass_when_not_reported_or_unknown(run_rule):
    clean = azure_fixture(CONFIDENTIAL_VERSION)  # reportedForPolicyViolation false
    older = azure_fixture("gallery_version_2019-03-01")  # no such property before 2022-03-03
    assert run_rule("SEC001", gallery(), definition(), azure_fixture(CONFIDENTIAL), clean,
                    older).empty


def test_sec002_triggers_on_generation_1_definitions_and_their_production_machines(run_rule):
    findings = run_rule("SEC002", gallery(), definition(hyperVGeneration="V1"), version(),
                        vm("prod", image=gallery_ref()),
                        vm("dev", image=gallery_ref(), tags={"environment": "dev"}))
    assert sorted(findings["resource_name"]) == ["base", "prod"]
    machine = findings[findings["resource_name"] == "prod"].iloc[0]
    assert machine["message"] == "prod runs on Generation 1, which cannot use Trusted Launch."
    assert machine["resource_type"] == "Microsoft.Compute/virtualMachines"
    definition_row = findings[findings["resource_name"] == "base"].iloc[0]
    assert definition_row["resource_type"] == "Microsoft.Compute/galleries/images"
    assert "hyperVGeneration V1" in definition_row["message"]


def test_sec002_triggers_on_a_generation_1_vm_as_resource_graph_reports_it(run_rule):
    findings = run_rule("SEC002", azure_fixture("resource_graph_vm_generation_1"))
    assert findings.iloc[0]["message"] == (
        "vm-erp-01 runs on Generation 1, which cannot use Trusted Launch.")


def test_sec002_triggers_on_a_managed_image_of_generation_1(run_rule):
    image = azure_fixture("managed_image_zone_resilient")  # API 2024-11-01
    image["properties"]["hyperVGeneration"] = "V1"
    findings = run_rule("SEC002", image, vm("a", image={"id": image["id"]}))
    assert list(findings["resource_name"]) == ["a"]


def test_sec002_triggers_on_standard_machine_from_trusted_launch_supported_image(run_rule):
    findings = run_rule("SEC002", gallery(), azure_fixture(TRUSTED),
                        version(definition_name="tl"), azure_fixture(STANDARD_VM))
    assert findings.iloc[0]["message"] == (
        "vm-std runs securityType Standard from an image whose definition is "
        "TrustedLaunchSupported.")


def test_sec002_triggers_on_explicit_standard_definition_and_absent_when_configured(run_rule):
    resources = [gallery(), definition("std", features=[{"name": "SecurityType",
                                                          "value": "Standard"}]),
                 definition("bare")]
    assert list(run_rule("SEC002", *resources)["resource_name"]) == ["std"]
    findings = run_rule("SEC002", *resources, params={"absent_security_type_is_standard": True})
    assert sorted(findings["resource_name"]) == ["bare", "std"]


def test_sec002_pass_trusted_launch_or_unknown(run_rule):
    trusted_vm = azure_fixture(STANDARD_VM)
    trusted_vm.update(id=trusted_vm["id"].replace("vm-std", "vm-tl"), name="vm-tl")
    trusted_vm["properties"]["securityProfile"] = {"securityType": "TrustedLaunch"}
    unknown_vm = vm("older", image=gallery_ref("tl"))  # no securityProfile: unknown
    scale_set = vmss("ss", image=gallery_ref("tl"))
    scale_set["properties"]["virtualMachineProfile"]["securityProfile"] = {
        "securityType": "TrustedLaunch"}
    generation_2 = azure_fixture("resource_graph_vm_generation_1")
    generation_2["properties"]["extended"]["instanceView"]["hyperVGeneration"] = "V2"
    assert run_rule("SEC002", gallery(), azure_fixture(TRUSTED), definition(),
                    version(definition_name="tl"), trusted_vm, unknown_vm, scale_set, vm(),
                    generation_2).empty


def test_sec003_triggers_per_region_without_customer_managed_key(run_rule):
    findings = run_rule("SEC003", gallery(), definition(), azure_fixture(VIOLATION))
    assert list(findings["region"]) == ["eastus"]
    assert findings.iloc[0]["message"] == (
        "Image version base/1.0.0 in eastus has no disk encryption set (customer-managed key) "
        "for its OS disk; 1 of 1 data disk(s) without a disk encryption set.")


def test_sec003_triggers_on_a_data_disk_without_customer_managed_key(run_rule):
    partly = azure_fixture(VIOLATION)
    partly["properties"]["publishingProfile"]["targetRegions"][0]["encryption"][
        "dataDiskImages"] = []
    findings = run_rule("SEC003", gallery(), definition(), partly)
    by_region = dict(zip(findings["region"], findings["message"], strict=True))
    assert by_region["westus"] == (
        "Image version base/1.0.0 in westus has 1 of 1 data disk(s) without a disk "
        "encryption set.")


def test_sec003_triggers_on_confidential_vm_encryption_gaps(run_rule):
    findings = run_rule("SEC003", gallery(), azure_fixture(CONFIDENTIAL),
                        azure_fixture(CONFIDENTIAL_VERSION),
                        params={"require_customer_managed_keys": False})
    by_region = dict(zip(findings["region"], findings["message"], strict=True))
    assert sorted(by_region) == ["northeurope", "swedencentral"]
    assert "EncryptedWithCmk without secureVMDiskEncryptionSetId" in by_region["northeurope"]
    assert by_region["swedencentral"].endswith(
        "a confidential VM image without confidentialVMEncryptionType.")


def test_sec003_pass_when_encrypted_or_not_required(run_rule, rules):
    assert rules["SEC003"].enabled is False  # opt-in
    encrypted = azure_fixture(VIOLATION)
    encrypted["properties"]["publishingProfile"]["targetRegions"].pop()
    assert run_rule("SEC003", gallery(), definition(), encrypted).empty
    assert run_rule("SEC003", gallery(), definition(), version(),
                    params={"require_customer_managed_keys": False}).empty


def test_the_collector_brings_what_the_rules_read(rules):
    """The Resource Graph queries keep `properties` whole: the safety profile, features,
    target regions' encryption and securityProfile reach the snapshot through the real SDK
    and the fake Resource Graph server."""
    from auditor.engine import evaluate
    from auditor.estate import Estate
    from auditor.snapshot import build_snapshot
    from tests.builders import SUB
    from tests.fake_arg import FakeArg, subscription_id
    from tests.test_collect import run

    sub = subscription_id(1)
    rows = []
    for item in (azure_fixture(TRUSTED), version(definition_name="tl"), azure_fixture(VIOLATION),
                 azure_fixture(STANDARD_VM)):
        row = json.loads(json.dumps(item).replace(SUB, sub))  # as Resource Graph gives rows
        rows.append({**row, "type": row["type"].lower(), "subscriptionId": sub,
                     "resourceGroup": "rg-img"})
    with FakeArg(rows, subscriptions={sub: "sub-0001"}, window=0.25) as fake:
        got = run(fake)
    snapshot = build_snapshot(got.rows)
    tables = snapshot.tables
    assert tables["image_definitions"]["security_type"].tolist() == ["TrustedLaunchSupported"]
    assert tables["machines"]["security_type"].tolist() == ["Standard"]
    assert tables["version_regions"]["disk_encryption_set_id"].notna().sum() == 1
    findings = evaluate(Estate(snapshot), [rules["SEC001"], rules["SEC002"]])
    assert sorted(findings["rule_id"]) == ["SEC001", "SEC002"]
