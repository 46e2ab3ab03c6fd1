"""One truth in every output: the counts and the savings of one run, read back from each
output a person or a pipeline reads, are the same numbers, and the same as the Python API's.

The sample estate has exempted findings, a subscription that was denied and versions held by
their end-of-life lock, so each convention is exercised: exempted findings are counted apart,
coverage says partial, and savings split into deletable now and blocked.
"""

import json
import re

import pandas as pd
import pytest
from openpyxl import load_workbook

import auditor
from auditor.engine import SEVERITIES
from tests.builders import run_cli

AS_OF = "2026-11-15"


@pytest.fixture(scope="module")
def run():
    return auditor.audit("sample", as_of=AS_OF)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """One audit, its cost and its cleanup plan, each from the command line, with what each
    printed."""
    from click.testing import CliRunner

    from auditor.cli import cli
    folder = tmp_path_factory.mktemp("truth")
    runner = CliRunner()
    printed = {}
    for name, args in {"audit": ["audit", "--sample", "-o", str(folder / "audit"), "--as-of", AS_OF],
                       "cost": ["cost", "--sample", "-o", str(folder / "cost"), "--as-of", AS_OF],
                       "plan": ["cleanup-plan", "--sample", "-o", str(folder / "plan.sh"),
                                "--as-of", AS_OF]}.items():
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        printed[name] = result.output
    return folder, printed


def test_counts_agree_in_every_output(run, outputs):
    folder, printed = outputs
    counts = run.counts
    assert counts["exempted"] > 0 and counts["open"] > 0
    assert counts["open"] == sum(counts["open_by_severity"].values())
    assert counts["open"] == sum(counts["open_by_rule"].values())
    assert list(counts["open_by_severity"]) == list(reversed(SEVERITIES))

    # terminal: "N open findings (critical a, high b, ...); E exempted"
    first = printed["audit"].splitlines()[0]
    assert first.startswith(f"{counts['open']} open findings (")
    assert first.endswith(f"; {counts['exempted']} exempted")
    shown = dict(re.findall(r"(\w+) (\d+)", first[first.index("(") + 1:first.index(")")]))
    assert {k: int(v) for k, v in shown.items()} == {
        k: v for k, v in counts["open_by_severity"].items() if v}

    # findings.json
    document = json.loads((folder / "audit" / "findings.json").read_text())
    assert document["summary"] == counts
    listed = pd.DataFrame(document["findings"])
    assert len(listed) == counts["open"] + counts["exempted"]
    assert int(listed["exempted"].sum()) == counts["exempted"]

    # findings.csv lists the same rows
    rows = pd.read_csv(folder / "audit" / "findings.csv", encoding="utf-8-sig")
    assert len(rows) == len(listed) and int(rows["exempted"].sum()) == counts["exempted"]

    # summary.md: heading and the severity table
    text = (folder / "audit" / "summary.md").read_text()
    assert text.startswith(f"## image-audit: {counts['open']} open findings, "
                           f"{counts['exempted']} exempted")
    table = dict(re.findall(r"^\| (\w+) \| (\d+) \|$", text, re.M))
    assert {k: int(v) for k, v in table.items()} == {
        k: v for k, v in counts["open_by_severity"].items() if v}
    by_rule = {m[0]: int(m[1]) for m in re.findall(r"^\| ([A-Z]{3}\d{3}) \|.*\| (\d+) \|$",
                                                     text, re.M)}
    assert by_rule == counts["open_by_rule"]

    # the workbook's Summary sheet
    sheet = load_workbook(folder / "audit" / "image-audit.xlsx", read_only=True)["Summary"]
    cells = [[c for c in row] for row in sheet.iter_rows(values_only=True)]
    items = {row[0]: row for row in cells if row and row[0]}
    assert items["open findings"][1] == counts["open"]
    assert items["exempted findings (not counted as open)"][1] == counts["exempted"]
    severity_rows = {row[0]: row[1] for row in cells if row and row[0] in SEVERITIES}
    assert severity_rows == counts["open_by_severity"]

    # JUnit (no --fail-on: every open finding fails, every exempted one is skipped)
    from junitparser import Failure, JUnitXml, Skipped
    cases = [case for suite in JUnitXml.fromfile(str(folder / "audit" / "findings.junit.xml"))
             for case in suite]
    results = [type(r) for case in cases for r in case.result]
    assert results.count(Failure) == counts["open"]
    assert results.count(Skipped) == counts["exempted"]

    # SARIF: a result per finding (under GitHub's cap), exempted ones suppressed
    sarif = json.loads((folder / "audit" / "findings.sarif").read_text())["runs"][0]["results"]
    assert len(sarif) == counts["open"] + counts["exempted"]
    assert sum(bool(r.get("suppressions")) for r in sarif) == counts["exempted"]

    # report.html: the tiles a person reads
    import lxml.html
    page = lxml.html.fromstring((folder / "audit" / "report.html").read_bytes())
    assert int(page.get_element_by_id("open-total").text_content()) == counts["open"]
    assert int(page.get_element_by_id("exempted-total").text_content()) == counts["exempted"]
    tiles = {t.get("data-severity"): int(t.find_class("count")[0].text_content())
             for t in page.xpath("//div[@data-severity]")}
    assert tiles == counts["open_by_severity"]


def test_savings_agree_in_every_output(run, outputs):
    folder, printed = outputs
    savings = run.savings
    now, held = savings["deletable_now"], savings["blocked"]
    assert now["monthly_cost"] > 0 and held["monthly_cost"] > 0 and held["until_date"]
    # what the plan deletes, item by item
    assert now["monthly_cost"] == pytest.approx(run.plan.deletions["monthly_cost"].sum())

    # the cleanup script's header, from the cleanup-plan command
    script = (folder / "plan.sh").read_text()
    assert f"saves about {now['monthly_cost']:,.2f} USD per month" in script
    assert f"{now['resources']} deletion(s)" in script

    # cost.csv of `audit` and of `cost` (same options, same figures, row for row)
    pd.testing.assert_frame_equal(
        pd.read_csv(folder / "audit" / "cost.csv", encoding="utf-8-sig"),
        pd.read_csv(folder / "cost" / "cost.csv", encoding="utf-8-sig"))
    for csv in (folder / "audit" / "cost.csv", folder / "cost" / "cost.csv"):
        totals = pd.read_csv(csv, encoding="utf-8-sig")
        saved = totals[totals["section"] == "savings"].set_index("key")["monthly_cost"]
        assert saved["deletable now"] == pytest.approx(now["monthly_cost"])
        assert saved["blocked"] == pytest.approx(held["monthly_cost"])
        for step in held["until_date"]:
            assert saved[f"blocked until {step['date']}"] == pytest.approx(step["monthly_cost"])
    assert f"deletable now {now['monthly_cost']:>40,.2f}".split()[-1] in printed["cost"]

    # findings.json carries the split; summary.md says it
    document = json.loads((folder / "audit" / "findings.json").read_text())
    assert document["savings"] == json.loads(json.dumps(savings))
    text = (folder / "audit" / "summary.md").read_text()
    assert f"deletable now {now['monthly_cost']:,.2f} USD a month" in text
    assert f"blocked {held['monthly_cost']:,.2f} USD a month" in text
    page = (folder / "audit" / "report.html").read_text()
    assert f">{now['monthly_cost']:,.2f} USD<" in page

    # the workbook's Summary sheet
    sheet = load_workbook(folder / "audit" / "image-audit.xlsx", read_only=True)["Summary"]
    items = {row[0]: row for row in sheet.iter_rows(values_only=True) if row and row[0]}
    assert items["monthly savings, deletable now"][2] == pytest.approx(now["monthly_cost"])
    assert items["monthly savings, blocked"][2] == pytest.approx(held["monthly_cost"])


def test_blocked_savings_become_deletable_as_their_date_passes():
    before = auditor.audit("sample", as_of=AS_OF).savings
    step = before["blocked"]["until_date"][0]
    after = auditor.audit("sample", as_of=step["date"] + "T12:00:00Z").savings
    assert after["deletable_now"]["monthly_cost"] >= (
        before["deletable_now"]["monthly_cost"] + step["monthly_cost"] - 1e-9)
    assert step["date"] not in [d["date"] for d in after["blocked"]["until_date"]]


def test_coverage_is_stated_the_same_everywhere(run, outputs):
    folder, _ = outputs
    coverage = run.context["coverage"]
    assert coverage["state"] == "partial"
    assert [item["status"] for item in coverage["not_read"]] == ["denied"]
    document = json.loads((folder / "audit" / "findings.json").read_text())
    assert document["coverage"] == coverage
    assert "Coverage: partial; not read: Northwind Contractors (denied)." in \
        (folder / "audit" / "summary.md").read_text()
    sheet = load_workbook(folder / "audit" / "image-audit.xlsx", read_only=True)["Summary"]
    items = {row[0]: row for row in sheet.iter_rows(values_only=True) if row and row[0]}
    assert items["coverage"][1] == "partial"
    assert "Northwind Contractors: denied" in items["not read"][1]


def test_cost_takes_the_audit_options(tmp_path, capsys):
    exemptions = tmp_path / "none.yaml"
    exemptions.write_text("exemptions: []\n")
    code, out, err = run_cli(capsys, "cost", "--sample", "-o", str(tmp_path / "c"),
                             "--exemptions", str(exemptions), "--as-of", "2027-06-01")
    assert code == 0, err
    later = auditor.audit("sample", exemptions=exemptions, as_of="2027-06-01").savings
    totals = pd.read_csv(tmp_path / "c" / "cost.csv", encoding="utf-8-sig")
    saved = totals[totals["section"] == "savings"].set_index("key")["monthly_cost"]
    assert saved["deletable now"] == pytest.approx(later["deletable_now"]["monthly_cost"])
    code, _, err = run_cli(capsys, "cost", "--sample", "-o", str(tmp_path / "d"),
                           "--as-of", "not a date")
    assert code == 2 and "--as-of: cannot parse 'not a date'" in err
