"""JSON lines normalised column by column (auditor/columnar.py) give exactly the tables, counts
and problems of the per-resource reference (normalize.py), which takes over any block the
columns cannot take exactly."""

import copy
import gzip
import json
import math
from importlib.resources import files

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.columnar import normalize_lines
from auditor.errors import AuditError
from auditor.importer import import_files
from auditor.normalize import JsonLines, normalize
from auditor.synth import COLLECTED_AT, write_estate
from auditor.synth import resources as synth_resources
from tests.builders import (
    SUB,
    azure_fixture,
    definition,
    disk,
    gallery,
    gallery_ref,
    managed_image,
    marketplace,
    rid,
    version,
    vm,
    vmss,
)
from tests.test_properties import SHAPES, _paths, mutated_resource


def _finite(value):
    """NaN and infinity, which JSON cannot hold, as null (as orjson writes them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return [_finite(v) for v in value] if isinstance(value, list) else value


def json_lines(resources) -> bytes:
    """One resource a line, as json.dumps writes it (with spaces after separators)."""
    return b"".join(json.dumps(_finite(r), ensure_ascii=False).encode() + b"\n"
                    for r in resources)


def _pairs(data: bytes, name: str = "x.jsonl"):
    return [(f"{name} line {number}", orjson.loads(line))
            for number, line in enumerate(data.split(b"\n"), 1) if line.strip()]


def by_resource(data: bytes):
    """The reference: every line through normalize.py, resource by resource."""
    return normalize(_pairs(data))


def by_columns(data: bytes):
    return normalize([JsonLines(data, again=lambda: _pairs(data))], columns=normalize_lines)


def assert_same(got, expected) -> None:
    assert got.tables.keys() == expected.tables.keys()
    for name, table in expected.tables.items():
        assert got.tables[name].schema == table.schema, name
        assert got.tables[name].equals(table), name
    assert got.read_types == expected.read_types
    assert got.skipped_types == expected.skipped_types
    assert got.problems == expected.problems
    assert got.problem_count == expected.problem_count


@pytest.mark.parametrize("machines, seed", [(1000, 0), (3000, 7)])
def test_synthetic_estates_give_the_same_tables(machines, seed):
    data = json_lines(synth_resources(machines, seed))
    assert normalize_lines(data) is not None  # taken column by column, not handed back
    assert_same(by_columns(data), by_resource(data))


def test_an_estate_without_tags_is_taken_by_columns():
    data = json_lines({k: v for k, v in r.items() if k != "tags"} for r in synth_resources(200))
    assert normalize_lines(data) is not None
    assert_same(by_columns(data), by_resource(data))


def test_sample_estate_as_json_lines_gives_the_same_tables():
    document = json.loads(files("auditor.data").joinpath("sample_estate.json").read_text())
    data = json_lines(document["data"])
    assert normalize_lines(data) is not None
    assert_same(by_columns(data), by_resource(data))


def _preview(item: dict) -> dict:
    """API 2018-06-01 (preview): `regions`, region names only, and no storage type."""
    profile = item["properties"]["publishingProfile"]
    profile.pop("storageAccountType")
    profile["regions"] = ["West US", "east us 2"]
    item["properties"]["storageProfile"] = {"osDiskImage": {"sizedInGB": 10},
                                            "dataDiskImages": [{"sizedInGB": 5}, {"sizeInGB": 1}]}
    return item


ODD_BUT_WELL_TYPED = [
    *SHAPES,
    vm("rg-cased", type_="microsoft.compute/virtualmachines", location="West Europe"),
    vm("bare", tags={}) | {"subscriptionId": "", "resourceGroup": None},
    {k: v for k, v in vm("no-sub").items() if k not in ("subscriptionId", "resourceGroup")},
    vm("n", tags={"Env": "Prod", "env": "prod", "a\"b": "c\\d", "é": "ü\u202e", "": "",
                  "created": "2024-11-01", "when": "2024-11-01T00:00:00Z"}),
    vm("esc", tags={"line": "a\nb", "tab": "\t"}),
    vm("null-tags") | {"tags": None},
    vm("vhd", image={}, os_disk={"image": {"uri": "https://a.blob/v.vhd?sig=SECRET"}}),
    vm("vhd2", image={}, os_disk={"vhd": {"uri": "?only-a-query"}, "osType": ""}),
    vm("latest", image=marketplace("latest", exactVersion="1.2.3"), power="running"),
    vm("paid", plan={"name": "p", "publisher": "P", "product": "x"}, power="Deallocated"),
    vm("shared", image={"sharedGalleryImageId": "/SharedGalleries/G/Images/I/Versions/1.0.0"}),
    vm("community", image={"communityGalleryImageId": "/CommunityGalleries/C/Images/I"}),
    vm("managed", image={"id": rid("images", "golden") + "/"}),
    vm("odd-id", image={"id": "/subscriptions/x/unknown/thing"}),
    # The OS disk's createOption (COV002): attached, in any casing, empty, a scale set's.
    azure_fixture("vm_attached_os_disk_2022-11-01"),
    vm("attach-lower", image={}, os_disk={"createOption": "attach", "osType": "Linux"}),
    vm("empty-option", os_disk={"createOption": ""}),
    vmss("ss-from-image") | {"properties": {"virtualMachineProfile": {"storageProfile": {
        "imageReference": marketplace(), "osDisk": {"createOption": "FromImage"}}}}},
    vm("gal", image=gallery_ref("base", None)),
    vm("pub-only", image={"publisher": "", "offer": "o"}),
    vm("win", os_disk={"osType": None}) | {"properties": {"storageProfile": {
        "imageReference": marketplace(), "osDisk": {}},
        "osProfile": {"windowsConfiguration": {}, "linuxConfiguration": {}}}},
    vmss("ss-zero", capacity=0), vmss("ss-none", capacity=None),
    vmss("ss-gal", image=gallery_ref("base", "1.0.0")),
    disk(vmss("ss-gal"), gallery_ref("base", "1.0.0")["id"]),
    disk(vm("gal"), gallery_ref("base", "2.0.0")["id"]),
    disk(vm("gal"), "") | {"id": rid("disks", "other")},
    version("1.0.1", published="2026-01-01T10:00:00.1234567+02:00",
            end_of_life="9999-12-31T00:00:00Z", storageAccountType="Standard_ZRS",
            regions=(("East US 2", None, None), ("westeurope", 2, "Premium_LRS"))),
    _preview(version("1.0.2", published="not a date", end_of_life="0001-01-01T00:00:00Z",
                     exclude_from_latest=True, replicaCount=None, targetRegions=None)),
    version("1.0.3") | {"properties": {"publishingProfile": {"targetRegions": [
        {"name": "West US"}], "source": {"managedImage": {"id": rid("images", "Src") + "/"}}},
        "storageProfile": {
        "source": {"uri": "https://x.blob/v.vhd?sv=1&sig=S"},
        "dataDiskImages": [{"sizeInGB": 10}, {}, {"sizeInGB": 2.5}]},
        "replicationStatus": {"summary": [{"region": "West US", "state": "Failed",
                                           "progress": 40, "details": "quota"}, {}]}}},
    version("01.002.3"),
    definition("eol", endOfLifeDate="2020-02-30T00:00:00Z"),
    managed_image("img-blob", blob_uri="https://l.blob/x.vhd?se=2030&sig=S"),
    gallery("g2") | {"properties": {"description": ""}, "name": ""},
    gallery("g3") | {"properties": {"sharingProfile": {"permissions": "Groups", "groups": [
        {"type": "Subscriptions", "ids": ["A-1", "", None]}, {"type": "AADTenants", "ids": []},
        {"type": "AADTenants"}, {"type": "AADTenants", "ids": ["T-2"]}]}}},
    gallery("g4") | {"properties": {"sharingProfile": {"permissions": "Community",
                                                      "communityGalleryInfo": {}}}},
    gallery("g5") | {"properties": {"sharingProfile": {"permissions": "Groups", "groups": []}}},
    {"id": rid("galleries", "g3") + "/providers/Microsoft.Authorization/roleAssignments/r1",
     "type": "microsoft.authorization/roleassignments", "name": "r1",
     "properties": {"scope": rid("galleries", "g3").upper(), "principalId": "P-1",
                    "principalType": "ServicePrincipal", "roleDefinitionId": "/R/Reader"}},
    {"id": "/subscriptions/" + SUB + "/providers/Microsoft.Authorization/roleAssignments/r2",
     "type": "Microsoft.Authorization/roleAssignments", "properties": {}},
    {"id": rid("storageAccounts", "s"), "type": "Microsoft.Storage/storageAccounts"},
    {"id": "/subscriptions/" + SUB + "/providers/Microsoft.Compute/galleries/root",
     "type": "Microsoft.Compute/galleries"},
    *(azure_fixture(name, id=rid("galleries", "shapes", "images", "base", "versions", number))
      for name, number in [("gallery_image_version_2022_03_03", "1.0.0"),
                           ("gallery_image_version_2024_03_03_additional_replica_sets", "1.1.0"),
                           ("gallery_image_version_2025_03_03_storage_account_strategy", "1.2.0"),
                           ("gallery_image_version_shallow", "1.3.0")]),
    azure_fixture("managed_image_zone_resilient"),
    azure_fixture("vmss_rolling_surge_2024-03-01"),
    azure_fixture("gallery_image_version_2022_03_03",  # a nested name given in full
                  id=rid("galleries", "shapes", "images", "base", "versions", "1.5.0"))
    | {"name": "shapes/base/1.5.0"},
    # Sharing and purchase plan shapes (SHR, LIC002).
    azure_fixture("gallery_image_purchase_plan_2024-03-03"),
    azure_fixture("vm_community_gallery_image_2024-03-01"),
    azure_fixture("vm_shared_gallery_image_2024-03-01"),
    azure_fixture("gallery_image_purchase_plan_2024-03-03",
                  id=rid("galleries", "gal", "images", "partial"),
                  properties={"purchasePlan": {"name": "plan-only"}}),
]


def test_fixture_shapes_give_the_same_tables():
    data = json_lines(ODD_BUT_WELL_TYPED)
    assert normalize_lines(data) is not None
    assert_same(by_columns(data), by_resource(data))


def test_os_disk_create_option_is_read_alike_for_vms_and_scale_sets():
    data = json_lines(ODD_BUT_WELL_TYPED)
    for normalized in (by_columns(data), by_resource(data)):
        machines = normalized.tables["machines"]
        option = dict(zip(machines["name"].to_pylist(),
                          machines["os_disk_create_option"].to_pylist(), strict=True))
        assert (option["vm-restored-01"], option["attach-lower"], option["empty-option"],
                option["ss-from-image"], option["bare"]) == ("Attach", "attach", "", "FromImage",
                                                            None)


def test_a_block_with_an_autoscale_setting_gives_the_reference_rows():
    data = json_lines([vm("a"), azure_fixture("autoscale_setting_get")])
    assert normalize_lines(data) is not None
    got = by_columns(data)
    assert_same(got, by_resource(data))
    assert got.tables["autoscale_settings"].column("max_scale_out_step").to_pylist() == [40]
    odd = azure_fixture("autoscale_setting_get")
    odd["properties"] = []  # a problem the reference names with its place: the block is refused
    data = json_lines([vm("a"), odd])
    assert normalize_lines(data) is None
    assert_same(by_columns(data), by_resource(data))


@pytest.mark.parametrize("line", [
    '{"id": 5, "type": "microsoft.compute/virtualmachines"}',  # an id of another type
    '{"type": "microsoft.compute/virtualmachines"}',  # no id
    '{"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/x"}',  # no type
    '["not", "an", "object"]',
    "null",
    '{"id": "x", "type": "Microsoft.Compute/virtualMachines", "tags": {"a": null}}',
    '{"id": "x", "type": "Microsoft.Compute/virtualMachines", "tags": {"n": 5}}',
    '{"id": "x", "type": "Microsoft.Compute/virtualMachines", "tags": {"o": {"x": "y"}}}',
    '{"id": "x", "type": "Microsoft.Compute/virtualMachines", "sku": {"capacity": "3"}}',
    '{"id": "x", "type": "Microsoft.Compute/virtualMachines", "properties": []}',
    '{"id": "x/versions/v", "type": "Microsoft.Compute/galleries/images/versions", "name": "v"}',
    '{"id": "x/versions/1.0.0", "type": "Microsoft.Compute/galleries/images/versions", '
    '"properties": {"publishingProfile": {"targetRegions": []}}}',  # no region: a problem
    '{"id": "x", "type": "Microsoft.Compute/virtualMachines", "properties": {"other": '
    '{"tags": {"a": "b"}}}}',  # a `tags` key that is not the resource's
    '{"id": "\u00e9", "type": "Microsoft.Compute/virtualMachines"}',
])
def test_a_block_with_one_unusual_line_is_normalised_by_resource(line):
    resources = list(synth_resources(50))
    data = json_lines(resources[:20]) + line.encode() + b"\n" + json_lines(resources[20:])
    assert normalize_lines(data) is None
    assert_same(by_columns(data), by_resource(data))


def test_one_bad_typed_value_falls_back_and_is_named(tmp_path):
    path = tmp_path / "estate.jsonl"
    write_estate(path, 300)
    lines = path.read_bytes().splitlines(keepends=True)
    item = json.loads(lines[10])
    item["properties"]["publishingProfile"]["replicaCount"] = "many"
    lines[10] = json.dumps(item).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    snapshot = import_files([path], collected_at=COLLECTED_AT)
    assert snapshot.manifest["problem_count"] == 1
    assert snapshot.manifest["problems"][0].startswith("estate.jsonl line 11: ")
    assert snapshot.manifest["problems"][0].endswith(
        ": properties.publishingProfile.replicaCount: expected a whole number, got \"many\"")
    reference = by_resource(path.read_bytes())
    for name, table in reference.tables.items():
        assert snapshot.arrow_tables[name].equals(table), name


@pytest.mark.parametrize("line", [
    b'{"id": "x", "type": "t", "v": NaN}', b'{"id": "x", "type": "t", "v": -Infinity}',
    b'{"id": "x", "type": "t"} {"id": "y", "type": "t"}', b'\xef\xbb\xbf{"id": "x"}',
    b'{"id": "x", "type": "t", "other": "\xff"}',
])
def test_lines_pyarrow_would_read_but_json_does_not_are_refused(tmp_path, line):
    path = tmp_path / "estate.jsonl"
    write_estate(path, 50)
    path.write_bytes(path.read_bytes() + line + b"\n")
    with pytest.raises(AuditError, match="estate.jsonl: line .*: malformed JSON"):
        import_files([path])


def test_gzip_gives_the_same_snapshot(tmp_path):
    plain, packed = tmp_path / "estate.jsonl", tmp_path / "estate.jsonl.gz"
    write_estate(plain, 500, seed=3)
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert (import_files([packed], collected_at=COLLECTED_AT).table_hashes
            == import_files([plain], collected_at=COLLECTED_AT).table_hashes)


def test_blocks_give_the_snapshot_of_one_block_and_duplicates_are_named(tmp_path, monkeypatch):
    path = tmp_path / "estate.jsonl"
    write_estate(path, 300)
    lines = path.read_bytes().splitlines(keepends=True)
    again = json.loads(lines[-5])
    again["id"] = again["id"].upper()  # a duplicate far from its first copy: in another block
    path.write_bytes(b"".join(lines) + b"\n" + json.dumps(again).encode() + b"\n")
    whole = import_files([path], collected_at=COLLECTED_AT)
    monkeypatch.setattr("auditor.importer.BLOCK_BYTES", 20_000)
    blocks = import_files([path], collected_at=COLLECTED_AT)
    assert blocks.table_hashes == whole.table_hashes
    assert blocks.manifest == whole.manifest
    assert whole.manifest["skipped_types"]["(duplicate id)"] == 1
    assert whole.manifest["problems"] == [f"estate.jsonl line {len(lines) + 2}: duplicate id "
                                          f"{again['id']}"]

    path.write_bytes(b"".join(lines[:50]) + b'{"id": "x", "name": \n' + b"".join(lines[50:]))
    with pytest.raises(AuditError, match="estate.jsonl: line 51: malformed JSON"):
        import_files([path])


TAG_TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["", "Prod", "a\"b", "c\\d", "é\n"]))


@st.composite
def well_typed(draw):
    """A real shape with fields dropped or re-cased: the columns can take it."""
    resource = copy.deepcopy(draw(st.sampled_from(SHAPES)))
    for path in draw(st.lists(st.sampled_from(list(_paths(resource))), max_size=3)):
        parent = resource
        try:
            for step in path[:-1]:
                parent = parent[step]
            value = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
        if isinstance(value, str) and draw(st.booleans()):
            parent[path[-1]] = draw(st.sampled_from([value.upper(), value.swapcase(), ""]))
        elif isinstance(parent, dict):
            del parent[path[-1]]
    return resource


@st.composite
def lines_of_resources(draw) -> bytes:
    """Resources of every shape, mutated (dropped, re-cased and, in half the blocks, mistyped
    fields) or given odd tags, each under its own id (mostly), as JSON lines."""
    resources, shapes = [], st.one_of(well_typed(), mutated_resource()) if draw(st.booleans()) \
        else well_typed()
    for index in range(draw(st.integers(1, 8))):
        resource = draw(shapes)
        if isinstance(resource, dict) and draw(st.booleans()):
            resource = dict(resource, tags=draw(st.dictionaries(TAG_TEXT, TAG_TEXT, max_size=3)))
        if isinstance(resource, dict) and isinstance(resource.get("id"), str) \
                and draw(st.integers(0, 9)):
            resource = dict(resource, id=resource["id"] + f"-{index}")
        resources.append(resource)
    return json_lines(resources)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines_of_resources())
def test_any_block_gives_the_tables_of_the_reference(data):
    assert_same(by_columns(data), by_resource(data))


@pytest.mark.parametrize("name", ["resource_graph_vmss_instances_model_view.json",
                                  "resource_graph_vmss_instances_bare.json"])
def test_scale_set_instances_give_the_same_tables(name):
    from pathlib import Path
    path = Path(__file__).parent / "fixtures" / "azure" / name
    data = json_lines(json.loads(path.read_text(encoding="utf-8"))["resources"])
    assert normalize_lines(data) is not None
    by_reference = by_resource(data)
    assert_same(by_columns(data), by_reference)
    instances = by_reference.tables["instances"].to_pylist()
    assert instances and all(row["scale_set_id"].endswith("/ss-drift") for row in instances)
    if "model_view" in name:
        assert [r["exact_version"] for r in instances] == ["1.10.0", "1.10.0", "1.9.0"]
        assert [r["latest_model_applied"] for r in instances] == [True, True, False]
        assert instances[2]["power_state"] == "deallocated"
    else:
        assert {r["exact_version"] for r in instances} == {None}
        assert {r["latest_model_applied"] for r in instances} == {None}
