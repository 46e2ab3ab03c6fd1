"""Cost lines, totals, finding costs and savings, on tiny estates with a known price table."""

import math

import pandas as pd
import pytest

from auditor.cli import main
from auditor.cost import estimate
from auditor.engine import FINDING_COLUMNS
from auditor.errors import AuditError
from auditor.prices import PRICE_COLUMNS
from tests.builders import (
    GOOD_TAGS,
    azure_fixture,
    definition,
    estate_of,
    gallery,
    managed_image,
    version,
    vm,
)

PRICES = pd.DataFrame([
    ("westeurope", "Standard_LRS", "USD", 0.05, "2024-01-01", "Standard HDD Managed Disks",
     "LRS Snapshots", "test"),
    ("westeurope", "Standard_ZRS", "USD", 0.06, "2024-01-01", "Standard HDD Managed Disks",
     "ZRS Snapshots", "test"),
    ("*", "Standard_LRS", "USD", 0.10, "2024-01-01", "Standard HDD Managed Disks",
     "LRS Snapshots", "test"),
], columns=PRICE_COLUMNS)


def with_data_disk(raw: dict, size_gb: float) -> dict:
    raw["properties"]["storageProfile"]["dataDiskImages"] = [{"lun": 0, "sizeInGB": size_gb}]
    return raw


def line(cost, region, kind="replica"):
    lines = cost.lines[(cost.lines["kind"] == kind) & (cost.lines["region"] == region)]
    assert len(lines) == 1
    return lines.iloc[0]


def test_replica_cost_is_size_times_replicas_times_regional_price():
    raw = with_data_disk(version(regions=(("West Europe", 2, "Standard_ZRS"),
                                          ("East US", 1, "Standard_LRS"))), 10)
    cost = estimate(estate_of(gallery(), definition(), raw), PRICES)
    west, east = line(cost, "westeurope"), line(cost, "eastus")
    assert west["size_gb"] == 40 and west["billed_gb"] == 80
    assert west["monthly_cost"] == pytest.approx(80 * 0.06)
    assert west["price_row"].startswith("westeurope/Standard_ZRS (Standard HDD Managed Disks")
    assert east["monthly_cost"] == pytest.approx(40 * 0.10)
    assert east["price_row"].startswith("*/Standard_LRS")
    assert "* row used" in east["assumptions"] and "upper bound" in east["assumptions"]
    assert west["name"] == "gal/base/1.0.0" and west["team"] == "platform"


def test_occupancy_scales_every_line_and_changes_the_basis():
    estate = estate_of(gallery(), definition(), version())
    full, half = estimate(estate, PRICES), estimate(estate, PRICES, occupancy=0.5)
    assert half.lines["monthly_cost"].sum() == pytest.approx(full.lines["monthly_cost"].sum() / 2)
    assert "upper bound" in full.totals()["basis"].iloc[0]
    assert "0.5 x provisioned" in half.totals()["basis"].iloc[0]
    with pytest.raises(AuditError, match="--occupancy"):
        estimate(estate, PRICES, occupancy=1.5)


def test_missing_size_or_price_is_unpriced_never_zero():
    no_size = version("1.0.0")
    del no_size["properties"]["storageProfile"]["osDiskImage"]["sizeInGB"]
    no_price = version("2.0.0", regions=(("West Europe", 1, "Premium_LRS"),))
    cost = estimate(estate_of(gallery(), definition(), no_size, no_price), PRICES)
    statuses = dict(zip(cost.lines["version"], cost.lines["status"], strict=True))
    assert statuses["1.0.0"].startswith("unpriced: disk size")
    assert statuses["2.0.0"] == "unpriced: no price for Premium_LRS in westeurope (nor a * row)"
    assert cost.lines["monthly_cost"].isna().all()
    total = cost.totals().iloc[0]
    assert total["unpriced"] == 2 and total["priced"] == 0 and total["monthly_cost"] == 0
    assert total["unpriced_gb"] == 30  # the line whose size is known
    assert cost.resource_costs.isna().all()


def test_managed_image_priced_as_a_snapshot_and_assumed_type_stated():
    typed = managed_image("img-a")
    untyped = managed_image("img-b")
    del untyped["properties"]["storageProfile"]["osDisk"]["storageAccountType"]
    cost = estimate(estate_of(typed, untyped), PRICES)
    images = cost.lines.set_index("name")
    assert images.loc["img-a", "monthly_cost"] == pytest.approx(30 * 0.05)
    assert images.loc["img-a", "gallery"] == "(managed images)"
    assert images.loc["img-b", "monthly_cost"] == pytest.approx(30 * 0.05)
    assert images.loc["img-b", "storage_type"] == "Standard_LRS"


def test_managed_image_is_a_standard_hdd_snapshot_whatever_its_disk_type():
    # osDisk.storageAccountType is the disk type of VMs created from the image (Premium_LRS
    # here); the image itself bills as a snapshot, ZRS when it is zone-resilient.
    zone_resilient = azure_fixture("managed_image_zone_resilient")
    premium = managed_image("img-p")
    premium["properties"]["storageProfile"]["osDisk"]["storageAccountType"] = "Premium_LRS"
    cost = estimate(estate_of(zone_resilient, premium), PRICES)
    images = cost.lines.set_index("name")
    assert images.loc["img-zr", "storage_type"] == "Standard_ZRS"
    assert images.loc["img-zr", "monthly_cost"] == pytest.approx(40 * 0.06)
    assert images.loc["img-zr", "price_row"].startswith(
        "westeurope/Standard_ZRS (Standard HDD Managed Disks ZRS Snapshots)")
    assert "zone-resilient" in images.loc["img-zr", "assumptions"]
    assert images.loc["img-p", "storage_type"] == "Standard_LRS"
    assert images.loc["img-p", "monthly_cost"] == pytest.approx(30 * 0.05)
    assert "Premium_LRS is the disk type of VMs created from it" in \
        images.loc["img-p", "assumptions"]


def test_a_shallow_version_bills_nothing_of_its_own_and_saves_nothing():
    shallow = azure_fixture("gallery_image_version_shallow")
    estate = estate_of(gallery(), definition(), shallow, version("1.0.0"))
    cost = estimate(estate, PRICES)
    row = cost.lines[cost.lines["version"] == "1.3.0"].iloc[0]
    assert row["kind"] == "replica (shallow)" and row["monthly_cost"] == 0
    assert row["replicas"] == 0 and row["billed_gb"] == 0
    assert row["status"].startswith("not billed: billed through its source")
    assert "billed through its source" in row["assumptions"]
    total = cost.totals().set_index(["section", "key"])
    assert total.loc[("total", "all image storage"), "priced"] == 1
    shallow_id = shallow["id"].lower()
    assert shallow_id not in cost.resource_costs.index
    savings = cost.savings(findings_for({"rule_id": "RET001", "resource_id": shallow["id"]}))
    assert savings.empty  # nothing of its own to save: no priced or unpriced saving


def test_a_missing_replica_count_is_one_and_said_so():
    old = azure_fixture("gallery_image_version_2022_03_03")  # North Europe: no count at all
    cost = estimate(estate_of(gallery(), definition(), old), PRICES)
    north = line(cost, "northeurope")
    assert north["replicas"] == 1 and north["status"] == "priced"
    assert "replica count not recorded: taken as 1 (the API default)" in north["assumptions"]
    assert line(cost, "westeurope")["replicas"] == 2
    edge = line(cost, "westus", kind="edge zone replica")
    assert edge["storage_type"] == "StandardSSD_LRS" and edge["replicas"] == 1
    assert "Edge Zone microsoftlosangeles1" in edge["assumptions"]


def test_additional_replica_sets_are_billed_lines_of_their_own():
    prices = pd.concat([PRICES, pd.DataFrame([
        ("westeurope", "Premium_LRS", "USD", 0.15, "2024-01-01", "Premium SSD Managed Disks",
         "LRS Snapshots", "test")], columns=PRICE_COLUMNS)], ignore_index=True)
    raw = azure_fixture("gallery_image_version_2024_03_03_additional_replica_sets")
    cost = estimate(estate_of(gallery(), definition(), raw), prices)
    lines = cost.lines.set_index("kind")
    assert lines.loc["replica", "monthly_cost"] == pytest.approx(30 * 0.05)
    extra = lines.loc["additional replica set"]
    assert extra["storage_type"] == "PremiumV2_LRS"
    assert extra["monthly_cost"] == pytest.approx(30 * 0.15)
    assert extra["price_row"].startswith("westeurope/Premium_LRS (Premium SSD Managed Disks")
    assert "no published snapshot meter" in extra["assumptions"]
    assert cost.resource_costs[raw["id"].lower()] == pytest.approx(30 * 0.05 + 30 * 0.15)


def test_gallery_totals_are_keyed_by_gallery_id_not_name():
    other = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-other/" \
            "providers/Microsoft.Compute/galleries/gal"
    twin = gallery()
    twin["id"], twin["resourceGroup"] = other, "rg-other"
    twin_version = version("2.0.0")
    twin_version["id"] = other + "/images/base/versions/2.0.0"
    cost = estimate(estate_of(gallery(), definition(), version("1.0.0"), twin, twin_version),
                    PRICES)
    by_gallery = cost.totals().query("section == 'gallery'").set_index("key")["monthly_cost"]
    assert len(by_gallery) == 2
    assert by_gallery[other] == pytest.approx(1.5)
    assert by_gallery[gallery()["id"]] == pytest.approx(1.5)


def test_totals_by_gallery_region_storage_type_and_team():
    cost = estimate(estate_of(
        gallery(), definition(), version("1.0.0"),
        version("1.1.0", tags=GOOD_TAGS | {"team": "data"},
                regions=(("West Europe", 1, "Standard_ZRS"),)),
        managed_image("img-a", tags={"environment": "dev"})), PRICES)
    totals = cost.totals().set_index(["section", "key"])["monthly_cost"]
    assert totals[("total", "all image storage")] == pytest.approx(1.5 + 1.8 + 1.5)
    assert totals[("gallery", gallery()["id"])] == pytest.approx(3.3)
    assert totals[("storage_type", "Standard_ZRS")] == pytest.approx(1.8)
    assert totals[("team", "data")] == pytest.approx(1.8)
    assert totals[("team", "(no team tag)")] == pytest.approx(1.5)
    assert totals[("region", "westeurope")] == pytest.approx(4.8)


def findings_for(*rows):
    frame = pd.DataFrame([{c: None for c in FINDING_COLUMNS} | row for row in rows])
    return frame.assign(exempted=frame["exempted"].fillna(False).astype(bool))


def test_findings_carry_the_cost_of_their_resource():
    estate = estate_of(gallery(), definition(), vm(),
                       version(regions=(("West Europe", 1, "Standard_LRS"),
                                        ("North Europe", 2, "Standard_LRS"))))
    cost = estimate(estate, PRICES)
    version_id = estate.image_versions["arm_id"].iloc[0]
    findings = cost.with_finding_costs(findings_for(
        {"rule_id": "RET001", "resource_id": version_id.upper()},
        {"rule_id": "PIN001", "resource_id": estate.machines["arm_id"].iloc[0]}))
    assert findings["monthly_cost"].iloc[0] == pytest.approx(30 * 0.05 + 60 * 0.10)
    assert math.isnan(findings["monthly_cost"].iloc[1])


def test_savings_per_rule_count_each_resource_once_and_skip_exempted():
    estate = estate_of(gallery(), definition(), version("1.0.0"), version("1.1.0"),
                       managed_image("img-a"))
    cost = estimate(estate, PRICES)
    ids = dict(zip(estate.image_versions["name"], estate.image_versions["arm_id"], strict=True))
    image = estate.managed_images["arm_id"].iloc[0]
    findings = findings_for(
        {"rule_id": "RET001", "resource_id": ids["1.0.0"]},
        {"rule_id": "STL001", "resource_id": ids["1.0.0"]},
        {"rule_id": "STL001", "resource_id": image},
        {"rule_id": "STL002", "resource_id": ids["1.0.0"]},
        {"rule_id": "RET001", "resource_id": ids["1.1.0"], "exempted": True},
        {"rule_id": "TAG001", "resource_id": ids["1.1.0"]},
        {"rule_id": "STL005", "resource_id": ids["1.1.0"]})
    savings = cost.savings(findings).set_index("key")["monthly_cost"]
    assert savings["RET001"] == pytest.approx(1.5)
    assert savings["STL001"] == pytest.approx(3.0)
    # a fix, not a deletion: no saving
    assert "TAG001" not in savings and "STL005" not in savings and "STL002" not in savings


def test_cost_command_prints_totals_and_writes_cost_csv(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["cost", "--sample", "-o", str(tmp_path), "--occupancy", "0.5"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "0.5 x provisioned disk size" in out
    for section in ("gallery", "region", "storage_type", "team", "savings"):
        assert f"\n  {section} " in out
    totals = pd.read_csv(tmp_path / "cost.csv", encoding="utf-8-sig")
    assert set(totals["section"]) == {"total", "gallery", "region", "storage_type", "team",
                                      "savings", "savings by rule"}
    lines = pd.read_csv(tmp_path / "cost_lines.csv", encoding="utf-8-sig")
    assert totals.loc[totals["section"] == "total", "monthly_cost"].iloc[0] == pytest.approx(
        lines["monthly_cost"].sum(), abs=0.01)


def test_cleanup_plan_and_savings_show_the_same_numbers():
    from auditor.cleanup import cleanup_plan

    prices = pd.concat([PRICES, pd.DataFrame([
        ("westeurope", "Premium_LRS", "USD", 0.15, "2024-01-01", "Premium SSD Managed Disks",
         "LRS Snapshots", "test")], columns=PRICE_COLUMNS)], ignore_index=True)
    shallow = azure_fixture("gallery_image_version_shallow")
    premium = azure_fixture("gallery_image_version_2024_03_03_additional_replica_sets")
    old = version("1.0.0", published="2025-01-10T00:00:00Z")
    estate = estate_of(gallery(), definition(), old, premium, shallow, version("2.0.0"),
                       managed_image("img-a"))
    cost = estimate(estate, prices)
    image = estate.managed_images["arm_id"].iloc[0]
    flagged = [(old["id"], "RET001"), (premium["id"], "RET001"), (shallow["id"], "RET001"),
               (image, "RET002")]
    findings = findings_for(*({"rule_id": rule, "resource_id": rid, "fingerprint": rid,
                               "resource_name": rid.rsplit("/", 1)[-1],
                               "resource_type": "Microsoft.Compute/images" if rule == "RET002"
                               else "Microsoft.Compute/galleries/images/versions"}
                              for rid, rule in flagged))
    plan = cleanup_plan(findings, estate, monthly_cost=cost.resource_costs)
    saved = plan.deletions.set_index("id")["monthly_cost"]
    # 1.1.0 blocks deletion before its end of life: in the plan's blocked list, not deleted.
    assert set(saved.index) == {old["id"].lower(), shallow["id"].lower(), image.lower()}
    for rid in saved.index:
        assert saved[rid] == pytest.approx(cost.resource_costs.get(rid, 0.0))
    assert saved[shallow["id"].lower()] == 0  # billed through its source: no saving
    savings = cost.savings(findings, plan).set_index("key")["monthly_cost"]
    assert savings["RET001"] == pytest.approx(1.5 + 30 * 0.05 + 30 * 0.15)
    # Deletable now is the plan's own figure; blocked is the rest of what the findings flag.
    assert savings["deletable now"] == pytest.approx(saved.sum())
    assert plan.savings()["deletable_now"]["monthly_cost"] == pytest.approx(saved.sum())
    assert savings["deletable now"] + savings["blocked"] == pytest.approx(
        savings["RET001"] + savings["RET002"])
    held = plan.savings_items().set_index("id")
    assert held.loc[premium["id"].lower(), "state"] == "blocked"
    assert held.loc[premium["id"].lower(), "deletable_from"] == pd.Timestamp(
        premium["properties"]["publishingProfile"]["endOfLifeDate"])
