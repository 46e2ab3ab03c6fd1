"""COV: coverage of the scope, and of machines no image rule can judge."""

import copy

import pandas as pd

from auditor.columnar import normalize_lines
from auditor.engine import evaluate, load_rules
from auditor.estate import Estate
from auditor.importer import import_files
from tests.builders import AS_OF, azure_fixture, gallery_ref, rid, vm, vmss
from tests.builders import SUB as SUB_OF_BUILDERS
from tests.test_columnar import json_lines

SUB = "99999999-0000-0000-0000-000000000001"


def test_cov001_triggers_on_denied_and_failed(run_rule):
    scope = [{"subscription_id": SUB, "display_name": "Contractors", "status": "denied",
              "detail": "AuthorizationFailed"},
             {"subscription_id": "/providers/Microsoft.Management/managementGroups/mg1",
              "display_name": "management group mg1", "status": "failed", "detail": "HTTP 500"},
             {"subscription_id": "11111111-0000-0000-0000-000000000002", "display_name": "Fine",
              "status": "ok", "detail": ""}]
    findings = run_rule("COV001", scope=scope)
    assert len(findings) == 2
    denied = findings[findings["resource_name"] == "Contractors"].iloc[0]
    assert denied["resource_type"] == "Microsoft.Resources/subscriptions"
    assert denied["fingerprint"] == f"COV001:/subscriptions/{SUB}"
    assert "denied (AuthorizationFailed)" in denied["message"]
    assert "managementgroups/mg1" in " ".join(findings["fingerprint"])


def test_cov001_pass_all_read(run_rule):
    assert run_rule("COV001", scope=[{"subscription_id": SUB, "display_name": "x",
                                      "status": "ok", "detail": ""}]).empty


# --- COV002: machines whose image lineage is unknown (OS disk attached) ---------------------

ATTACHED = "vm_attached_os_disk_2022-11-01"


def _resource_graph_row(body: dict, name: str) -> dict:
    """The ARM body as a Resource Graph `resources` row: lower-case type, subscription and
    group beside it, properties.extended.instanceView added."""
    row = copy.deepcopy(body)
    row.update(id=body["id"].replace(body["name"], name), name=name,
               type="microsoft.compute/virtualmachines", subscriptionId=SUB_OF_BUILDERS,
               resourceGroup="rg-img", tenantId="00000000-0000-0000-0000-000000000000",
               kind="", managedBy="", sku=None, plan=None, zones=None, extendedLocation=None)
    row["properties"]["extended"] = {"instanceView": {
        "computerName": None, "hyperVGeneration": "V1",
        "powerState": {"code": "PowerState/running", "displayStatus": "VM running"}}}
    return row


def _cli_show(body: dict, name: str) -> dict:
    """The ARM body as `az vm show` prints it: properties lifted beside id and name, every
    model attribute present, null where unset (imageReference and osProfile among them)."""
    props = copy.deepcopy(body["properties"])
    props["storageProfile"]["imageReference"] = None
    props["storageProfile"]["osDisk"].update(diffDiskSettings=None, image=None, vhd=None,
                                             writeAcceleratorEnabled=None)
    return {"id": body["id"].replace(body["name"], name), "name": name,
            "type": "Microsoft.Compute/virtualMachines", "location": body["location"],
            "resourceGroup": "rg-img", "tags": body["tags"], "osProfile": None,
            "licenseType": None, "plan": None, **props}


def _attached_in_three_shapes() -> list[dict]:
    body = azure_fixture(ATTACHED)
    return [body, _resource_graph_row(body, "vm-asr-failover-01"),
            _cli_show(body, "vm-backup-restore-01")]


def test_cov002_triggers_on_an_attached_os_disk_in_each_shape(run_rule):
    findings = run_rule("COV002", *_attached_in_three_shapes())
    assert sorted(findings["resource_name"]) == ["vm-asr-failover-01", "vm-backup-restore-01",
                                                 "vm-restored-01"]
    one = findings[findings["resource_name"] == "vm-restored-01"].iloc[0]
    assert one["severity"] == "info"
    assert one["resource_type"] == "Microsoft.Compute/virtualMachines"
    assert one["message"] == ("vm-restored-01 has no image lineage (OS disk attached, "
                              "createOption Attach): no image rule can judge it.")


def test_cov002_triggers_through_an_import_taken_column_by_column(tmp_path):
    lines = json_lines(_attached_in_three_shapes()[:2] + [vm("vm-web-01"),
                                                          vm("vm-gal-01", image=gallery_ref())])
    assert normalize_lines(lines) is not None  # the columnar path, not the reference
    path = tmp_path / "estate.jsonl"
    path.write_bytes(lines)
    estate = Estate(import_files([path], collected_at=AS_OF), pd.Timestamp(AS_OF))
    rule = next(r for r in load_rules() if r.id == "COV002")
    findings = evaluate(estate, [rule])
    assert sorted(findings["resource_name"]) == ["vm-asr-failover-01", "vm-restored-01"]
    assert (findings["message"].str.contains("createOption Attach")).all()


def test_cov002_pass_machines_with_a_known_image(run_rule):
    from_image = {"osType": "Linux", "createOption": "FromImage",
                  "managedDisk": {"storageAccountType": "Premium_LRS"}}
    assert run_rule("COV002", vm("vm-market", os_disk=from_image),
                    vm("vm-gallery", image=gallery_ref(), os_disk=from_image),
                    vm("vm-shared", image={"sharedGalleryImageId":
                                           "/SharedGalleries/G/Images/I/Versions/1.0.0"}),
                    vm("vm-managed", image={"id": rid("images", "golden")}),
                    vm("vm-vhd", image={}, os_disk={"createOption": "FromImage", "image": {
                        "uri": "https://a.blob.core.windows.net/vhds/golden.vhd"}}),
                    vmss("ss-market")).empty


def test_cov002_names_what_it_knows_of_an_unknown_lineage(run_rule):
    """An older snapshot (or a body) without the create option is still reported, and so is
    an image reference of no known form."""
    odd_id = "/subscriptions/x/providers/Microsoft.Foo/things/golden"
    findings = run_rule(
        "COV002",
        vm("vm-old", image={}, os_disk={"osType": "Linux"}),
        vm("vm-odd", image={"id": odd_id}, os_disk={"createOption": "FromImage"}),
        vm("vm-empty", image={}, os_disk={"createOption": "FromImage"}))
    lineage = dict(zip(findings["resource_name"], findings["message"], strict=True))
    assert "(OS disk create option not recorded)" in lineage["vm-old"]
    assert f"createOption FromImage, image reference {odd_id.lower()} is of no kind" \
        in lineage["vm-odd"]
    assert "(createOption FromImage, no image reference)" in lineage["vm-empty"]


def test_cov002_flexible_set_without_a_model_is_left_to_its_members(run_rule):
    """A Flexible scale set created without a VM profile records no OS disk; its member with
    an attached disk is reported on its own, the set is not."""
    shell = {"id": rid("virtualMachineScaleSets", "flex-empty"), "name": "flex-empty",
             "type": "Microsoft.Compute/virtualMachineScaleSets", "location": "westeurope",
             "properties": {"orchestrationMode": "Flexible", "platformFaultDomainCount": 1,
                            "provisioningState": "Succeeded"}}
    member = azure_fixture(ATTACHED) | {"name": "vm-flex-member",
                                        "id": rid("virtualMachines", "vm-flex-member")}
    member["properties"]["virtualMachineScaleSet"] = {"id": shell["id"]}
    findings = run_rule("COV002", shell, member)
    assert list(findings["resource_name"]) == ["vm-flex-member"]


def test_cov002_reads_snapshots_older_than_the_column(tmp_path):
    """A snapshot written before `os_disk_create_option` existed reads it as null: a machine
    of unknown lineage there is still reported, its create option "not recorded"."""
    from auditor.snapshot import Snapshot
    from tests.builders import snapshot_of

    snapshot = snapshot_of(azure_fixture(ATTACHED), vm("vm-web-01"))
    tables = dict(snapshot.arrow_tables)
    tables["machines"] = tables["machines"].drop_columns(["os_disk_create_option"])
    Snapshot(tables, snapshot.manifest).write(tmp_path / "old")
    older = Snapshot.read(tmp_path / "old")
    assert older.arrow_tables["machines"]["os_disk_create_option"].null_count == 2
    rule = next(r for r in load_rules() if r.id == "COV002")
    findings = evaluate(Estate(older, pd.Timestamp(AS_OF)), [rule])
    assert list(findings["message"]) == [
        "vm-restored-01 has no image lineage (OS disk create option not recorded): no image "
        "rule can judge it."]
