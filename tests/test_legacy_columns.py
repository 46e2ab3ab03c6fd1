"""The machines columns read for unmanaged disks and licensing (`vhd_uri`, `os_disk_unmanaged`,
`license_type`): both normalisers read them alike from real response shapes."""

import json
from pathlib import Path

import pandas as pd
import pytest

from auditor.columnar import normalize_lines
from tests.builders import marketplace, vm, vmss
from tests.test_columnar import assert_same, by_columns, by_resource, json_lines

FIXTURES = Path(__file__).parent / "fixtures" / "azure"


def _resources(*names: str) -> list[dict]:
    out = []
    for name in names:
        document = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
        out += document["value"] if "value" in document else [document]
    return out


SHAPES = _resources(
    "legacy/vm_marketplace_unmanaged_os_disk_2017-12-01.json",
    "legacy/vm_user_image_vhd_2019-03-01.json",
    "legacy/vmss_vhd_containers_2017-12-01.json",
    "legacy/vm_managed_disk_from_blob_image_2019-07-01.json",
    "licensing/vm_third_party_plan_2021-03-01.json",
    "licensing/vm_windows_payg_license_type_2021-03-01.json",
) + [
    vm("empty-blobs", os_disk={"vhd": {"uri": ""}, "image": {"uri": ""}}),
    vm("query-only", os_disk={"vhd": {"uri": "?sv=1&sig=x"}}),
    vmss("no-containers") | {"properties": {"virtualMachineProfile": {"storageProfile": {
        "imageReference": marketplace(), "osDisk": {"vhdContainers": []}}}}},
    vmss("empty-container") | {"properties": {"virtualMachineProfile": {"storageProfile": {
        "imageReference": marketplace(), "osDisk": {"vhdContainers": ["", "https://b.blob/c"]}}}}},
]


def _value(value):
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _machines():
    data = json_lines(SHAPES)
    return by_resource(data).tables["machines"].to_pandas().set_index("name")


def test_columns_and_reference_agree():
    data = json_lines(SHAPES)
    assert normalize_lines(data) is not None  # taken column by column, not handed back
    assert_same(by_columns(data), by_resource(data))


@pytest.mark.parametrize("name, unmanaged, uri, kind", [
    ("web-classic-01", True,
     "https://webclassicdisks.blob.core.windows.net/vhds/web-classic-01-osdisk.vhd", "marketplace"),
    ("erp-classic-01", True,
     "https://erpclassicdisks.blob.core.windows.net/vhds/erp-classic-01-osdisk.vhd", "vhd"),
    ("batch-classic", True, "https://batchclassic0.blob.core.windows.net/vhds", "marketplace"),
    ("erp-migrated-01", False, None, "managed"),
    ("empty-blobs", False, None, "marketplace"),
    ("query-only", True, "", "marketplace"),
    ("no-containers", False, None, "marketplace"),
    ("empty-container", False, None, "marketplace"),
])
def test_unmanaged_os_disk_is_read_whatever_the_image(name, unmanaged, uri, kind):
    row = _machines().loc[name]
    assert bool(row["os_disk_unmanaged"]) is unmanaged
    assert _value(row["vhd_uri"]) == uri
    assert row["image_kind"] == kind  # the image's kind, not the disk's


@pytest.mark.parametrize("name, license_type", [
    ("erp-classic-01", "Windows_Server"), ("win-ahb-01", "Windows_Server"),
    ("rhel-byos", "RHEL_BYOS"), ("sql-payg-01", None), ("fw-edge-01", None)])
def test_license_type_is_read_for_vms_and_scale_sets(name, license_type):
    assert _value(_machines().loc[name, "license_type"]) == license_type


def test_machines_sheet_shows_os_disk_and_license_type():
    from auditor.estate import Estate
    from auditor.workbook import _machines_frame
    from tests.builders import snapshot_of

    estate = Estate(snapshot_of(*SHAPES))
    frame = _machines_frame(estate.machines, estate.usage).set_index("name")
    assert frame.loc["web-classic-01", "os_disk"] == "unmanaged VHD"
    assert frame.loc["erp-migrated-01", "os_disk"] == "managed"
    assert frame.loc["rhel-byos", "license_type"] == "RHEL_BYOS"
