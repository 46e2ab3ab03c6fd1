"""Errors that used to mislead: each is one line, says what to do, and comes before the work."""

from __future__ import annotations

import json

import pytest

import auditor.api
import auditor.cli
from tests.builders import compliant_estate_resources, one_line
from tests.builders import run_cli as run


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(compliant_estate_resources()))
    return path


@pytest.fixture
def no_evaluation(monkeypatch):
    """Fails the test if the audit gets as far as evaluating rules."""
    def evaluate(*args, **kwargs):
        raise AssertionError("the audit ran before its outputs were checked")
    monkeypatch.setattr(auditor.api, "evaluate", evaluate)


def test_output_naming_a_file_fails_before_the_audit(tmp_path, capsys, no_evaluation):
    target = tmp_path / "reports.txt"
    target.write_text("not a folder")
    code, _, err = run(capsys, "audit", "--sample", "-o", str(target))
    assert code == 2
    one_line(err, str(target), "not a folder")
    assert target.read_text() == "not a folder"


def test_cost_output_naming_a_file_fails_first(tmp_path, capsys):
    target = tmp_path / "reports.txt"
    target.write_text("not a folder")
    code, _, err = run(capsys, "cost", "--sample", "-o", str(target))
    assert code == 2
    one_line(err, str(target), "not a folder")


def test_audit_on_a_missing_path_says_it_is_missing(tmp_path, capsys):
    code, _, err = run(capsys, "audit", str(tmp_path / "nope"), "-o", str(tmp_path / "r"))
    assert code == 2
    line = one_line(err, "nope", "no such")
    assert "no manifest.json" not in line


def test_audit_on_an_export_says_import_first(export, tmp_path, capsys):
    code, _, err = run(capsys, "audit", str(export), "-o", str(tmp_path / "r"))
    assert code == 2
    one_line(err, str(export), "image-audit import")


def test_audit_on_a_folder_of_exports_says_import_first(export, tmp_path, capsys):
    code, _, err = run(capsys, "audit", str(tmp_path), "-o", str(tmp_path / "r"))
    assert code == 2
    one_line(err, "no manifest.json", "image-audit import")


@pytest.mark.parametrize("option", [
    ["--subscription", "00000000-0000-0000-0000-000000000001"], ["--management-group", "mg"],
    ["--deep"], ["--cloud", "china"], ["--quiet"], ["--timeout", "5"],
    ["--endpoint", "https://management.azure.com"],
])
def test_scope_options_without_collect_are_a_usage_error(tmp_path, capsys, option):
    code, _, err = run(capsys, "audit", "--sample", "-o", str(tmp_path / "r"), *option)
    assert code == 2
    one_line(err, option[0], "--collect")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args", [
    ["audit"], ["audit", "--format", "pdf", "--sample"], ["import"], ["nonsense"],
    ["audit", "--sample", "--no-such-option"],
])
def test_usage_errors_are_one_line(capsys, args):
    code, _, err = run(capsys, *args)
    assert code == 2
    line = one_line(err, "image-audit")
    assert "--help" in line


def test_utf16_export_is_read(tmp_path, capsys):
    # Windows PowerShell 5's `>` writes UTF-16 LE with a byte order mark.
    path = tmp_path / "export.json"
    text = "\ufeff" + json.dumps(compliant_estate_resources())
    path.write_bytes(text.encode("utf-16-le"))
    code, out, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 0, err
    assert "machines 1" in out


@pytest.mark.parametrize("encoding, bom", [("utf-16-be", "\ufeff"), ("utf-8", "\ufeff")])
def test_other_byte_order_marks_are_read(tmp_path, capsys, encoding, bom):
    path = tmp_path / "export.json"
    path.write_bytes((bom + json.dumps(compliant_estate_resources())).encode(encoding))
    code, _, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 0, err


@pytest.mark.parametrize("bom", ["\ufeff", ""])
def test_utf16_and_bom_json_lines_are_read(tmp_path, capsys, bom):
    path = tmp_path / "export.jsonl"
    lines = "".join(json.dumps(r) + "\r\n" for r in compliant_estate_resources())
    path.write_bytes((bom + lines).encode("utf-16-le" if bom else "utf-8-sig"))
    code, out, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 0, err
    assert "machines 1" in out


def test_broken_utf16_is_one_line(tmp_path, capsys):
    path = tmp_path / "export.json"
    path.write_bytes(b"\xff\xfe" + "[{\"id\": \"x\"}]".encode("utf-16-le") + b"\x00")
    code, _, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 2
    one_line(err, "export.json", "UTF-16")


def test_collect_onto_an_existing_snapshot_fails_before_collecting(tmp_path, capsys, monkeypatch):
    from tests.builders import snapshot_of

    snapshot_of().write(tmp_path / "snap")

    def collect(**scope):
        raise AssertionError("collected before checking the output")
    monkeypatch.setattr(auditor.cli, "collect_from_options", collect)
    code, _, err = run(capsys, "collect", "-o", str(tmp_path / "snap"))
    assert code == 2
    one_line(err, "snap", "already exists")
    (tmp_path / "project").mkdir()
    code, _, err = run(capsys, "collect", "-o", str(tmp_path / "project"), "--force")
    assert code == 2
    one_line(err, "project", "not a snapshot")


def test_import_onto_an_existing_snapshot_fails_before_reading(tmp_path, capsys, monkeypatch):
    from tests.builders import snapshot_of

    snapshot_of().write(tmp_path / "snap")

    def read(*args, **kwargs):
        raise AssertionError("imported before checking the output")
    monkeypatch.setattr(auditor.cli, "import_files", read)
    code, _, err = run(capsys, "import", str(tmp_path / "x.json"), "-o", str(tmp_path / "snap"))
    assert code == 2
    one_line(err, "snap", "already exists")


def test_cleanup_plan_output_naming_a_folder_fails_first(tmp_path, capsys, no_evaluation):
    code, _, err = run(capsys, "cleanup-plan", "--sample", "-o", str(tmp_path))
    assert code == 2
    one_line(err, str(tmp_path), "is a folder")


def test_utf16_without_a_byte_order_mark_says_what_to_do(tmp_path, capsys):
    path = tmp_path / "export.json"
    path.write_bytes(json.dumps(compliant_estate_resources()).encode("utf-16-le"))
    code, _, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 2
    one_line(err, "export.json", "UTF-16 without a byte order mark", "UTF-8")
