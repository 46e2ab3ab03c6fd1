"""The one normalisation path: every image reference kind and every trap of real Azure data."""

import json

import pandas as pd
import pytest

from tests.builders import (
    SUB,
    definition,
    disk,
    gallery,
    gallery_ref,
    managed_image,
    marketplace,
    rid,
    snapshot_of,
    version,
    vm,
    vmss,
)


def machine(*resources):
    return snapshot_of(*resources).tables["machines"].iloc[0]


@pytest.mark.parametrize("image, kind, image_id, image_version", [
    (marketplace(), "marketplace", None, "22.04.202410020"),
    (marketplace("latest", exactVersion="22.04.1"), "marketplace", None, "latest"),
    (gallery_ref("base", "1.2.3"), "gallery", rid("galleries", "gal", "images", "base",
                                                  "versions", "1.2.3").lower(), "1.2.3"),
    (gallery_ref("base", None), "gallery", rid("galleries", "gal", "images", "base").lower(),
     None),
    ({"sharedGalleryImageId": "/SharedGalleries/abc-GAL/Images/img/Versions/2.0.0"}, "shared",
     "/sharedgalleries/abc-gal/images/img/versions/2.0.0", "2.0.0"),
    ({"communityGalleryImageId": "/CommunityGalleries/pub-1/Images/img"}, "community",
     "/communitygalleries/pub-1/images/img", None),
    ({"id": rid("images", "golden")}, "managed", rid("images", "golden").lower(), None),
])
def test_image_reference_kinds(image, kind, image_id, image_version):
    row = machine(vm(image=image))
    assert row["image_kind"] == kind
    assert (row["image_id"] if pd.notna(row["image_id"]) else None) == image_id
    assert (row["image_version"] if pd.notna(row["image_version"]) else None) == image_version


def test_marketplace_exact_version_kept():
    row = machine(vm(image=marketplace("latest", exactVersion="22.04.202410020")))
    assert row["exact_version"] == "22.04.202410020"
    assert row["image_publisher"] == "Canonical"


@pytest.mark.parametrize("os_disk", [
    {"image": {"uri": "https://acct.blob.core.windows.net/vhds/gold.vhd?sv=1&sig=SECRET"}},
    {"vhd": {"uri": "https://acct.blob.core.windows.net/vhds/os.vhd?sig=SECRET"}},
])
def test_unmanaged_vhd_and_sas_stripped(os_disk):
    row = machine(vm(image={}, os_disk=os_disk))
    assert row["image_kind"] == "vhd"
    assert row["vhd_uri"].startswith("https://acct.blob.core.windows.net/vhds/")
    assert "?" not in row["vhd_uri"] and "SECRET" not in row["vhd_uri"]


def test_managed_image_blob_uri_sas_stripped():
    snap = snapshot_of(managed_image(blob_uri="https://a.blob.core.windows.net/v/x.vhd?sig=S3CR3T"))
    assert snap.tables["managed_images"].iloc[0]["blob_uri"] == "https://a.blob.core.windows.net/v/x.vhd"


def test_scale_set_reference_and_capacity():
    row = machine(vmss(image=gallery_ref("base", "1.0.0"), capacity=7))
    assert (row["kind"], row["capacity"], row["image_kind"]) == ("vmss", 7, "gallery")


def test_vm_counts_as_one_machine_and_plan_and_power_state():
    plan = {"name": "standard-gen2", "publisher": "microsoftsqlserver", "product": "sql2022"}
    row = machine(vm(plan=plan, power="deallocated"))
    assert row["capacity"] == 1
    assert (row["plan_name"], row["plan_publisher"], row["plan_product"]) == (
        "standard-gen2", "microsoftsqlserver", "sql2022")
    assert row["power_state"] == "deallocated"


def test_resource_graph_lower_case_types_and_arm_casing_both_accepted():
    lower = vm("a", type_="microsoft.compute/virtualmachines")
    upper = vm("b", type_="Microsoft.Compute/virtualMachines")
    assert len(snapshot_of(lower, upper).tables["machines"]) == 2


def test_mixed_case_ids_join():
    ref = {"id": rid("Galleries", "gal", "Images", "base", "Versions", "1.0.0")}
    snap = snapshot_of(version(), vm(image=ref))
    assert snap.tables["machines"].iloc[0]["image_id"] == snap.tables["image_versions"].iloc[0]["id"]


def test_region_display_names_normalised():
    snap = snapshot_of(version(regions=(("East US 2", 1, "Standard_LRS"),
                                        ("West Europe", 2, "Premium_LRS"))))
    regions = snap.tables["version_regions"].sort_values("region")
    assert list(regions["region"]) == ["eastus2", "westeurope"]
    assert list(regions["regional_replica_count"]) == [1, 2]
    assert snapshot_of(vm(location="West Europe")).tables["machines"].iloc[0]["location"] == "westeurope"


def test_subscription_and_resource_group_derived_from_id():
    item = definition()
    assert "subscriptionId" not in item
    row = snapshot_of(item).tables["image_definitions"].iloc[0]
    assert row["subscription_id"] == SUB and row["resource_group"] == "rg-img"
    assert row["gallery_id"] == rid("galleries", "gal").lower()


def test_timestamps_with_seven_digit_fractions_and_offsets():
    snap = snapshot_of(version(published="2026-03-05T10:11:12.1234567-05:00"))
    published = snap.tables["image_versions"].iloc[0]["published_date"]
    assert published == pd.Timestamp("2026-03-05T15:11:12.123456Z")


def test_missing_optional_properties_normalise_to_nulls():
    bare = {"id": rid("galleries", "g", "images", "d", "versions", "1.0.0"),
            "type": "Microsoft.Compute/galleries/images/versions"}
    row = snapshot_of(bare).tables["image_versions"].iloc[0]
    assert row["name"] == "1.0.0" and pd.isna(row["published_date"])
    assert pd.isna(row["os_disk_size_gb"]) and row["target_region_count"] == 0


def test_type_inferred_from_id_when_absent():
    item = version()
    del item["type"]
    assert len(snapshot_of(item).tables["image_versions"]) == 1


def test_regional_replica_count_defaults_to_version_replica_count():
    item = version()
    item["properties"]["publishingProfile"]["replicaCount"] = 3
    del item["properties"]["publishingProfile"]["targetRegions"][0]["regionalReplicaCount"]
    row = snapshot_of(item).tables["version_regions"].iloc[0]
    assert row["regional_replica_count"] == 3


def test_semver_parts_numeric():
    row = snapshot_of(version("1.10.0")).tables["image_versions"].iloc[0]
    assert (row["major"], row["minor"], row["patch"]) == (1, 10, 0)
    odd = snapshot_of(version("2024-05-01")).tables["image_versions"].iloc[0]
    assert pd.isna(odd["major"])


def test_running_version_from_os_disk_creation_data():
    machine_raw = vm(image=gallery_ref("base", None))
    got = rid("galleries", "gal", "images", "base", "versions", "1.3.0")
    row = machine(machine_raw, disk(machine_raw, got))
    assert row["running_version_id"] == got.lower()


def test_tags_kept_as_json_and_long_table():
    snap = snapshot_of(gallery(tags={"Environment": "Production", "team": "x"}))
    assert json.loads(snap.tables["galleries"].iloc[0]["tags"]) == {
        "Environment": "Production", "team": "x"}
    tags = snap.tables["resource_tags"]
    assert set(tags["key_lower"]) == {"environment", "team"}


def test_other_types_skipped_and_counted():
    other = {"id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/"
                   "storageAccounts/sa", "type": "microsoft.storage/storageaccounts"}
    snap = snapshot_of(other, gallery())
    assert snap.manifest["skipped_types"] == {"microsoft.storage/storageaccounts": 1}


def test_duplicate_ids_with_different_casing_kept_once_and_reported():
    first = gallery()
    second = gallery()
    second["id"] = second["id"].upper()
    snap = snapshot_of(first, second)
    assert len(snap.tables["galleries"]) == 1
    assert snap.manifest["skipped_types"] == {"(duplicate id)": 1}
    assert "duplicate id" in snap.manifest["problems"][0]


def test_wrong_types_tolerated():
    item = version()
    item["properties"]["publishingProfile"]["replicaCount"] = "3"
    item["properties"]["publishingProfile"]["targetRegions"] = {"name": "not a list"}
    item["properties"]["storageProfile"] = ["not", "an", "object"]
    row = snapshot_of(item).tables["image_versions"].iloc[0]
    assert row["replica_count"] == 3 and row["target_region_count"] == 0


def test_integers_beyond_int64_tolerated_as_missing():
    item = version(replicaCount=2**70)
    item["properties"]["publishingProfile"]["targetRegions"][0]["regionalReplicaCount"] = 9.3e18
    snap = snapshot_of(item)
    assert pd.isna(snap.tables["image_versions"].iloc[0]["replica_count"])
    assert pd.isna(snap.tables["version_regions"].iloc[0]["regional_replica_count"])


# --- gallery version shapes since 2018, gallery sharing and role assignments ---------------

def _shapes(*names):
    from tests.builders import azure_shape
    return snapshot_of(*[azure_shape(name) for name in names])


def test_every_version_shape_since_2018_keeps_its_source_and_regions():
    snapshot = _shapes("gallery_version_2018-06-01.json", "gallery_version_2019-03-01.json",
                       "gallery_version_2018-06-01-preview.json",
                       "gallery_version_snapshot_source.json")
    versions = snapshot.tables["image_versions"].set_index("name")
    assert versions.loc["1.0.0", "source_id"].endswith("/microsoft.compute/images/img-1.0.0")
    assert versions.loc["1.1.0", "source_id"].endswith("/microsoft.compute/images/img-1.1.0")
    assert versions.loc["0.9.0", "source_id"].endswith("/microsoft.compute/images/img-0.9.0")
    assert versions.loc["2.0.0", "source_id"].endswith("/microsoft.compute/snapshots/os-snap")
    assert versions.loc["0.9.0", "os_disk_size_gb"] == 10  # `sizedInGB` in the preview
    assert list(versions["target_region_count"].loc[["1.0.0", "1.1.0", "0.9.0"]]) == [2, 1, 2]
    # no storage type before API 2019-03-01: Azure's default, Standard_LRS
    assert versions.loc["1.0.0", "storage_account_type"] == "Standard_LRS"
    regions = snapshot.tables["version_regions"]
    preview = regions[regions["version_id"].str.endswith("/0.9.0")]
    assert sorted(preview["region"]) == ["northeurope", "westeurope"]
    assert set(preview["storage_account_type"]) == {"Standard_LRS"}
    by_2019 = regions[regions["version_id"].str.endswith("/1.1.0")]
    assert list(by_2019["storage_account_type"]) == ["Standard_ZRS"]
    assert snapshot.manifest["problem_count"] == 0


def test_a_version_without_target_regions_is_a_named_problem():
    snapshot = snapshot_of(version("1.0.0", regions=()))
    assert snapshot.tables["image_versions"]["target_region_count"].tolist() == [0]
    assert any("targetRegions: no target region" in p for p in snapshot.manifest["problems"])


def test_gallery_sharing_and_role_assignments_are_read():
    snapshot = _shapes("gallery_groups_expanded.json", "role_assignment_gallery.json")
    gallery = snapshot.tables["galleries"].iloc[0]
    assert gallery["sharing_permissions"] == "Groups" and gallery["sharing_groups_read"]
    shares = snapshot.tables["gallery_shares"]
    assert sorted(zip(shares["type"], shares["target"], strict=True)) == [
        ("AADTenants", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
        ("Subscriptions", "99999999-8888-7777-6666-555555555555")]
    assignment = snapshot.tables["role_assignments"].iloc[0]
    assert assignment["scope"] == gallery["id"]
    assert assignment["role_definition_id"].endswith("/acdd72a7-3385-48ef-bd42-f606fba81ae7")
    assert assignment["principal_type"] == "ServicePrincipal"
    row = _shapes("gallery_groups_row.json").tables["galleries"].iloc[0]
    assert row["sharing_permissions"] == "Groups" and not row["sharing_groups_read"]
    community = _shapes("gallery_community.json").tables["galleries"].iloc[0]
    assert community["sharing_permissions"] == "Community"


def test_a_version_name_given_in_full_takes_the_ids_last_segment():
    # ARM templates and some exports give a nested resource's name in full.
    nested = version("1.4.0") | {"name": "gal/base/1.4.0"}
    snapshot = snapshot_of(gallery(), definition(), nested)
    assert snapshot.tables["image_versions"]["name"].tolist() == ["1.4.0"]
    assert not any("MAJOR.MINOR.PATCH" in p for p in snapshot.manifest["problems"])
    odd = snapshot_of(gallery(), definition(), version("1.4.0") | {"name": "gal/base/latest"})
    assert odd.tables["image_versions"]["name"].tolist() == ["1.4.0"]
    wrong = snapshot_of(gallery(), definition(), version("1.4.0-Beta") | {"name": "gal/base/x"})
    assert wrong.tables["image_versions"]["name"].tolist() == ["1.4.0-Beta"]  # casing kept
    assert any("expected MAJOR.MINOR.PATCH, got" in p for p in wrong.manifest["problems"])


def test_the_resource_graph_fake_versions_are_named_without_notes():
    from tests.fake_arg import estate

    rows, _ = estate(subscriptions=1, vms=2, versions=2)
    snapshot = snapshot_of(*rows)
    assert sorted(set(snapshot.tables["image_versions"]["name"])) == ["1.0.0", "1.0.1"]
    assert not any("MAJOR.MINOR.PATCH" in p for p in snapshot.manifest["problems"])


def test_running_versions_count_each_owners_versions_in_version_order():
    """The column-by-column count of OS disks by owner and version gives what counting them
    one by one gives: the lowest version as numbers, and `json.dumps` of every version with
    its count, in version order (numbers before other names), whatever the chunks."""
    import json
    import random
    from collections import Counter

    import pyarrow as pa

    from auditor.normalize import _running_versions, version_order

    pick = random.Random(7)
    names = [f"/g/images/d{d}/versions/{a}.{b}.{c}" for d in range(2) for a in (1, 2, 10)
             for b in (0, 9) for c in (0, 1)] + ["/g/images/d/versions/latest-x",
                                                 '/g/images/d/versions/\u00fc"x']
    owners, versions = [], []
    for owner in range(500):
        for _ in range(pick.choice([1, 1, 1, 2, 5])):
            owners.append(f"/o/{owner}")
            versions.append(pick.choice(names))
    expected = {}
    for owner, version_id in zip(owners, versions, strict=True):
        expected.setdefault(owner, Counter())[version_id] += 1
    split = pa.concat_tables([pa.table({"owner": owners[:70], "version": versions[:70]}),
                              pa.table({"owner": owners[70:], "version": versions[70:]})])
    got = _running_versions(split).to_pylist()
    assert len(got) == len(expected)
    for row in got:
        counts = expected[row["owner"]]
        ordered = sorted(counts, key=lambda v: (version_order(v), v))
        assert row["running_version_id"] == ordered[0]
        assert row["running_versions"] == json.dumps({v: counts[v] for v in ordered})
