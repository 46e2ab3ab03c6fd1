"""Reports read back the way their readers read them: openpyxl for the workbook, the csv
module for CSV, json for findings.json, text for summary.md."""

import csv
import datetime as dt
import json

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from auditor import workbook
from auditor.cli import main
from tests.builders import (
    GOOD_TAGS,
    compliant_estate_resources,
    disk,
    gallery,
    gallery_ref,
    managed_image,
    marketplace,
    version,
    vm,
)

FORMULA = '=HYPERLINK("http://example.invalid","x")'
HOSTILE = [FORMULA, "+cmd", "-2+3", "@SUM(1)", "\tTAB", "\rCR"]
PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def hostile_reports(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("hostile")
    raw = tmp_path / "raw.json"
    latest_vm = vm("vm-gallery-latest", image=gallery_ref(version_name="latest"))
    resources = compliant_estate_resources() + [
        gallery("g2", tags=GOOD_TAGS | {"environment": FORMULA, "team": FORMULA}),
        version("1.1.0", regions=(("West Europe", 2, "Standard_LRS"),
                                  ("East US", 1, "Standard_ZRS")),
                tags=GOOD_TAGS | {"team": "@SUM(1)"}),
        vm("+cmd", tags={"environment": "@SUM(1)", "team": "-2+3"}),
        vm("vm-pinned-gallery", image=gallery_ref(version_name="1.1.0")),
        vm("vm-latest", image=marketplace("latest")),
        latest_vm, disk(latest_vm, gallery_ref(version_name="1.1.0")["id"]),
        managed_image("\tTAB", tags={"environment": "\rCR", "team": "platform"})]
    raw.write_text(json.dumps(resources))
    with pytest.raises(SystemExit):
        main(["import", str(raw), "-o", str(tmp_path / "snap")])
    with pytest.raises(SystemExit):
        main(["audit", str(tmp_path / "snap"), "-o", str(tmp_path / "out")])
    return tmp_path / "out"


@pytest.fixture(scope="module")
def book(hostile_reports):
    return load_workbook(hostile_reports / "image-audit.xlsx")


def header(sheet) -> list:
    return [c.value for c in sheet[1]]


def column(sheet, name) -> list:
    index = header(sheet).index(name)
    return [row[index] for row in sheet.iter_rows(min_row=2)]


PAGES = ("Summary", "Cost summary")  # laid out as pages, not as one table


def test_every_sheet_in_reading_order(book):
    assert book.sheetnames == [
        "Summary", "Findings", "Cost summary", "Cost lines", "Machines", "Replicas", "galleries",
        "image_definitions", "image_versions", "version_regions", "managed_images",
        "resource_tags", "version_replica_sets", "autoscale_settings", "Exemptions", "Coverage",
        "Manifest"]


def test_every_table_sheet_has_frozen_header_filters_and_widths(book):
    for sheet in book.worksheets:
        if sheet.title in PAGES:
            continue
        assert sheet.freeze_panes == "A2", sheet.title
        assert sheet.auto_filter.ref.startswith("A1:"), sheet.title
        assert sheet.column_dimensions["A"].width >= 10, sheet.title
        names = header(sheet)
        assert names and all(isinstance(v, str) for v in names), sheet.title


def test_every_sheet_prints_landscape_fit_to_width_with_titles_and_footer(book):
    for sheet in book.worksheets:
        setup = sheet.page_setup
        assert setup.orientation == "landscape", sheet.title
        assert sheet.sheet_properties.pageSetUpPr.fitToPage, sheet.title
        assert (setup.fitToWidth, setup.fitToHeight) == (1, 0), sheet.title
        footer = sheet.oddFooter
        assert footer.right.text == "page &P of &N", sheet.title
        assert footer.left.text.startswith("image-audit, as of 20"), sheet.title
        if sheet.title not in PAGES:
            assert sheet.print_title_rows == "$1:$1", sheet.title


def summary_items(sheet) -> dict:
    return {row[0].value: row for row in sheet.iter_rows() if row[0].value}


def test_summary_page(book):
    sheet = book["Summary"]
    items = summary_items(sheet)
    assert items["snapshot sha256"][1].value and len(items["snapshot sha256"][1].value) == 64
    assert "5 VMs and scale sets" in items["inventory"][1].value
    assert items["as of"][1].is_date and "UTC" in items["as of"][1].number_format
    # an import records no scope: coverage is unknown, never "none"
    assert items["coverage"][1].value == "unknown: imported without scope"
    assert items["not read"][1].value.startswith("unknown")
    assert "{" not in items["scope"][1].value and "imported from 1 file" in items["scope"][1].value
    cost = items["monthly storage cost"]
    assert cost[2].value > 0 and "USD" in cost[2].number_format
    assert "upper bound" in cost[3].value
    assert items["monthly savings, deletable now"][3].value.startswith("what cleanup-plan deletes")
    assert {"monthly savings, deletable now", "monthly savings, blocked"} <= set(items)
    # every open finding is in the severity rows, and the rule table adds up to the same
    severities = {r[0].value: r[1].value for r in sheet.iter_rows()
                  if r[0].value in ("critical", "high", "medium", "low", "info")}
    assert sum(severities.values()) == items["open findings"][1].value
    rules = [r for r in sheet.iter_rows() if isinstance(r[0].value, str)
             and len(r[0].value) == 6 and r[0].value[:3].isalpha() and r[0].value[3:].isdigit()]
    assert sum(r[9].value for r in rules) == items["open findings"][1].value
    assert all(sum(c.value or 0 for c in r[4:9]) == r[9].value for r in rules)
    # the top risks in words: the most severe first
    top = next(i for i, r in enumerate(sheet.iter_rows(values_only=True))
               if str(r[0]).startswith("Top "))
    risks = list(sheet.iter_rows(min_row=top + 3, max_row=top + 4, values_only=True))
    assert risks[0][1].startswith(("TAG", "PIN", "STL", "REP", "GEN", "RET", "APR"))
    assert risks[0][4] in ("critical", "high", "medium") and risks[0][5]


def test_summary_chart_colours_each_severity_and_labels_every_rule(book):
    [chart] = book["Summary"]._charts
    assert chart.grouping == "stacked"
    assert [str(s.graphicalProperties.solidFill.srgbClr) for s in chart.series] == [
        workbook.SEVERITY_FILLS[name] for name in ("critical", "high", "medium", "low", "info")]
    assert chart.x_axis.tickLblSkip == 1 and chart.x_axis.delete is False


def test_findings_read_left_to_right(book):
    sheet = book["Findings"]
    names = header(sheet)
    assert names[:5] == ["severity", "rule_id", "resource_name", "message", "remediation"]
    assert names.index("evidence") > len(workbook.FINDINGS_READING) and "monthly_cost" in names
    assert sheet.print_area == (f"'Findings'!$A$1:${chr(64 + len(workbook.FINDINGS_READING))}$"
                                f"{sheet.max_row}")
    severity = column(sheet, "severity")[0]
    assert severity.fill.fgColor.rgb.endswith(workbook.SEVERITY_FILLS[severity.value])
    link = column(sheet, "resource_id")[0]
    assert link.hyperlink.target == "https://portal.azure.com/#@/resource" + link.value
    assert link.data_type == "s"
    money = [c for c in column(sheet, "monthly_cost") if c.value is not None]
    assert money and all("USD" in c.number_format for c in money)
    messages = column(sheet, "message")
    assert all(c.alignment.wrap_text and c.alignment.vertical == "top" for c in messages)
    long = max(messages, key=lambda c: len(c.value))
    assert sheet.row_dimensions[long.row].height >= 30  # a wrapped text gets its lines
    evidence = [c.value for c in column(sheet, "evidence") if c.value]
    assert evidence and not any("\\/" in text for text in evidence)
    assert any("/subscriptions/" in text for text in evidence)


def test_no_formula_anywhere_and_hostile_text_kept_as_text(book):
    seen = set()
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str) and cell.value.startswith(PREFIXES):
                    assert cell.data_type == "s" and cell.quotePrefix, (sheet.title, cell.value)
                    seen.add(cell.value)
    assert set(HOSTILE) <= seen


def test_hostile_tag_in_cost_team_column_is_text(book):
    teams = column(book["Cost lines"], "team")
    hostile = [c for c in teams if c.value == "@SUM(1)"]
    assert hostile and all(c.data_type == "s" for c in hostile)
    shown = [c for row in book["Cost summary"].iter_rows() for c in row if c.value == "@SUM(1)"]
    assert shown and all(c.quotePrefix for c in shown)


def test_cost_lines_alone_with_prices_to_four_decimals(book):
    sheet = book["Cost lines"]
    assert header(sheet)[0] == "kind" and sheet.freeze_panes == "A2"
    kinds = [c.value for c in column(sheet, "kind")]
    assert "replica" in kinds and "managed image" in kinds
    assert set(kinds) <= {"replica", "managed image", "replica (shallow)",
                          "additional replica set", "edge zone replica"}  # no totals below
    prices = [c for c in column(sheet, "price_per_gb_month") if c.value is not None]
    assert prices and all(c.number_format.endswith("#,##0.0000") for c in prices)
    assert "assumptions" in header(sheet) and "price_row" in header(sheet)


def test_cost_summary_tables_and_charts(book):
    sheet = book["Cost summary"]
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    headers = {row[0] for row in values if row[1] == "monthly cost"}
    assert {"team", "gallery", "region", "storage type"} <= headers
    assert len(sheet._charts) == 2
    money = [c for row in sheet.iter_rows() for c in row
             if isinstance(c.value, float) and "USD" in c.number_format]
    assert money
    for cell in money:  # the column is wide enough for the formatted amount: never ###
        width = sheet.column_dimensions[cell.column_letter].width
        assert width >= len(f"USD {cell.value:,.2f}") + 1
    labels = [row[0] for row in values]
    assert "deletable now" in labels and "blocked" in labels


@pytest.fixture(scope="module")
def sample_book(tmp_path_factory):
    """The sample audit against a baseline that lacks its first three findings and holds one
    that is gone since: the workbook as the CLI writes it, and the run it came from."""
    import auditor
    from auditor.report import write_workbook
    folder = tmp_path_factory.mktemp("sample")
    first = auditor.audit("sample", as_of="2026-11-15")
    earlier = first.findings.iloc[3:][["rule_id", "fingerprint"]].to_dict("records")
    earlier.append({"rule_id": "TAG001", "severity": "medium", "title": "Tagged",
                    "resource_name": "img-retired", "message": "img-retired lacks a tag.",
                    "fingerprint": "TAG001:/subscriptions/x/img-retired"})
    baseline = folder / "baseline.json"
    baseline.write_text(json.dumps({"findings": earlier}))
    run = auditor.audit("sample", as_of="2026-11-15", baseline=baseline)
    path = write_workbook(folder / "image-audit.xlsx", run.findings, run.estate.tables,
                          run.context, cost=run.cost, plan=run.plan, usage=run.estate.usage,
                          exemptions=run.exemptions.entries)
    return path, run


def test_summary_of_the_sample_says_coverage_savings_dates_and_changes(sample_book):
    path, run = sample_book
    sheet = load_workbook(path)["Summary"]
    items = summary_items(sheet)
    assert items["coverage"][1].value == "partial"
    assert items["not read"][1].value.startswith("Northwind Contractors: denied (")
    assert items["scope"][1].value == "the bundled sample estate of Northwind Traders (fictional)"
    savings = run.savings
    assert items["monthly savings, deletable now"][2].value == pytest.approx(
        savings["deletable_now"]["monthly_cost"])
    dated = [r for r in sheet.iter_rows() if r[0].is_date and "blocked until" in r[0].number_format]
    assert [r[0].value.date().isoformat() for r in dated] == [
        d["date"] for d in savings["blocked"]["until_date"]]
    assert [r[2].value for r in dated] == pytest.approx(
        [d["monthly_cost"] for d in savings["blocked"]["until_date"]])
    compared = run.context["baseline"]
    assert (compared["new"], compared["resolved"]) == (3, 1)
    assert items["new findings"][1].value == 3 and items["resolved findings"][1].value == 1
    assert items["existing findings"][1].value == compared["existing"]
    assert "img-retired" in [r[0].value for r in sheet.iter_rows()]  # the resolved one, named


def test_cost_summary_lists_savings_item_by_item_with_dates(sample_book):
    path, run = sample_book
    sheet = load_workbook(path)["Cost summary"]
    items = run.plan.savings_items()
    rows = {r[0].value: r for r in sheet.iter_rows() if r[0].value in set(items["label"])}
    assert len(rows) == len(items)
    for item in items.itertuples():
        row = rows[item.label]
        assert row[1].value == pytest.approx(item.monthly_cost)
        if pd.notna(item.deletable_from):
            assert row[4].is_date and row[4].number_format == "yyyy-mm-dd"
            assert row[4].value.date() == item.deletable_from.date()
            assert "end of life" in row[5].value


def test_evidence_json_keeps_slashes_as_they_are(sample_book, tmp_path):
    """Evidence names ids and URLs: "/" stays "/" in findings.csv and the workbook (pandas
    would write "\\/"), and the JSON still parses to the same values."""
    from auditor.report import write_csv
    path, run = sample_book
    with_paths = [t for t in run.findings["evidence"] if "/" in t]
    assert with_paths and not any("\\/" in t for t in run.findings["evidence"])
    assert all(isinstance(json.loads(t), dict) for t in with_paths)
    write_csv(tmp_path / "findings.csv", run.findings)
    text = (tmp_path / "findings.csv").read_text(encoding="utf-8-sig")
    assert "\\/" not in text and "https://" in text


def test_text_past_excel_limit_says_where_the_rest_is(tmp_path):
    from auditor.engine import FINDING_COLUMNS
    finding = dict.fromkeys(FINDING_COLUMNS)
    finding.update(rule_id="TAG001", severity="low", title="t", resource_name="r",
                   message="m" * 40_000, exempted=False, evidence="{}")
    path = tmp_path / "long.xlsx"
    workbook.write_workbook(path, pd.DataFrame([finding]), {}, {"as_of": "2026-11-15"})
    message = column(load_workbook(path)["Findings"], "message")[0].value
    assert len(message) == 32_767
    assert message.endswith("… (truncated, full text in findings.json)")


def _libreoffice():
    import shutil
    return shutil.which("soffice") or shutil.which("libreoffice")


@pytest.mark.skipif(_libreoffice() is None, reason="needs LibreOffice (libreoffice-calc-nogui)")
def test_sample_summary_findings_and_cost_summary_print_on_20_pages_at_most(sample_book,
                                                                              tmp_path):
    """Printed as a person prints them (LibreOffice, the workbook's own print setup), the three
    sheets people read on paper fit in 20 landscape pages."""
    import re
    import subprocess
    path, _ = sample_book
    book = load_workbook(path)
    for name in book.sheetnames:
        if name not in ("Summary", "Findings", "Cost summary"):
            book.remove(book[name])
    book.save(tmp_path / "printed.xlsx")
    subprocess.run([_libreoffice(), "--headless", f"-env:UserInstallation=file://{tmp_path}/lo",
                    "--convert-to", "pdf", "--outdir", str(tmp_path), str(tmp_path / "printed.xlsx")],
                   check=True, capture_output=True, timeout=300)
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", (tmp_path / "printed.pdf").read_bytes()))
    assert 3 <= pages <= 20


def test_machines_say_what_each_reference_resolves_to(book):
    sheet = book["Machines"]
    rows = {r["name"]: r for r in (dict(zip(header(sheet), [c.value for c in row], strict=True))
                                   for row in sheet.iter_rows(min_row=2))}
    assert rows["vm-latest"]["version_from"] == "latest"
    assert rows["vm-latest"]["reference"].endswith(":latest")
    assert rows["vm1"]["version_from"] == "pinned"
    assert rows["vm1"]["resolves_to"] == ("Canonical:0001-com-ubuntu-server-jammy:"
                                          "22_04-lts-gen2:22.04.202410020")
    assert rows["vm-pinned-gallery"]["version_from"] == "pinned"
    assert rows["vm-pinned-gallery"]["resolved_version"] == "1.1.0"
    assert rows["vm-gallery-latest"]["resolved_version"] == "1.1.0"
    assert rows["vm-gallery-latest"]["version_from"] in {"disk", "latest"}


def test_replicas_matrix(book):
    sheet = book["Replicas"]
    rows = {r["version"]: r for r in (dict(zip(header(sheet), [c.value for c in row],
                                               strict=True))
                                      for row in sheet.iter_rows(min_row=2))}
    assert rows["1.1.0"]["westeurope replicas"] == 2
    assert rows["1.1.0"]["westeurope storage"] == "Standard_LRS"
    assert rows["1.1.0"]["eastus storage"] == "Standard_ZRS"
    assert rows["1.1.0"]["westeurope machines"] == 2
    assert rows["1.0.0"]["eastus replicas"] is None  # not a target region of 1.0.0


def test_dates_are_dates(book):
    published = column(book["image_versions"], "published_date")
    assert all(isinstance(c.value, dt.datetime) and c.is_date for c in published)


def test_manifest_sheet(book):
    items = {row[0].value: row[1].value for row in book["Manifest"].iter_rows(min_row=2)}
    assert items["command"].startswith("image-audit")
    assert "rule pack pin.yaml" in items and "table machines sha256" in items


def test_exemptions_sheet_counts_days_left(tmp_path):
    from auditor.engine import FINDING_COLUMNS
    findings = pd.DataFrame(columns=FINDING_COLUMNS).astype({"exempted": bool})
    tables = {"machines": pd.DataFrame(columns=["id", "arm_id", "name", "kind", "location",
                                                "capacity", "power_state", "image_kind",
                                                "image_publisher", "image_offer", "image_sku",
                                                "image_version", "exact_version", "image_id",
                                                "image_definition_id", "running_version_id",
                                                "subscription_id", "resource_group", "tags"]),
              "image_versions": pd.DataFrame(columns=["id", "arm_id", "name", "gallery_id",
                                                      "definition_id"]),
              "version_regions": pd.DataFrame(columns=["version_id", "region",
                                                       "regional_replica_count",
                                                       "storage_account_type"]),
              "scope": pd.DataFrame(columns=["subscription_id", "display_name", "status",
                                             "detail"])}
    entries = [{"rule": "PIN001", "resource": "*/vm-*", "reason": "=1+1",
                "approved_by": "ciso", "expires": dt.date(2026, 12, 15)}]
    path = tmp_path / "book.xlsx"
    workbook.write_workbook(path, findings, tables, {"as_of": "2026-11-15T06:00:00+00:00"},
                            exemptions=entries)
    sheet = load_workbook(path)["Exemptions"]
    row = dict(zip(header(sheet), sheet[2], strict=True))
    assert row["days_left"].value == 30
    assert row["expires"].is_date and row["expires"].number_format == "yyyy-mm-dd"
    assert row["reason"].value == "=1+1" and row["reason"].data_type == "s"


def test_long_table_continues_on_another_sheet(tmp_path, monkeypatch):
    monkeypatch.setattr(workbook, "EXCEL_MAX_ROWS", 5)
    monkeypatch.setattr(workbook, "EXCEL_MAX_LINKS", 3)
    book = Workbook(write_only=True)
    frame = pd.DataFrame({"n": range(10), "resource_id": [f"/subscriptions/s/x{i}"
                                                           for i in range(10)]})
    workbook.write_table(book, "Big", frame, workbook.Styles(links=["resource_id"]))
    book.save(tmp_path / "big.xlsx")
    read = load_workbook(tmp_path / "big.xlsx")
    assert read.sheetnames == ["Big", "Big (2)", "Big (3)"]
    numbers = [c.value for name in read.sheetnames for (c, _) in read[name].iter_rows(min_row=2)]
    assert numbers == list(range(10))
    assert read["Big (3)"]["A1"].value == "n" and read["Big (3)"].freeze_panes == "A2"
    links = [c.hyperlink for (_, c) in read["Big"].iter_rows(min_row=2)]
    assert sum(link is not None for link in links) == 3  # capped per sheet


def test_links_are_percent_encoded_capped_and_cells_show_bidi_escaped(tmp_path):
    """A hostile id never becomes a raw link address (spaces, quotes, line breaks, a
    right-to-left override) or one longer than Excel keeps; the cell shows it escaped."""
    book = Workbook(write_only=True)
    odd = "/subscriptions/s/resourceGroups/rg x/vm'|\u202egpj.exe"
    frame = pd.DataFrame({"resource_id": [odd, "/subscriptions/s/" + "v" * 3000]})
    workbook.write_table(book, "Links", frame, workbook.Styles(links=["resource_id"]))
    book.save(tmp_path / "links.xlsx")
    cells = [c for (c,) in load_workbook(tmp_path / "links.xlsx")["Links"].iter_rows(min_row=2)]
    assert cells[0].value == "/subscriptions/s/resourceGroups/rg x/vm'|\\u202egpj.exe"
    assert cells[0].hyperlink.target == ("https://portal.azure.com/#@/resource/subscriptions/s/"
                                         "resourceGroups/rg%20x/vm%27%7C%5Cu202egpj.exe")
    assert cells[1].hyperlink is None and len(cells[1].value) == 3017


def _typed_frame() -> pd.DataFrame:
    """Every kind of column write_table meets, with the same values repeated down the rows."""
    return pd.DataFrame({
        "text": pd.Series(["plain", "=1+1", "#N/A", "a\x01b", "x" * 40_000, None] * 2,
                          dtype="str"),
        "mixed": [7, "=2+2", {"k": [1]}, pd.Timestamp("2026-01-02 03:04", tz="UTC"), None,
                  2.5] * 2,
        "when": pd.to_datetime(["2026-01-01T06:00:00Z"] * 11 + [None], utc=True),
        "flag": [True, False] * 6,
        "count": pd.array([1, 2, 3, 4, 5, None] * 2, dtype="Int64"),
        "severity": ["high", "low", "high", "=x", None, "info"] * 2,
        "monthly_cost": [1.5, None, 1.5, 2.25, None, 1.5] * 2,
        "resource_id": ["/subscriptions/s/a", "/subscriptions/s/a", "=bad", None, "rel",
                        "/subscriptions/s/b"] * 2})


def _check_typed_sheet(sheet, write_only: bool) -> None:
    rows = [dict(zip(header(sheet), row, strict=True)) for row in sheet.iter_rows(min_row=2)]
    assert len(rows) == 12
    for number, row in enumerate(rows):
        cut = "x" * (32_767 - len(workbook.TRUNCATED.format("the snapshot"))) \
            + workbook.TRUNCATED.format("the snapshot")
        assert row["text"].value == ["plain", "=1+1", "#N/A", "a\\x01b", cut, None][number % 6]
        assert row["mixed"].value == [7, "=2+2", '{"k": [1]}', dt.datetime(2026, 1, 2, 3, 4),
                                      None, 2.5][number % 6]
        assert row["flag"].value is (number % 2 == 0)
        assert row["count"].value == [1, 2, 3, 4, 5, None][number % 6]
        assert row["severity"].value == ["high", "low", "high", "=x", None, "info"][number % 6]
        assert row["monthly_cost"].value == [1.5, None, 1.5, 2.25, None, 1.5][number % 6]
    for row in rows[:11]:
        assert row["when"].is_date and row["when"].value == dt.datetime(2026, 1, 1, 6)
        assert row["when"].number_format == workbook.TIME_FORMAT
    for name in ("text", "mixed", "severity", "resource_id"):
        quoted = [r[name] for r in rows if isinstance(r[name].value, str)
                  and r[name].value.startswith(("=", "#"))]
        assert quoted and all(c.data_type == "s" and c.quotePrefix for c in quoted), name
    high = [r["severity"] for r in rows if r["severity"].value == "high"]
    assert len(high) == 4 and all(c.fill.fgColor.rgb.endswith("D32F2F") for c in high)
    assert {c.coordinate for c in high} == {"F2", "F4", "F8", "F10"}
    costs = [r["monthly_cost"] for r in rows if r["monthly_cost"].value is not None]
    assert len(costs) == 8 and all("USD" in c.number_format for c in costs)
    if not write_only:  # normal mode (bench/bench_report.py's comparison) keeps no links
        return
    links = [r["resource_id"] for r in rows if r["resource_id"].hyperlink is not None]
    assert [c.value for c in links] == ["/subscriptions/s/a", "/subscriptions/s/a",
                                        "/subscriptions/s/b"] * 2
    assert all(c.hyperlink.target.endswith(c.value) for c in links)


@pytest.mark.parametrize("write_only", [True, False])
def test_values_and_styles_of_every_column_kind(tmp_path, monkeypatch, write_only):
    """Values repeated down a column (one shared cell in write-only mode) keep their own row;
    each kind of column reads back as the type, style and text it was written with, also
    across the slices rows are converted in."""
    monkeypatch.setattr(workbook, "ROWS_AT_ONCE", 5)
    book = Workbook(write_only=write_only)
    if not write_only:
        book.remove(book.active)
    workbook.write_table(book, "Typed", _typed_frame(),
                         workbook.Styles(money=["monthly_cost"], links=["resource_id"],
                                         severity="severity"))
    book.save(tmp_path / "typed.xlsx")
    _check_typed_sheet(load_workbook(tmp_path / "typed.xlsx")["Typed"], write_only)


def test_csv_outputs_defuse_formulas(hostile_reports):
    for name in ("findings.csv", "cost.csv", "cost_lines.csv"):
        with open(hostile_reports / name, encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert rows, name
        for row in rows:
            for value in row.values():
                assert not value.startswith(PREFIXES), (name, value)
    with open(hostile_reports / "findings.csv", encoding="utf-8-sig", newline="") as handle:
        names = {r["resource_name"] for r in csv.DictReader(handle)}
    assert "'+cmd" in names and "+cmd" not in names
    with open(hostile_reports / "cost.csv", encoding="utf-8-sig", newline="") as handle:
        keys = {r["key"] for r in csv.DictReader(handle)}
    assert "'@SUM(1)" in keys


def test_json_findings(hostile_reports):
    document = json.loads((hostile_reports / "findings.json").read_text())
    assert document["summary"]["open"] + document["summary"]["exempted"] == len(document["findings"])
    assert document["snapshot_sha256"]
    tag002 = [f for f in document["findings"] if f["rule_id"] == "TAG002"]
    assert {"g2", "+cmd"} <= {f["resource_name"] for f in tag002}
    assert isinstance(tag002[0]["evidence"], dict)
    assert "monthly_cost" in tag002[0]


def test_summary_markdown_is_short_and_inert(hostile_reports):
    text = (hostile_reports / "summary.md").read_text()
    assert text.startswith("## image-audit:") and len(text.splitlines()) < 60
    assert "| PIN001 | low |" in text and "a month" in text  # stand-alone VMs: low
    assert "\\(" in text or "\\[" in text or "HYPERLINK" not in text


def test_existing_report_kept_when_write_fails(tmp_path):
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


def test_benchmark_smoke():
    """The workbook benchmark still runs (at a size that takes a second)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parent.parent / "bench" / "bench_report.py"
    spec = importlib.util.spec_from_file_location("bench_report", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run_one("write-only", findings=100, machines=50)
    assert result["findings"] == 100 and result["seconds"] >= 0 and result["file_mb"] > 0


# --- findings.json written byte for byte as json.dumps would write it ---------------------

TRICKY_TEXTS = ['quote " backslash \\ slash / and \\"both\\"', "\x00\x01\x1f\x7f control",
                "\b\f\n\r\t", "é ü 日本語 \u2028\u2029", "emoji 😀 and 🇪🇺", "", "=1+2",
                "{not: [json], \"x\": 1}", "  spaced  "]


def _evidence_of(rows: list[dict]) -> list[str]:
    """Evidence texts the way auditor.engine makes them."""
    text = pd.DataFrame(rows).to_json(orient="records", lines=True, date_format="iso",
                                      date_unit="s")
    return text.splitlines()


def _tricky_evidence() -> list:
    made = _evidence_of([
        {"text": t, "count": n, "size_gb": g, "seen": s, "tags": tags, "nested": nested,
         "flag": flag, "none": None}
        for t, n, g, s, tags, nested, flag in zip(
            TRICKY_TEXTS, [0, -1, 7, 2**53, 12, 0, 3, 4, 5],
            [127.0, 0.1, 1e-05, 1e20, 123456789.123456789, 0.30000000000000004, float("nan"),
             -2.5, 1e16],
            pd.to_datetime(["2026-04-08T12:00:00Z", None, "2026-01-01", "2026-01-01T23:59:59Z",
                            "2026-02-03", "2026-02-03", None, "2026-02-03", "2026-02-03"],
                           format="ISO8601", utc=True),
            [[], ["a", "b"], [1, [2, {}]], ["/x/y", "é"], [None], [[]], [{"k": []}], ["\\"],
             ["a\"b"]],
            [{}, {"k": {"n": None}}, {"a": {}, "b": [], "c": [{}]}, {"x,y:z{}[]": "]"},
             {"": 1}, {"k\"ey": "v"}, {"emoji😀": "😀"}, {"a": {"b": {"c": [1, 2]}}},
             {"t": True}],
            [True, False, True, False, True, False, True, False, True], strict=True)])
    by_hand = [json.dumps({"spaced": [1, 2], "f": 1.5}),  # whitespace between tokens
               json.dumps({"path": "C:\\dir\\x", "é": "ü😀"}),  # \\ and \uXXXX escapes
               '{"upper":1E5,"neg":-0.5,"big":123456789012345678901234567890}',
               '{"a":"\\u00e9\\/\\u001f\\n"}', '{"t":true,"f":false,"n":null}', "{}", "[1,{}]",
               '"text"', "17"]
    return made + by_hand + ["", None, float("nan")]


def _finding(number: int, **values) -> dict:
    from auditor.engine import FINDING_COLUMNS
    text = TRICKY_TEXTS[number % len(TRICKY_TEXTS)]
    row = {c: f"{c}-{number}" for c in FINDING_COLUMNS}
    row.update(rule_id=f"T{number % 3:03d}", severity=["high", "low"][number % 2],
               resource_name=text, message=f"message {number}: {text}",
               region=None if number % 4 else text, exempted=number % 5 == 0,
               exemption_reason=["reason", None, float("nan"), pd.NA, None][number % 5],
               status=[None, "new", pd.NA][number % 3],
               monthly_cost=[float("nan"), 12.5, 0.1, 1234.5678][number % 4])
    row.update(values)
    return row


def _obvious_json(rows: list[dict], findings: pd.DataFrame, context: dict) -> bytes:
    """findings.json built the slow, obvious way: records as Python values, json.dumps."""
    from auditor.report import summary
    records = []
    for row in rows:
        record = {k: None if v is pd.NA or isinstance(v, float) and v != v else v
                  for k, v in row.items()}
        evidence = row["evidence"]
        record["evidence"] = json.loads(evidence) if isinstance(evidence, str) and evidence \
            else {}
        records.append(record)
    document = {**context, "summary": summary(findings), "findings": records}
    return json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8")


@pytest.fixture(scope="module")
def tricky_findings():
    evidence = _tricky_evidence()
    rows = [_finding(n, evidence=evidence[n % len(evidence)]) for n in range(3 * len(evidence))]
    return rows, pd.DataFrame(rows)


CONTEXT = {"snapshot_sha256": "ab" * 32, "as_of": "2026-11-15T06:00:00+00:00",
           "note": "é \"quoted\""}


@pytest.mark.parametrize("chunk", [1, 7, 20_000])
def test_json_bytes_are_json_dumps_of_the_records(tmp_path, tricky_findings, chunk):
    from auditor.report import write_json
    rows, findings = tricky_findings
    written = write_json(tmp_path / "findings.json", findings, CONTEXT, chunk=chunk)
    assert written.read_bytes() == _obvious_json(rows, findings, CONTEXT)


@pytest.mark.parametrize("text_type", [pd.ArrowDtype(pa.string()), "string[pyarrow]", "str",
                                       pd.ArrowDtype(pa.large_string()), "string[python]"])
def test_json_same_bytes_from_arrow_backed_text(tmp_path, tricky_findings, text_type):
    from auditor.report import write_json
    rows, findings = tricky_findings
    texts = [c for c in findings.columns if c not in ("exempted", "monthly_cost")]
    typed = findings.astype({c: text_type for c in texts})
    written = write_json(tmp_path / "findings.json", typed, CONTEXT, chunk=5)
    assert written.read_bytes() == _obvious_json(rows, findings, CONTEXT)


def test_json_other_column_types_and_constant_columns(tmp_path):
    from auditor.report import write_json
    rows = [{"rule_id": None, "severity": None, "exempted": False, "count": n,
             "seen": pd.Timestamp("2026-01-02T03:04:05Z"), "tags": ["a", n], "cost": None}
            for n in range(3)]
    findings = pd.DataFrame(rows)
    written = write_json(tmp_path / "findings.json", findings, {}, chunk=2)
    document = json.loads(written.read_text(encoding="utf-8"))
    assert document["findings"][2] == {"rule_id": None, "severity": None, "exempted": False,
                                       "count": 2, "seen": "2026-01-02T03:04:05Z",
                                       "tags": ["a", 2], "cost": None}
    expected = [{**r, "seen": "2026-01-02T03:04:05Z"} for r in rows]
    assert written.read_text(encoding="utf-8") == json.dumps(
        {"summary": document["summary"], "findings": expected}, indent=1, ensure_ascii=False)
    evidence = findings.assign(evidence=[{"a": 1}, '{"b":2}', None])  # not text: as before
    written = write_json(tmp_path / "evidence.json", evidence, {})
    assert [f["evidence"] for f in json.loads(written.read_text())["findings"]] == [
        {}, {"b": 2}, {}]
    constant = pd.DataFrame({"rule_id": [None, None], "severity": [None, None],
                             "exempted": [False, False]})
    written = write_json(tmp_path / "constant.json", constant, {})
    assert json.loads(written.read_text())["findings"] == [
        {"rule_id": None, "severity": None, "exempted": False}] * 2


def test_json_evidence_not_json_fails_and_keeps_previous_file(tmp_path, tricky_findings):
    from auditor.report import write_json
    _, findings = tricky_findings
    target = tmp_path / "findings.json"
    target.write_text("previous")
    for broken in ["{oops}", "not json", '{"a":1', '{"a":"b}', '{"a":[1}', '{"a":1]}',
                   '{"a":"x\x01y"}', '{"a":"b"}x']:
        with pytest.raises(json.JSONDecodeError):
            write_json(target, findings.assign(evidence=broken), CONTEXT)
        assert [p.name for p in tmp_path.iterdir()] == ["findings.json"]
        assert target.read_text() == "previous"


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


@st.composite
def evidence_texts(draw):
    """Evidence as auditor.engine writes it (pandas' to_json), or as json.dumps would."""
    value = draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4))
    how = draw(st.sampled_from(["pandas", "compact", "ascii", "spaced", "missing"]))
    if how == "pandas":
        return pd.Series([value]).to_json(orient="values")[1:-1]
    if how == "missing":
        return draw(st.sampled_from([None, ""]))
    return json.dumps(value, ensure_ascii=how == "ascii",
                      separators=None if how == "spaced" else (",", ":"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.text(max_size=20), st.one_of(st.none(), st.text(max_size=8)),
                          evidence_texts()), min_size=1, max_size=12),
       st.integers(1, 5))
def test_json_bytes_for_any_text_and_evidence(tmp_path, values, chunk):
    from auditor.report import write_json
    rows = [_finding(n, message=message, region=region, evidence=evidence)
            for n, (message, region, evidence) in enumerate(values)]
    findings = pd.DataFrame(rows)
    written = write_json(tmp_path / "findings.json", findings, CONTEXT, chunk=chunk)
    assert written.read_bytes() == _obvious_json(rows, findings, CONTEXT)
