"""Snapshots as evidence: --force replaces only a snapshot, the hash covers the manifest,
every table's schema is checked on read, permissions and disk errors are one line, and two
audits never write one folder at once."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat

import pytest

import auditor.snapshot
from auditor.errors import AuditError
from auditor.snapshot import FORMAT_VERSION, Snapshot
from tests.builders import compliant_estate_resources, one_line, snapshot_of
from tests.builders import run_cli as run


@pytest.fixture
def written(tmp_path):
    path = tmp_path / "snap"
    snapshot_of(*compliant_estate_resources()).write(path)
    return path


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(compliant_estate_resources()))
    return path


def rewrite_manifest(path, edit, rehash_tables=False):
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    edit(manifest)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))


# --- 1: --force replaces only a snapshot ----------------------------------------------------

def test_force_replaces_an_earlier_snapshot(written):
    snapshot_of().write(written, overwrite=True)
    assert Snapshot.read(written).tables["machines"].empty


@pytest.mark.parametrize("make", ["project folder", "file", "empty folder", "bad manifest"])
def test_force_never_deletes_what_is_not_a_snapshot(tmp_path, make):
    target = tmp_path / "target"
    if make == "file":
        target.write_text("my notes")
    else:
        target.mkdir()
        if make == "project folder":
            (target / "main.py").write_text("print('precious')")
        if make == "bad manifest":
            (target / "manifest.json").write_text('{"format": "something else"}')
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(AuditError, match="not a snapshot.*--force replaces only"):
        snapshot_of().write(target, overwrite=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_force_never_deletes_what_a_stub_manifest_sits_beside(tmp_path):
    """A manifest that only says `format` is no snapshot: the folder beside it is kept."""
    target = tmp_path / "target"
    target.mkdir()
    (target / "manifest.json").write_text('{"format": "image-audit-snapshot"}')
    (target / "thesis.docx").write_text("precious")
    with pytest.raises(AuditError, match="not a snapshot.*--force replaces only"):
        snapshot_of().write(target, overwrite=True)
    assert (target / "thesis.docx").read_text() == "precious"


def test_force_never_deletes_files_added_to_a_snapshot(written):
    (written / "my-notes.txt").write_text("notes")
    (written / "evidence").mkdir()
    with pytest.raises(AuditError, match="2 file.*not part of the snapshot.*evidence"):
        snapshot_of().write(written, overwrite=True)
    assert (written / "my-notes.txt").read_text() == "notes"
    assert Snapshot.read(written).tables["machines"].shape[0] > 0


def test_a_table_file_that_is_not_a_regular_file_is_refused(written):
    """A table linked to /dev/zero would be read for ever: only regular files are read."""
    table = written / "galleries.parquet"
    table.unlink()
    table.symlink_to("/dev/zero")
    with pytest.raises(AuditError, match="galleries.parquet: not a regular file"):
        Snapshot.read(written)


def test_import_force_on_a_project_folder_is_one_line(tmp_path, export, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text("print('precious')")
    code, _, err = run(capsys, "import", str(export), "-o", str(project), "--force")
    assert code == 2
    one_line(err, str(project), "not a snapshot")
    assert (project / "main.py").read_text() == "print('precious')"


# --- 11: the hash covers the manifest; schemas and names checked on read ---------------------

@pytest.mark.parametrize("edit", [
    lambda m: m.update(collected_at="2030-01-01T00:00:00+00:00"),
    lambda m: m.update(gaps=[]) if m.get("gaps") else m.update(gaps=[{"table": "x"}]),
    lambda m: m.update(problems=[], problem_count=0) if m.get("problems") else m.update(problems=["x"]),
    lambda m: m.update(source={"kind": "import", "files": ["other.json"]}),
    lambda m: m.pop("read_types"),
])
def test_an_edited_manifest_is_refused(written, edit):
    rewrite_manifest(written, edit)
    with pytest.raises(AuditError, match="manifest.json: snapshot SHA-256 does not match"):
        Snapshot.read(written)


def test_the_stored_hash_is_the_hash_of_everything_else(written):
    manifest = json.loads((written / "manifest.json").read_text())
    stored = manifest.pop("snapshot_sha256")
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert stored == hashlib.sha256(canonical.encode()).hexdigest()
    assert Snapshot.read(written).sha256 == stored


def test_an_old_format_snapshot_is_refused_with_what_to_do(written):
    rewrite_manifest(written, lambda m: m.update(format_version=1))
    with pytest.raises(AuditError, match="format version 1.*re-import"):
        Snapshot.read(written)


def rehash(path):
    """Rewrite the manifest with a fresh, valid hash: what a careful forger would do."""
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("snapshot_sha256")
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    manifest["snapshot_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["../machines", "/etc/passwd", "sub/machines", "Machines", "x y"])
def test_table_names_are_plain_names_never_paths(written, name):
    def edit(m):
        m["tables"][name] = dict(m["tables"]["machines"])
    rewrite_manifest(written, edit)
    rehash(written)
    with pytest.raises(AuditError, match="table name"):
        Snapshot.read(written)


def test_a_file_entry_that_is_not_the_table_name_is_refused(written):
    rewrite_manifest(written, lambda m: m["tables"]["machines"].update(file="../../elsewhere.parquet"))
    rehash(written)
    with pytest.raises(AuditError, match="machines"):
        Snapshot.read(written)


def test_a_table_of_the_wrong_schema_is_refused(written):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # the galleries table's file replaced by one whose `name` column holds numbers
    table = pq.read_table(written / "galleries.parquet")
    at = table.schema.get_field_index("name")
    table = table.set_column(at, "name", pa.array([1] * table.num_rows, pa.int64()))
    pq.write_table(table, written / "galleries.parquet")
    digest = hashlib.sha256((written / "galleries.parquet").read_bytes()).hexdigest()
    rewrite_manifest(written, lambda m: m["tables"]["galleries"].update(sha256=digest))
    rehash(written)
    with pytest.raises(AuditError, match="galleries.parquet: column 'name' is int64, expected string"):
        Snapshot.read(written)


def test_snapshot_folders_are_readable_like_reports(written):
    mode = stat.S_IMODE(os.stat(written).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask
    assert mode & stat.S_IRGRP or umask & stat.S_IRGRP


def test_the_format_version_is_current(written):
    assert json.loads((written / "manifest.json").read_text())["format_version"] == FORMAT_VERSION == 2


# --- 10: manifests and file systems that used to crash ---------------------------------------

def test_a_manifest_without_collected_at_is_one_line(written, tmp_path, capsys):
    rewrite_manifest(written, lambda m: m.pop("collected_at"))
    rehash(written)
    code, _, err = run(capsys, "audit", str(written), "-o", str(tmp_path / "r"), "--format", "json")
    assert code == 2
    one_line(err, "manifest.json", "collected_at")


@pytest.mark.parametrize("unreadable", ["machines.parquet", "manifest.json"])
def test_an_unreadable_snapshot_file_is_one_line(written, tmp_path, capsys, monkeypatch, unreadable):
    real = auditor.snapshot._read_file

    def denied(path):
        if path.name == unreadable:  # as chmod 0 does for anyone but root
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(auditor.snapshot, "_read_file", denied)
    code, _, err = run(capsys, "audit", str(written), "-o", str(tmp_path / "r"), "--format", "json")
    assert code == 2
    one_line(err, unreadable, "Permission denied")


def test_a_full_disk_while_writing_a_snapshot_is_one_line(tmp_path, export, capsys, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(auditor.snapshot, "_write_synced", full)
    code, _, err = run(capsys, "import", str(export), "-o", str(tmp_path / "snap"))
    assert code == 2
    one_line(err, "snap", "No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["export.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes everywhere")
def test_a_folder_that_cannot_be_written_is_one_line(tmp_path, export, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    try:
        code, _, err = run(capsys, "import", str(export), "-o", str(locked / "snap"))
    finally:
        os.chmod(locked, 0o755)
    assert code == 2
    one_line(err, "snap", "ermission denied")


# --- 13: one audit writes a folder at a time --------------------------------------------------

def test_a_second_audit_on_a_locked_folder_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    lock = out / ".image-audit.lock"
    lock.write_text(f"{os.getppid()}\n")  # a live process holds it
    code, _, err = run(capsys, "audit", "--sample", "-o", str(out), "--format", "json")
    assert code == 2
    one_line(err, str(out), "another image-audit")
    assert sorted(os.listdir(out)) == [".image-audit.lock"]


def test_the_lock_is_released_after_an_audit_and_a_stale_one_is_taken_over(tmp_path, capsys):
    out = tmp_path / "reports"
    code, _, _ = run(capsys, "audit", "--sample", "-o", str(out), "--format", "json")
    assert code == 0 and not (out / ".image-audit.lock").exists()
    (out / ".image-audit.lock").write_text("999999999\n")  # no such process: left by a kill
    code, _, _ = run(capsys, "audit", "--sample", "-o", str(out), "--format", "json")
    assert code == 0 and not (out / ".image-audit.lock").exists()


def test_the_lock_is_released_when_the_audit_fails(tmp_path, capsys):
    out = tmp_path / "reports"
    code, _, _ = run(capsys, "audit", str(tmp_path / "missing"), "-o", str(out))
    assert code == 2
    assert not (out / ".image-audit.lock").exists()
