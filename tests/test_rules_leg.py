"""LEG: machines whose OS disk is an unmanaged VHD. Fixtures in tests/fixtures/azure/legacy
are ARM GET bodies of the API versions their names give (see the folder's README)."""

import json
from pathlib import Path

from tests.builders import managed_image, marketplace, rid, vm, vmss

FIXTURES = Path(__file__).parent / "fixtures" / "azure" / "legacy"
BLOB = "https://legacy.blob.core.windows.net/vhds/gold.vhd"


def fixture(name: str) -> list[dict]:
    document = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return document["value"] if "value" in document else [document]


def test_leg001_triggers_on_marketplace_vm_with_unmanaged_os_disk(run_rule):
    findings = run_rule("LEG001", *fixture("vm_marketplace_unmanaged_os_disk_2017-12-01.json"))
    assert len(findings) == 1
    row = findings.iloc[0]
    assert row["severity"] == "critical"
    assert row["message"] == (
        "web-classic-01 boots from an unmanaged OS disk "
        "https://webclassicdisks.blob.core.windows.net/vhds/web-classic-01-osdisk.vhd "
        "(deployed from Marketplace image Canonical:UbuntuServer:16.04-LTS); unmanaged disks "
        "were retired on 31 March 2026 and such machines cannot start.")
    assert json.loads(row["evidence"])["image_kind"] == "marketplace"


def test_leg001_triggers_on_user_image_vhd_and_hides_the_sas_token(run_rule):
    findings = run_rule("LEG001", *fixture("vm_user_image_vhd_2019-03-01.json"))
    message = findings.iloc[0]["message"]
    assert "an unmanaged OS disk https://erpclassicdisks.blob.core.windows.net/vhds/" \
           "erp-classic-01-osdisk.vhd (deployed from a user image VHD)" in message
    assert "sig=" not in message and "sig=" not in findings.iloc[0]["evidence"]


def test_leg001_triggers_on_scale_set_vhd_containers(run_rule):
    findings = run_rule("LEG001", *fixture("vmss_vhd_containers_2017-12-01.json"))
    assert list(findings["resource_type"]) == ["Microsoft.Compute/virtualMachineScaleSets"]
    assert "unmanaged OS disks, page blobs under https://batchclassic0.blob.core.windows.net/vhds " \
           "(deployed from Marketplace image OpenLogic:CentOS:7.5)" in findings.iloc[0]["message"]


def test_leg001_triggers_on_builder_shapes(run_rule):
    findings = run_rule(
        "LEG001", vm("old", image={}, os_disk={"osType": "Linux", "image": {"uri": BLOB + "?sig=x"}}),
        vm("market", image=marketplace(), os_disk={"vhd": {"uri": BLOB}}))
    assert sorted(findings["resource_name"]) == ["market", "old"]


def test_leg001_pass_managed_disk_from_image_captured_from_blob(run_rule):
    resources = fixture("vm_managed_disk_from_blob_image_2019-07-01.json")
    assert run_rule("LEG001", *resources).empty


def test_leg001_pass_managed(run_rule):
    scale_set = vmss("ss")
    scale_set["properties"]["virtualMachineProfile"]["storageProfile"]["osDisk"] = {
        "vhdContainers": [], "managedDisk": {"storageAccountType": "Premium_LRS"}}
    assert run_rule("LEG001", managed_image("cap-1.0.0", blob_uri=BLOB),
                    vm("a", image={"id": rid("images", "cap-1.0.0")}), vm("b"), scale_set).empty



def test_leg001_reads_snapshots_older_than_the_column():
    """A snapshot taken before `os_disk_unmanaged` existed has it null once loaded: such a
    machine is judged by its `vhd_uri`."""
    import pyarrow as pa

    from auditor.engine import evaluate, load_rules
    from auditor.estate import Estate
    from tests.builders import snapshot_of

    snapshot = snapshot_of(*fixture("vm_marketplace_unmanaged_os_disk_2017-12-01.json"), vm("ok"))
    machines = snapshot.arrow_tables["machines"]
    at = machines.schema.get_field_index("os_disk_unmanaged")
    snapshot.arrow_tables["machines"] = machines.set_column(
        at, machines.schema.field(at), pa.nulls(machines.num_rows, pa.bool_()))
    findings = evaluate(Estate(snapshot), [r for r in load_rules() if r.id == "LEG001"])
    assert list(findings["resource_name"]) == ["web-classic-01"]
