"""Usage resolution (estate.usage): which gallery version each machine uses, and how."""

import pandas as pd
import pytest

from tests.builders import definition, disk, estate_of, gallery, gallery_ref, rid, version, vm, vmss

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
