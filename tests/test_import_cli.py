"""`az ... list` output (properties lifted to the top level) is read as the ARM shape it came
from; a projection without properties is refused with a one-line error naming the file.
Fixtures: tests/fixtures/azure/cli (see its README)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from auditor.cli import main
from auditor.engine import evaluate, load_rules
from auditor.errors import AuditError
from auditor.estate import Estate
from auditor.importer import import_files

CLI = Path(__file__).parent / "fixtures" / "azure" / "cli"
EXPORTS = ["az_sig_list.json", "az_sig_image_definition_list.json",
           "az_sig_image_version_list.json", "az_image_list.json", "az_vm_list.json",
           "az_vmss_list.json"]


@pytest.fixture(scope="module")
def snapshot():
    return import_files([CLI / name for name in EXPORTS])


def _row(snapshot, table, name):
    frame = snapshot.tables[table]
    return frame.set_index("name").loc[name]


def test_every_cli_list_is_read_with_its_properties(snapshot):
    assert {name: len(frame) for name, frame in snapshot.tables.items() if name in (
        "galleries", "image_definitions", "image_versions", "managed_images", "machines")} == {
        "galleries": 1, "image_definitions": 1, "image_versions": 1, "managed_images": 1,
        "machines": 3}
    assert snapshot.manifest["problem_count"] == 0
    definition = _row(snapshot, "image_definitions", "Ubuntu-22-Base")
    assert (definition["publisher"], definition["os_state"], definition["hyper_v_generation"]) == (
        "contoso", "Generalized", "V2")
    version = _row(snapshot, "image_versions", "1.2.0")
    assert version["os_disk_size_gb"] == 30 and version["target_region_count"] == 2
    assert version["source_id"].endswith("/images/ubuntu-22-base-1.2.0")
    assert version["published_date"] == pd.Timestamp("2026-06-01T08:15:42.123456Z")
    regions = snapshot.tables["version_regions"].set_index("region")
    assert regions.loc["westeurope", "regional_replica_count"] == 3
    image = _row(snapshot, "managed_images", "img-erp-2.1")
    assert (image["os_disk_size_gb"], image["data_disk_size_gb"]) == (127, 64)
    assert image["source_vm_id"].endswith("/virtualmachines/erp-build")


def test_cli_machines_are_read_with_their_image_and_disk(snapshot):
    web = _row(snapshot, "machines", "web-01")
    assert (web["image_kind"], web["image_version"], web["exact_version"], web["vm_size"],
            web["os_type"], bool(web["os_disk_unmanaged"])) == (
        "marketplace", "latest", "22.04.202410020", "Standard_D4s_v5", "Linux", False)
    erp = _row(snapshot, "machines", "erp-01")
    assert bool(erp["os_disk_unmanaged"]) and erp["license_type"] == "Windows_Server"
    assert erp["resource_group"] == "rg-legacy" and erp["subscription_id"].startswith("0f0e0d0c")
    scale_set = _row(snapshot, "machines", "web-ss")
    assert (scale_set["kind"], scale_set["capacity"], scale_set["image_kind"],
            scale_set["image_version"]) == ("vmss", 4, "gallery", "1.2.0")


def test_vm_list_d_power_state_is_read():
    machines = import_files([CLI / "az_vm_list_d.json"]).tables["machines"].set_index("name")
    assert machines.loc["web-01", "power_state"] == "running"
    assert machines.loc["erp-01", "power_state"] == "deallocated"


def test_cli_export_is_audited_like_arm(snapshot):
    rules = [r for r in load_rules() if r.id in ("LEG001", "PIN001", "STL005")]
    findings = evaluate(Estate(snapshot), rules)
    assert sorted(zip(findings["rule_id"], findings["resource_name"], strict=True)) == [
        ("LEG001", "erp-01"), ("PIN001", "web-01")]


def test_cli_shape_as_json_lines_gives_the_same_snapshot(tmp_path):
    lines = tmp_path / "export.jsonl"
    with lines.open("w", encoding="utf-8") as out:
        for name in EXPORTS:
            for item in json.loads((CLI / name).read_text(encoding="utf-8")):
                out.write(json.dumps(item) + "\n")
    document = tmp_path / "export.json"
    document.write_text(json.dumps([json.loads(line) for line in lines.read_text().splitlines()]))
    assert import_files([lines]).table_hashes == import_files([document]).table_hashes


def test_projection_without_properties_is_refused_naming_the_file():
    with pytest.raises(AuditError) as info:
        import_files([CLI / "az_vm_list_query_projection.json"])
    message = str(info.value)
    assert "az_vm_list_query_projection.json: item 0: a microsoft.compute/virtualmachines " \
           "resource without its properties" in message and "\n" not in message


def test_projection_is_exit_2_one_line(tmp_path, capsys):
    raw = tmp_path / "vms.json"
    shutil.copy(CLI / "az_vm_list_query_projection.json", raw)
    with pytest.raises(SystemExit) as info:
        main(["import", str(raw), "-o", str(tmp_path / "snap")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "vms.json" in err
    assert not (tmp_path / "snap").exists()


# --- any CLI-shaped resource, with fields dropped or mistyped, is read or reported ----------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from auditor.normalize import normalize  # noqa: E402
from tests.test_columnar import assert_same, by_columns, by_resource, json_lines  # noqa: E402
from tests.test_properties import ODD_VALUES, _paths  # noqa: E402

CLI_SHAPES = [item for name in EXPORTS + ["az_vm_list_d.json"]
              for item in json.loads((CLI / name).read_text(encoding="utf-8"))]


@st.composite
def mutated_cli_resource(draw):
    resource = json.loads(json.dumps(draw(st.sampled_from(CLI_SHAPES))))
    paths = list(_paths(resource))
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(paths))
        parent = resource
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(ODD_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    return resource


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_cli_resource(), min_size=1, max_size=5))
def test_mutated_cli_resources_never_raise_and_both_normalisers_agree(resources):
    result = normalize(resources)
    assert sum(result.read_types.values()) + sum(result.skipped_types.values()) == len(resources)
    data = json_lines(resources)
    assert_same(by_columns(data), by_resource(data))
