"""Snapshots: atomic write, verified read, tamper detection."""

import json

import pytest

from auditor.errors import AuditError
from auditor.snapshot import Snapshot
from tests.builders import compliant_estate_resources, snapshot_of


@pytest.fixture
def written(tmp_path):
    path = tmp_path / "snap"
    snapshot_of(*compliant_estate_resources()).write(path)
    return path


def test_round_trip_keeps_tables_and_hashes(written):
    original = snapshot_of(*compliant_estate_resources())
    loaded = Snapshot.read(written)
    assert loaded.sha256 == original.sha256
    for name, frame in original.tables.items():
        assert loaded.tables[name].equals(frame), name
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["tables"]["machines"]["rows"] == 1
    assert manifest["collected_at"].startswith("2026-11-15")


def test_same_estate_same_hashes():
    first = snapshot_of(*compliant_estate_resources())
    second = snapshot_of(*reversed(compliant_estate_resources()))
    assert first.table_hashes == second.table_hashes


def test_edited_table_file_refused(written):
    target = written / "machines.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(AuditError, match="machines.parquet: SHA-256 does not match"):
        Snapshot.read(written)


def test_missing_table_file_refused(written):
    (written / "galleries.parquet").unlink()
    with pytest.raises(AuditError, match="galleries.parquet: table file missing"):
        Snapshot.read(written)


def test_edited_manifest_row_count_refused(written):
    manifest = json.loads((written / "manifest.json").read_text())
    manifest["tables"]["machines"]["rows"] = 5
    (written / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AuditError, match="snapshot SHA-256 does not match"):
        Snapshot.read(written)


def test_corrupt_manifest_refused(written):
    (written / "manifest.json").write_text("{not json")
    with pytest.raises(AuditError, match="corrupt manifest"):
        Snapshot.read(written)


def test_unsupported_format_version_refused(written):
    manifest = json.loads((written / "manifest.json").read_text())
    manifest["format_version"] = 99
    (written / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AuditError, match="format version 99 is not supported"):
        Snapshot.read(written)


def test_not_a_snapshot(tmp_path):
    with pytest.raises(AuditError, match="not a snapshot"):
        Snapshot.read(tmp_path)


def test_existing_snapshot_never_overwritten_without_force(written):
    before = (written / "manifest.json").read_bytes()
    with pytest.raises(AuditError, match="already exists"):
        snapshot_of().write(written)
    assert (written / "manifest.json").read_bytes() == before
    snapshot_of().write(written, overwrite=True)
    assert Snapshot.read(written).tables["machines"].empty


def test_failed_write_leaves_no_partial_directory(tmp_path, monkeypatch):
    snapshot = snapshot_of(*compliant_estate_resources())

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("auditor.snapshot._write_synced", boom)
    with pytest.raises(AuditError, match="snap: cannot write the snapshot"):
        snapshot.write(tmp_path / "snap")
    assert list(tmp_path.iterdir()) == []


def test_a_snapshot_without_a_table_is_refused(written):
    """Format 2 snapshots carry every table (the manifest hash covers the list): one missing
    is an edited or truncated snapshot, never read as empty."""
    manifest_path = written / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["tables"]["role_assignments"]
    (written / "role_assignments.parquet").unlink()
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(AuditError):
        Snapshot.read(written)


def _without_tables(path, names):
    """The snapshot as an image-audit from before `names` wrote it: no such files, and a
    manifest (and its hash) that never listed them."""
    from auditor.snapshot import _manifest_hash

    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("snapshot_sha256")
    for name in names:
        del manifest["tables"][name]
        (path / f"{name}.parquet").unlink()
    manifest["snapshot_sha256"] = _manifest_hash(manifest)
    manifest_path.write_text(json.dumps(manifest))
    return manifest["snapshot_sha256"]


def test_a_snapshot_from_before_the_arm_tables_loads_them_empty(written, rules):
    """marketplace_versions, locks and lock_reads came after format 2: an older snapshot
    loads them empty (nothing read, so DEP001 and REP009 report nothing: unknown), and keeps
    its own hash."""
    from auditor.engine import evaluate
    from auditor.estate import Estate
    from auditor.snapshot import ADDED_TABLES

    sha = _without_tables(written, ADDED_TABLES)
    snapshot = Snapshot.read(written)
    assert snapshot.sha256 == sha
    assert all(snapshot.tables[name].empty for name in ADDED_TABLES)
    assert list(snapshot.tables["locks"].columns)[:3] == ["id", "arm_id", "name"]
    assert evaluate(Estate(snapshot), [rules["DEP001"], rules["REP009"]]).empty


def test_a_snapshot_without_an_original_table_is_still_refused(written):
    _without_tables(written, ["machines"])
    with pytest.raises(AuditError, match="tables missing from the manifest: machines"):
        Snapshot.read(written)


def test_a_snapshot_from_before_the_instances_table_reads_it_as_empty_and_says_so(tmp_path):
    snapshot = snapshot_of(*compliant_estate_resources())
    del snapshot.arrow_tables["instances"]
    snapshot.write(tmp_path / "old")
    loaded = Snapshot.read(tmp_path / "old")
    assert loaded.tables["instances"].empty
    assert list(loaded.tables["instances"].columns)[-3:] == ["latest_model_applied",
                                                             "power_state", "tags"]
    assert any("scale-set instances were not recorded" in p for p in loaded.manifest["problems"])
    loaded.write(tmp_path / "again")  # written again, now with the table
    assert Snapshot.read(tmp_path / "again").manifest["problem_count"] == 1


def test_a_snapshot_missing_another_table_is_still_refused(tmp_path):
    snapshot = snapshot_of(*compliant_estate_resources())
    del snapshot.arrow_tables["machines"]
    snapshot.write(tmp_path / "bad")
    with pytest.raises(AuditError, match="tables missing from the manifest: machines"):
        Snapshot.read(tmp_path / "bad")
