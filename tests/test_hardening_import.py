"""Imports that used to lose data or crash: a truncated `az graph query` page or ARM page is a
recorded gap, a huge JSON line is refused in one line, and one out-of-range number or lone
surrogate is a per-resource problem, not the end of the import."""

from __future__ import annotations

import gzip
import json

import pytest

import auditor.importer
from auditor.engine import evaluate, load_rules
from auditor.errors import AuditError
from auditor.estate import Estate
from auditor.importer import import_files
from tests.builders import AS_OF, compliant_estate_resources, vm
from tests.builders import run_cli as run


def write(path, document):
    path.write_text(json.dumps(document))
    return path


def cov001(snapshot):
    rules = [rule for rule in load_rules() if rule.id == "COV001"]
    return evaluate(Estate(snapshot, AS_OF), rules)


# --- 3: a truncated export is a gap --------------------------------------------------------
# `az graph query` (resource-graph extension 2.x) prints {"count", "data", "skip_token",
# "total_records"}; skip_token is null on the last page. The REST answer itself (saved with
# `az rest`) says {"totalRecords", "count", "data", "$skipToken", "resultTruncated"}; an ARM
# list page says {"value", "nextLink"}.

def az_page(rows, total, token):
    return {"count": len(rows), "data": rows, "skip_token": token, "total_records": total}


@pytest.mark.parametrize("document", [
    az_page(compliant_estate_resources(), 1000, "ew0KICAiJGlkIjogIjEiLA0K"),
    az_page(compliant_estate_resources(), 1000, None),  # total_records > count
    {"totalRecords": 9, "count": 4, "data": compliant_estate_resources(),
     "$skipToken": "abc", "resultTruncated": "false"},
    {"totalRecords": 4, "count": 4, "data": compliant_estate_resources(), "resultTruncated": "true"},
    {"value": compliant_estate_resources(),
     "nextLink": "https://management.azure.com/subscriptions/x/providers/Microsoft.Compute/"
                 "virtualMachines?api-version=2024-03-01&$skiptoken=abc"},
], ids=["skip_token", "total_records", "rest-skipToken", "resultTruncated", "arm-nextLink"])
def test_a_truncated_export_is_a_gap_in_the_manifest_scope_and_cov001(tmp_path, document):
    path = write(tmp_path / "page1.json", document)
    snapshot = import_files([path], collected_at=AS_OF)
    gaps = snapshot.manifest["gaps"]
    assert len(gaps) == 1 and gaps[0]["ids"] == ["page1.json"]
    assert gaps[0]["status"] == "incomplete"
    scope = snapshot.tables["scope"]
    assert list(scope["status"]) == ["incomplete"]
    findings = cov001(snapshot)
    assert len(findings) == 1 and "page1.json" in findings["message"].iloc[0]


def test_a_complete_az_result_is_no_gap(tmp_path):
    rows = compliant_estate_resources()
    path = write(tmp_path / "all.json", az_page(rows, len(rows), None))
    snapshot = import_files([path], collected_at=AS_OF)
    assert snapshot.manifest["gaps"] == [] and snapshot.tables["scope"].empty


def test_all_pages_of_one_result_imported_together_are_no_gap(tmp_path):
    rows = compliant_estate_resources()
    first = write(tmp_path / "p1.json", az_page(rows[:2], len(rows), "token-1"))
    second = write(tmp_path / "p2.json", az_page(rows[2:], len(rows), None))
    snapshot = import_files([first, second], collected_at=AS_OF)
    assert snapshot.manifest["gaps"] == []


def test_import_of_a_truncated_page_warns_in_one_line(tmp_path, capsys):
    path = write(tmp_path / "page1.json", az_page(compliant_estate_resources(), 1000, "tok"))
    code, out, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "page1.json" in lines[0] and "incomplete" in lines[0]
    assert "--skip-token" in lines[0]


def test_the_summary_sheet_shows_the_gap(tmp_path, capsys):
    from openpyxl import load_workbook

    path = write(tmp_path / "page1.json", az_page(compliant_estate_resources(), 1000, "tok"))
    run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    code, _, _ = run(capsys, "audit", str(tmp_path / "snap"), "-o", str(tmp_path / "r"),
                     "--format", "xlsx")
    assert code == 0
    sheet = load_workbook(tmp_path / "r" / "image-audit.xlsx")["Summary"]
    cells = {row[0].value: row[1].value for row in sheet.iter_rows() if row[0].value}
    assert cells["coverage"] == "partial"
    assert "page1.json" in str(cells["not read"])


def test_readme_shows_complete_paging():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "--skip-token" in readme


# --- 7: one huge JSON line -----------------------------------------------------------------

def test_a_line_over_the_cap_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(auditor.importer, "BLOCK_BYTES", 1024)
    monkeypatch.setattr(auditor.importer, "MAX_LINE_BYTES", 4096)
    path = tmp_path / "huge.jsonl.gz"
    good = json.dumps(vm()) + "\n"
    with gzip.open(path, "wt") as handle:
        handle.write(good + good.replace("vm1", "vm2"))
        handle.write('{"id": "' + "x" * 20000 + '"}\n')
    code, _, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "huge.jsonl.gz" in lines[0]
    assert "line 3" in lines[0] and "longer than" in lines[0]


def test_lines_under_the_cap_still_read(tmp_path, monkeypatch):
    monkeypatch.setattr(auditor.importer, "BLOCK_BYTES", 64)
    monkeypatch.setattr(auditor.importer, "MAX_LINE_BYTES", 4096)
    path = tmp_path / "ok.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in compliant_estate_resources()))
    snapshot = import_files([path], collected_at=AS_OF)
    assert len(snapshot.tables["machines"]) == 1


def test_the_line_cap_is_64_mib():
    assert auditor.importer.MAX_LINE_BYTES == 64 * 2**20


# --- 10: one bad value is a problem, not the end of the import ------------------------------

BAD_NUMBERS = ['1e400', '-1e400']


@pytest.mark.parametrize("number", BAD_NUMBERS)
@pytest.mark.parametrize("shape", ["json", "jsonl"])
def test_an_out_of_range_number_is_a_problem(tmp_path, number, shape):
    resources = compliant_estate_resources()
    texts = [json.dumps(r) for r in resources]
    texts[-1] = texts[-1].replace('"properties": {', '"properties": {"priority": ' + number + ', ', 1)
    texts[-1] = texts[-1].replace('"osDisk": {', '"osDisk": {"diskSizeGB": ' + number + ', ', 1)
    path = tmp_path / f"export.{shape}"
    path.write_text("[" + ",".join(texts) + "]" if shape == "json" else "\n".join(texts) + "\n")
    snapshot = import_files([path], collected_at=AS_OF)
    assert len(snapshot.tables["machines"]) == 1
    assert snapshot.manifest["problem_count"] >= 1


@pytest.mark.parametrize("shape", ["json", "jsonl"])
def test_a_lone_surrogate_is_a_problem_and_replaced(tmp_path, shape):
    resources = compliant_estate_resources()
    texts = [json.dumps(r) for r in resources]
    texts[0] = texts[0].replace('"tags": {', '"tags": {"bad": "x\\ud800y", ', 1)
    path = tmp_path / f"export.{shape}"
    path.write_text("[" + ",".join(texts) + "]" if shape == "json" else "\n".join(texts) + "\n")
    snapshot = import_files([path], collected_at=AS_OF)
    tags = snapshot.tables["resource_tags"]
    assert "x\ufffdy" in set(tags["value"].astype(str))
    assert any("surrogate" in p for p in snapshot.manifest["problems"])


def test_malformed_json_is_still_fatal(tmp_path):
    path = tmp_path / "export.json"
    path.write_text('[{"id": 1e400,]')
    with pytest.raises(AuditError, match="malformed JSON"):
        import_files([path])
