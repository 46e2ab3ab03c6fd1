"""`image-audit import`: every accepted file shape, and clear errors for the rest."""

import gzip
import json

import pytest

from auditor.errors import AuditError
from auditor.importer import import_files
from tests.builders import gallery, version, vm

RESOURCES = [gallery(), version(), vm()]


def _write(path, document):
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("document", [
    RESOURCES,
    {"data": RESOURCES},
    {"count": 3, "data": RESOURCES, "skip_token": None, "total_records": 3},
    {"value": RESOURCES, "nextLink": None},
])
def test_document_shapes(tmp_path, document):
    snap = import_files([_write(tmp_path / "x.json", document)])
    assert len(snap.tables["galleries"]) == 1
    assert len(snap.tables["image_versions"]) == 1
    assert len(snap.tables["machines"]) == 1


def test_single_object_and_several_files(tmp_path):
    files = [_write(tmp_path / f"{i}.json", item) for i, item in enumerate(RESOURCES)]
    snap = import_files(files)
    assert sum(len(snap.tables[t]) for t in ("galleries", "image_versions", "machines")) == 3
    assert snap.manifest["source"]["files"] == ["0.json", "1.json", "2.json"]


def test_json_lines_gzip(tmp_path):
    path = tmp_path / "estate.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for item in RESOURCES:
            handle.write(json.dumps(item) + "\n\n")
    assert len(import_files([path]).tables["machines"]) == 1


def test_collected_at(tmp_path):
    from datetime import datetime, timezone
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    snap = import_files([_write(tmp_path / "x.json", RESOURCES)], collected_at=when)
    assert snap.manifest["collected_at"] == "2025-01-02T03:04:05+00:00"


def test_mixed_types_others_skipped(tmp_path):
    other = {"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/"
                   "virtualNetworks/v", "type": "microsoft.network/virtualnetworks"}
    snap = import_files([_write(tmp_path / "x.json", RESOURCES + [other, other | {"id": "x/y"}])])
    assert snap.manifest["skipped_types"]["microsoft.network/virtualnetworks"] == 2


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("{\"data\": [", "malformed JSON"),
    ("42", "not a resource list"),
    ("{\"rows\": []}", "not a resource list"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AuditError, match=message) as info:
        import_files([path])
    assert "bad.json" in str(info.value) and "\n" not in str(info.value)


def test_bad_json_line_named(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(RESOURCES[0]) + "\n{oops\n")
    with pytest.raises(AuditError, match="x.jsonl: line 2: malformed JSON"):
        import_files([path])


def test_no_supported_resources(tmp_path):
    with pytest.raises(AuditError, match="no gallery, image, VM or scale set"):
        import_files([_write(tmp_path / "x.json", [])])


def test_missing_file(tmp_path):
    with pytest.raises(AuditError, match="file not found"):
        import_files([tmp_path / "nope.json"])


def test_oversized_document_refused_without_reading(tmp_path, monkeypatch):
    monkeypatch.setattr("auditor.importer.MAX_DOCUMENT_BYTES", 100)
    path = _write(tmp_path / "big.json", RESOURCES)
    with pytest.raises(AuditError, match="too large for one JSON document"):
        import_files([path])


def test_import_reads_autoscale_settings_as_an_arm_list(tmp_path):
    from auditor.importer import import_files
    from tests.builders import AS_OF, azure_fixture

    path = tmp_path / "autoscale.json"
    path.write_text(json.dumps({"value": [azure_fixture("autoscale_setting_get")]}))
    snapshot = import_files([path], collected_at=AS_OF)
    table = snapshot.tables["autoscale_settings"]
    assert list(table["max_scale_out_step"]) == [40]
    assert snapshot.manifest["read_types"] == {"microsoft.insights/autoscalesettings": 1}
