"""Reports read back the way their readers read them."""

import csv
import json

import pytest
from openpyxl import load_workbook

from auditor.cli import main
from tests.builders import GOOD_TAGS, compliant_estate_resources, gallery, vm

FORMULA = '=HYPERLINK("http://example.invalid","x")'


@pytest.fixture
def hostile_reports(tmp_path):
    raw = tmp_path / "raw.json"
    resources = compliant_estate_resources() + [
        gallery("g2", tags=GOOD_TAGS | {"environment": FORMULA}),
        vm("+cmd", tags={"environment": "@SUM(1)", "team": "-2+3"})]
    raw.write_text(json.dumps(resources))
    with pytest.raises(SystemExit):
        main(["import", str(raw), "-o", str(tmp_path / "snap")])
    with pytest.raises(SystemExit):
        main(["audit", str(tmp_path / "snap"), "-o", str(tmp_path / "out")])
    return tmp_path / "out"


def test_workbook_structure(hostile_reports):
    book = load_workbook(hostile_reports / "image-audit.xlsx")
    assert {"Summary", "Findings", "machines", "galleries", "image_versions"} <= set(
        book.sheetnames)
    findings = book["Findings"]
    assert findings.freeze_panes == "A2"
    assert findings.auto_filter.ref.startswith("A1:")
    header = [c.value for c in findings[1]]
    assert header[:3] == ["rule_id", "rule_name", "severity"]
    severity = findings.cell(row=2, column=3)
    assert severity.fill.fgColor.rgb.endswith(("D32F2F", "FBC02D", "F57C00"))


def test_workbook_never_holds_formulas(hostile_reports):
    book = load_workbook(hostile_reports / "image-audit.xlsx")
    texts = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    texts.append(cell.value)
    assert any(FORMULA in t for t in texts)
    assert "+cmd" in texts


def test_csv_defuses_formulas(hostile_reports):
    with open(hostile_reports / "findings.csv", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    names = {r["resource_name"] for r in rows}
    assert "'+cmd" in names and "+cmd" not in names
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


def test_json_findings(hostile_reports):
    document = json.loads((hostile_reports / "findings.json").read_text())
    assert document["summary"]["total"] == len(document["findings"])
    assert document["snapshot_sha256"]
    tag002 = [f for f in document["findings"] if f["rule_id"] == "TAG002"]
    assert {f["resource_name"] for f in tag002} == {"g2", "+cmd"}
    assert isinstance(tag002[0]["evidence"], dict)


def test_existing_report_kept_when_write_fails(tmp_path, monkeypatch):
    from auditor import report
    target = tmp_path / "findings.csv"
    target.write_text("previous")

    def failing(path):
        path.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        report.atomic_write(target, failing)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["findings.csv"]
