"""Usage resolution (estate.usage): which gallery version each machine uses, and how."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.builders import SUB, definition, disk, estate_of, gallery, gallery_ref, rid, version, vm, vmss

WE, EUS = ("West Europe", 1, "Standard_ZRS"), ("East US", 1, "Standard_ZRS")


def vid(name, definition_name="base"):
    return rid("galleries", "gal", "images", definition_name, "versions", name).lower()


def usage_of(*resources):
    return estate_of(gallery(), definition(), *resources).usage.set_index("name")


def test_pinned_version():
    usage = usage_of(version("1.0.0"), version("1.1.0"), vm("a", image=gallery_ref("base", "1.0.0")))
    row = usage.loc["a"]
    assert row["resolved_from"] == "pinned" and row["version_id"] == vid("1.0.0")
    assert bool(row["has_replica"]) and row["resolution"] == "pinned to 1.0.0"


@pytest.mark.parametrize("ref", [gallery_ref("base", None), gallery_ref("base", "latest"),
                                 gallery_ref("base", "LATEST")])
def test_latest_compares_versions_as_numbers(ref):
    usage = usage_of(version("1.9.0"), version("1.10.0"), version("1.2.0"), vm("a", image=ref))
    assert usage.loc["a", "resolved_from"] == "latest"
    assert usage.loc["a", "version_id"] == vid("1.10.0")
    assert "latest in westeurope resolves to 1.10.0" in usage.loc["a", "resolution"]


def test_latest_is_per_region_and_honours_exclusions():
    regional_exclusion = version("1.3.0", regions=(WE, EUS))
    regional_exclusion["properties"]["publishingProfile"]["targetRegions"][1][
        "excludeFromLatest"] = True
    usage = usage_of(
        version("1.1.0", regions=(WE, EUS)), version("1.2.0", regions=(WE,)), regional_exclusion,
        version("1.4.0", regions=(WE, EUS), exclude_from_latest=True),
        version("1.5.0", regions=(WE, EUS), state="Failed"),
        vm("we", image=gallery_ref("base", None)),
        vm("eus", image=gallery_ref("base", None), location="EastUS"))
    assert usage.loc["we", "version_id"] == vid("1.3.0")
    assert usage.loc["eus", "version_id"] == vid("1.1.0")


def test_os_disk_wins_over_latest():
    machine = vm("a", image=gallery_ref("base", None))
    usage = usage_of(version("1.0.0"), version("1.1.0"), machine, disk(machine, vid("1.0.0")))
    assert usage.loc["a", "resolved_from"] == "disk"
    assert usage.loc["a", "version_id"] == vid("1.0.0")


def test_unresolvable_references():
    usage = usage_of(
        version("1.0.0"),
        vm("shared", image={"sharedGalleryImageId": "/SharedGalleries/x/Images/img"}),
        vm("elsewhere", image=gallery_ref("base", None), location="japaneast"),
        vm("market"))
    assert usage.loc["shared", "resolved_from"] == "unresolved"
    assert pd.isna(usage.loc["shared", "version_id"]) and pd.isna(usage.loc["shared", "has_replica"])
    assert usage.loc["elsewhere", "resolved_from"] == "unresolved"
    assert pd.isna(usage.loc["market", "resolved_from"])


def test_missing_replica_and_unknown_version():
    usage = usage_of(version("1.0.0"),
                     vm("far", image=gallery_ref("base", "1.0.0"), location="eastus"),
                     vm("gone", image=gallery_ref("base", "0.9.0")))
    assert usage.loc["far", "has_replica"] == False  # noqa: E712 (nullable boolean)
    assert pd.isna(usage.loc["gone", "has_replica"]) and not usage.loc["gone", "version_known"]


def test_scale_set_counts_capacity():
    usage = usage_of(version("1.0.0"), vmss("s", image=gallery_ref("base", "1.0.0"), capacity=7))
    assert usage.loc["s", "capacity"] == 7


def test_production_values_compare_case_insensitively():
    estate = estate_of(vm("a", tags={"environment": " PROD "}), vm("b", tags={"environment": "dev"}),
                       vm("c", tags={}))
    assert list(estate.is_production("machines", ["production", "prod"])) == [True, False, False]


def test_used_versions_are_what_machines_resolve_to():
    """A version that `latest` gives only in a region no machine runs in is not in use."""
    estate = estate_of(gallery(), definition(), version("1.0.0", regions=(WE, EUS)),
                       version("1.1.0", regions=(EUS,)),
                       vm("a", image=gallery_ref("base", None)))
    assert estate.usage.set_index("name").loc["a", "version_id"] == vid("1.0.0")
    assert vid("1.0.0") in estate.used_version_ids
    assert vid("1.1.0") not in estate.used_version_ids


@pytest.mark.parametrize("values", [["a", "b", "d", "e"], ["e", "a", "d", "b"]])
def test_positions_in_sorted_and_unsorted_values(values):
    """Tag lookups binary-search a sorted id column and hash any other; both agree."""
    import pyarrow as pa

    from auditor.estate import _positions_in

    keys = ["d", "c", "a", "z", "e", "0"]
    expected = [values.index(k) if k in values else -1 for k in keys]
    assert list(_positions_in(pa.array(keys), pa.array(values))) == expected


def test_latest_ignores_definitions_and_regions_no_machine_uses():
    """Latest versions in regions (and of definitions) no machine runs in do not get in the
    way of resolving the machines that are there."""
    east, japan = ("East US", 1, "Standard_LRS"), ("Japan East", 1, "Standard_LRS")
    usage = estate_of(gallery(), definition("a"), definition("b"), definition("c"),
                      version("1.0.0", definition_name="a", regions=(WE, east)),
                      version("1.0.0", definition_name="b", regions=(japan,)),
                      version("1.0.0", definition_name="c", regions=(east,)),
                      vm("m", image=gallery_ref("a", None))).usage.set_index("name")
    assert usage.loc["m", "resolved_from"] == "latest"
    assert usage.loc["m", "version_id"] == vid("1.0.0", "a")


# --- what the machine records, regional exclusion, replication, sharing, Flexible sets ----
# Fixtures in tests/fixtures/azure are GET bodies and Resource Graph rows in Azure's shapes.

FIXTURES = Path(__file__).parent / "fixtures" / "azure"


def fixture(name: str) -> list[dict]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))["resources"]


def app_rid(*path):
    return rid(*path, rg="rg-app").lower()


def test_exact_version_on_a_definition_reference_is_what_the_machine_runs():
    # Recorded VM GET bodies carry exactVersion on gallery definition references too.
    ref = {**gallery_ref("base", None), "exactVersion": "1.1.0"}
    usage = usage_of(version("1.1.0"), version("1.2.0"), vm("a", image=ref))
    row = usage.loc["a"]
    assert row["resolved_from"] == "exact" and row["version_id"] == vid("1.1.0")
    assert "exactVersion 1.1.0" in row["resolution"]


def test_os_disk_wins_over_exact_version():
    machine = vm("a", image={**gallery_ref("base", None), "exactVersion": "1.2.0"})
    usage = usage_of(version("1.1.0"), version("1.2.0"), machine, disk(machine, vid("1.1.0")))
    assert usage.loc["a", "resolved_from"] == "disk"
    assert usage.loc["a", "version_id"] == vid("1.1.0")


def test_uniform_instances_compare_versions_as_numbers_and_are_counted():
    estate = estate_of(gallery(), definition(), version("1.9.0"), version("1.10.0"),
                       *fixture("vmss_uniform_instance_disks.json"))
    machine = estate.machines.set_index("name").loc["ss-uniform"]
    assert machine["running_version_id"] == vid("1.9.0")  # as text, 1.10.0 sorted first
    assert json.loads(machine["running_versions"]) == {vid("1.9.0"): 1, vid("1.10.0"): 2}
    assert {vid("1.9.0"), vid("1.10.0")} <= set(estate.used_version_ids)


def test_flexible_scale_set_is_not_counted_twice():
    estate = estate_of(gallery(), definition(), version("1.9.0"), version("1.10.0"),
                       *fixture("vmss_flexible_with_members_2024-03-01.json"))
    usage = estate.usage.set_index("name")
    assert usage.loc["ss-flex", "capacity"] == 0  # its members are the machines
    members = usage.drop(index="ss-flex")
    assert list(members["capacity"]) == [1, 1] and usage["capacity"].sum() == 2
    assert set(members["version_id"]) == {vid("1.9.0"), vid("1.10.0")}
    assert list(estate.flexible_members) == [True, True, False]


def test_flexible_scale_set_without_members_in_snapshot_counts_capacity():
    flex = fixture("vmss_flexible_with_members_2024-03-01.json")[0]
    usage = estate_of(gallery(), definition(), version("1.9.0"), flex).usage
    assert list(usage["capacity"]) == [2]


def test_regional_exclusion_is_tri_state_and_takes_precedence():
    globally_excluded = version("1.3.0", regions=(WE, EUS), exclude_from_latest=True)
    globally_excluded["properties"]["publishingProfile"]["targetRegions"][1][
        "excludeFromLatest"] = False  # the region says otherwise: it wins there
    estate = estate_of(gallery(), definition(), version("1.1.0", regions=(WE, EUS)),
                       globally_excluded,
                       vm("we", image=gallery_ref("base", None)),
                       vm("us", image=gallery_ref("base", None), location="eastus"))
    regions = estate.version_regions.set_index(["version_id", "region"])["exclude_from_latest"]
    assert pd.isna(regions[(vid("1.3.0"), "westeurope")])  # absent stays absent
    assert regions[(vid("1.3.0"), "eastus")] == False  # noqa: E712
    usage = estate.usage.set_index("name")
    assert usage.loc["we", "version_id"] == vid("1.1.0")
    assert usage.loc["us", "version_id"] == vid("1.3.0")


def test_regional_exclude_from_latest_spelling_is_read():
    spelled = version("1.3.0")
    spelled["properties"]["publishingProfile"]["targetRegions"][0][
        "regionalExcludeFromLatest"] = True
    usage = usage_of(version("1.1.0"), spelled, vm("a", image=gallery_ref("base", None)))
    assert usage.loc["a", "version_id"] == vid("1.1.0")


def test_deep_replication_not_completed_does_not_serve_latest():
    replicating = version("1.3.0", regions=(WE, EUS))
    # Shape of GalleryImageVersions_Get with $expand=ReplicationStatus (collect --deep).
    replicating["properties"]["replicationStatus"] = {
        "aggregatedState": "InProgress",
        "summary": [{"region": "West Europe", "state": "Completed", "progress": 100},
                    {"region": "East US", "state": "Replicating", "progress": 40}]}
    estate = estate_of(gallery(), definition(), version("1.1.0", regions=(WE, EUS)), replicating,
                       vm("we", image=gallery_ref("base", None)),
                       vm("us", image=gallery_ref("base", None), location="eastus"))
    usage = estate.usage.set_index("name")
    assert usage.loc["we", "version_id"] == vid("1.3.0")
    assert usage.loc["us", "version_id"] == vid("1.1.0")


def test_updating_version_keeps_serving_latest():
    usage = usage_of(version("1.1.0"), version("1.2.0", state="Updating"),
                     version("1.3.0", state="Creating"), vm("a", image=gallery_ref("base", None)))
    assert usage.loc["a", "version_id"] == vid("1.2.0")


@pytest.mark.parametrize("ref, props", [
    ({"sharedGalleryImageId": f"/SharedGalleries/{SUB}-GAL/Images/base/Versions/1.1.0"},
     {"identifier": {"uniqueName": f"{SUB}-GAL"}}),
    ({"communityGalleryImageId": "/CommunityGalleries/contoso-1a2b3c/Images/base/Versions/1.1.0"},
     {"identifier": {"uniqueName": f"{SUB}-GAL"}, "sharingProfile": {
         "permissions": "Community", "communityGalleryInfo": {
             "publisherUri": "https://contoso.example", "publisherContact": "a@contoso.example",
             "eula": "none", "publicNamePrefix": "contoso",
             "publicNames": ["contoso-1a2b3c"]}}}),
])
def test_shared_and_community_ids_resolve_to_a_gallery_in_the_snapshot(ref, props):
    # Gallery GET bodies: identifier.uniqueName (Gallery_Get), sharingProfile with
    # communityGalleryInfo.publicNames (community galleries, API 2022-03-03 and later).
    shared_gallery = gallery(properties=props)
    estate = estate_of(shared_gallery, definition(), version("1.1.0"), version("1.2.0"),
                       vm("a", image=ref))
    row = estate.usage.set_index("name").loc["a"]
    assert row["resolved_from"] == "pinned" and row["version_id"] == vid("1.1.0")
    assert bool(row["has_replica"])


def test_shared_id_of_a_gallery_outside_the_snapshot_stays_unresolved():
    usage = usage_of(version("1.1.0"), vm("a", image={
        "sharedGalleryImageId": "/SharedGalleries/other-GAL/Images/base/Versions/1.1.0"}))
    assert usage.loc["a", "resolved_from"] == "unresolved"
    assert not usage.loc["a", "definition_known"]


def test_columns_read_from_scale_set_shapes():
    estate = estate_of(*fixture("vmss_automatic_upgrade_2024-03-01.json"),
                       *fixture("vmss_legacy_automatic_os_upgrade_2018-06-01.json"),
                       *fixture("vmss_flexible_with_members_2024-03-01.json"))
    machines = estate.machines.set_index("name")
    assert machines.loc["ss-auto", "automatic_os_upgrade"] == True  # noqa: E712
    assert machines.loc["ss-auto", "health_probe_id"].endswith("/loadbalancers/lb/probes/http")
    assert machines.loc["ss-legacy", "automatic_os_upgrade"] == True  # noqa: E712 (2018 shape)
    assert machines.loc["ss-legacy", "upgrade_mode"] == "Rolling"
    assert pd.isna(machines.loc["ss-legacy", "health_extension"])
    assert machines.loc["ss-flex", "orchestration_mode"] == "Flexible"
    assert machines.loc["ss-flex", "health_extension"] == "ApplicationHealthLinux"
    assert machines.loc["ss-flex_00000001", "scale_set_id"] == app_rid(
        "virtualMachineScaleSets", "ss-flex")


def test_platform_managed_scale_sets_are_named():
    aks = fixture("resource_graph_aks_node_pool.json")[0]
    by_image = vmss("by-image", image=aks["properties"]["virtualMachineProfile"][
        "storageProfile"]["imageReference"], tags={})
    databricks = vmss("dbx", tags={"Vendor": "Databricks", "ClusterId": "0101-abc"})
    batch = {**vmss("pool", tags={}), "managedBy":
             f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b"}
    estate = estate_of(aks, by_image, databricks, batch, vmss("mine"))
    platform = estate.usage.set_index("name")["platform_managed"].astype(object)
    assert platform.where(platform.notna(), None).to_dict() == {
        "aks-nodepool1-12345678-vmss": "AKS", "by-image": "AKS", "dbx": "Databricks",
        "pool": "Batch", "mine": None}


def test_new_paths_are_read_the_same_by_columns():
    """The columnar reader takes the scale set, member, gallery and target-region paths
    these rules read exactly as normalize.py does (it must not refuse the block either)."""
    from auditor.columnar import normalize_lines
    from tests.test_columnar import assert_same, by_columns, by_resource, json_lines

    shared_gallery = gallery(properties={"identifier": {"uniqueName": f"{SUB}-GAL"}})
    regional = version("1.3.0", regions=(WE, EUS))
    regional["properties"]["publishingProfile"]["targetRegions"][0]["excludeFromLatest"] = False
    regional["properties"]["publishingProfile"]["targetRegions"][1][
        "regionalExcludeFromLatest"] = True
    resources = [shared_gallery, definition(), regional,
                 *fixture("vmss_automatic_upgrade_2024-03-01.json"),
                 *fixture("vmss_legacy_automatic_os_upgrade_2018-06-01.json"),
                 *fixture("vmss_flexible_with_members_2024-03-01.json"),
                 *fixture("resource_graph_aks_node_pool.json")]
    data = json_lines(resources)
    assert normalize_lines(data) is not None
    assert_same(by_columns(data), by_resource(data))
    # A community gallery's line spells "Inf" (communityGalleryInfo), which the columnar
    # reader refuses (pyarrow would read Inf as a number): the reference reads that block.
    community = gallery("pub", properties={"sharingProfile": {
        "permissions": "Community", "communityGalleryInfo": {
            "publicNames": ["contoso-1a2b3c", "Contoso-2"]}}})
    data = json_lines([community, *resources])
    assert_same(by_columns(data), by_resource(data))


def test_machines_sheet_names_the_platform_and_instance_versions():
    from auditor.workbook import _machines_frame
    estate = estate_of(gallery(), definition(), version("1.9.0"), version("1.10.0"),
                       *fixture("vmss_uniform_instance_disks.json"),
                       *fixture("resource_graph_aks_node_pool.json"))
    frame = _machines_frame(estate.machines, estate.usage).set_index("name")
    assert frame.loc["aks-nodepool1-12345678-vmss", "platform_managed"] == "AKS"
    assert pd.isna(frame.loc["ss-uniform", "platform_managed"])
    assert frame.loc["ss-uniform", "instance_versions"] == "base/1.9.0: 1, base/1.10.0: 2"
