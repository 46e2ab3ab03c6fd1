"""The history store: runs appended by date, first_seen and age of findings, time to resolve,
cost per month, coverage gaps, bad folders, concurrent appends, and readers (DuckDB, Spark)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import lxml.html
import openpyxl
import pandas as pd
import pytest

import auditor
from auditor import history
from auditor.errors import AuditError
from tests.builders import (
    SUB,
    compliant_estate_resources,
    marketplace,
    one_line,
    run_cli,
    snapshot_of,
    version,
    vm,
)

SUB2 = "99999999-8888-7777-6666-555555555555"
START = datetime(2026, 11, 16, 6, tzinfo=timezone.utc)
DAYS = 30
GAP_DAYS = range(14, 17)  # SUB2 not read: its finding is unknown there, never resolved


def _day_resources(day: int) -> list[dict]:
    """The estate on `day`: a machine that drifts off a pinned image and back (fixed, then
    reopened), versions added every three days (cost grows), each retired after ten days,
    and a machine in a second subscription that a few runs could not read."""
    resources = compliant_estate_resources()
    drifting = "latest" if day < 10 or day >= 20 else "22.04.202410020"
    resources.append(vm("vm-drift", image=marketplace(version=drifting)))
    for k in range(1, 2 + day // 3):
        if day - 3 * k < 10:
            resources.append(version(f"1.0.{k}", regions=(("West Europe", 1, "Standard_LRS"),),
                                     published=f"2026-11-{min(28, 1 + k):02d}T00:00:00Z"))
    if day not in GAP_DAYS:
        other = vm("vm-other", image=marketplace(version="latest"))
        other["id"] = other["id"].replace(SUB, SUB2)
        other["subscriptionId"] = SUB2
        resources.append(other)
    return resources


def _scope(day: int) -> list[dict]:
    status = "denied" if day in GAP_DAYS else "ok"
    return [{"subscription_id": SUB, "display_name": "main", "status": "ok", "detail": ""},
            {"subscription_id": SUB2, "display_name": "other", "status": status, "detail": ""}]


@pytest.fixture(scope="module")
def thirty_days(tmp_path_factory):
    """Thirty daily audits appended to one history, with what each run saw."""
    folder = tmp_path_factory.mktemp("history") / "hist"
    runs = []
    for day in range(DAYS):
        when = START + timedelta(days=day)
        snapshot = snapshot_of(*_day_resources(day), scope=_scope(day))
        runs.append(auditor.audit(snapshot, as_of=when, history=folder))
    return folder, runs


def _expected(runs, upto: int):
    """Spells of every fingerprint, computed the plain way: day by day, a finding absent in a
    run that read its subscription is resolved there; absent where it was not read, unknown."""
    spells: dict[str, list[list]] = {}
    rule_of = {}
    for day, run in enumerate(runs[:upto + 1]):
        present = set(run.findings["fingerprint"].str.lower())
        for fingerprint in present:
            rule_of[fingerprint] = fingerprint.split(":")[0].upper()
            own = spells.setdefault(fingerprint, [])
            if not own or own[-1][1] is not None:
                own.append([day, None])
        for fingerprint, own in spells.items():
            blind = day in GAP_DAYS and SUB2 in fingerprint
            if fingerprint not in present and own[-1][1] is None and not blind:
                own[-1][1] = day
    return spells, rule_of


def test_thirty_daily_runs_give_first_seen_age_resolve_times_and_monthly_cost(thirty_days):
    folder, runs = thirty_days
    for day, run in enumerate(runs):  # each run's annotations, from the runs up to it
        spells, _ = _expected(runs, day)
        got = run.findings.set_index(run.findings["fingerprint"].str.lower())
        for fingerprint, row in got.iterrows():
            own = spells[fingerprint]
            first = START + timedelta(days=own[0][0])
            assert row["first_seen"] == first.isoformat(), (day, fingerprint)
            assert row["age_days"] == day - own[0][0]
            assert row["reopened"] == len(own) - 1
            last = (START + timedelta(days=own[-1][0])).isoformat() if len(own) > 1 else None
            assert row["last_reopened"] == last
    spells, rule_of = _expected(runs, DAYS - 1)
    drift = next(f for f in spells if "vm-drift" in f)
    assert spells[drift] == [[0, 10], [20, None]]  # fixed on day 10, back on day 20
    other = next(f for f in spells if "vm-other" in f)
    assert spells[other] == [[0, None]]  # unread for three days, never resolved
    loaded = history.load(folder)
    assert len(loaded.runs) == DAYS
    per_rule = history.by_rule(loaded).set_index("rule_id")
    durations: dict[str, list[int]] = {}
    for fingerprint, own in spells.items():
        durations.setdefault(rule_of[fingerprint], []).extend(e - s for s, e in own if e is not None)
    resolved_rules = {rule for rule, days in durations.items() if days}
    assert len(resolved_rules) >= 2
    for rule, days in durations.items():
        assert per_rule.at[rule, "resolved"] == len(days)
        if days:
            assert per_rule.at[rule, "mean_days_to_resolve"] == pytest.approx(sum(days) / len(days))
    assert per_rule.at["PIN001", "reopened"] == 1
    costs = pd.DataFrame({"month": [(START + timedelta(days=d)).strftime("%Y-%m") for d in range(DAYS)],
                          "cost": [r.cost.totals().iloc[0]["monthly_cost"] for r in runs]})
    expected = costs.groupby("month")["cost"].mean()
    assert expected.nunique() == 2  # the cost changed from one month to the next
    got = history.monthly(loaded).set_index("month")
    assert list(got.index) == ["2026-11", "2026-12"]
    assert got["runs"].tolist() == [15, 15]
    assert got["monthly_cost"].to_numpy() == pytest.approx(expected.to_numpy())
    on_gap = loaded.runs.iloc[GAP_DAYS[0]]
    assert on_gap["coverage_state"] == "partial" and on_gap["scopes_not_read"] == 1


def test_runs_added_out_of_order_give_the_same_history(thirty_days, tmp_path):
    folder, runs = thirty_days
    shuffled = tmp_path / "shuffled"
    order = [29, 3, 17, 0, 25, 10, 14, 1, 20, 2] + [d for d in range(DAYS) if d not in
                                                     (29, 3, 17, 0, 25, 10, 14, 1, 20, 2)]
    for day in order:
        run = runs[day]
        assert history.record(shuffled, run.findings, run.context)
    in_order, out_of_order = history.load(folder), history.load(shuffled)
    assert list(out_of_order.runs["run_id"]) == list(in_order.runs["run_id"])
    key = ["fingerprint", "start"]
    pd.testing.assert_frame_equal(
        in_order.episodes.sort_values(key, ignore_index=True),
        out_of_order.episodes.sort_values(key, ignore_index=True))
    last = history.annotate(out_of_order, runs[-1].findings.drop(
        columns=["first_seen", "age_days", "reopened", "last_reopened"]), runs[-1].context)
    pd.testing.assert_frame_equal(last, runs[-1].findings)


def test_the_same_run_twice_changes_nothing(thirty_days, tmp_path):
    _, runs = thirty_days
    folder = tmp_path / "h"
    assert history.record(folder, runs[0].findings, runs[0].context)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert not history.record(folder, runs[0].findings, runs[0].context)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert [p.parent.name for p in folder.glob("runs/*/*.parquet")] == ["run_date=2026-11-16"]


def _findings(*fingerprints: str, sub: str = SUB) -> pd.DataFrame:
    """Findings as the engine makes them, for the columns a history keeps."""
    return pd.DataFrame({
        "rule_id": [f.split(":")[0] for f in fingerprints], "severity": "high",
        "resource_type": "Microsoft.Compute/virtualMachines",
        "resource_id": [f.split(":", 1)[1] for f in fingerprints],
        "resource_name": [f.rsplit("/", 1)[-1] for f in fingerprints],
        "subscription_id": sub, "region": None, "exempted": False,
        "fingerprint": list(fingerprints), "monthly_cost": 1.5})


def _context(day: int, not_read: tuple[str, ...] = (), fingerprint_version: int = 1) -> dict:
    when = START + timedelta(days=day)
    return {"snapshot_sha256": f"{day:064x}", "as_of": when.isoformat(),
            "collected_at": when.isoformat(), "fingerprint_version": fingerprint_version,
            "coverage": {"state": "partial" if not_read else "complete",
                         "not_read": [{"scope": s, "name": "", "status": "denied", "detail": ""}
                                      for s in not_read], "gaps": []}}


VM_A = f"PIN001:/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.compute/virtualmachines/a"


def test_a_coverage_gap_is_unknown_and_resolution_waits_for_a_run_that_could_see(tmp_path):
    folder = tmp_path / "h"
    history.record(folder, _findings(VM_A), _context(0))
    history.record(folder, _findings(), _context(1, not_read=(SUB,)))  # unknown there
    history.record(folder, _findings(VM_A), _context(2))  # the same spell, not reopened
    history.record(folder, _findings(), _context(3, not_read=(SUB,)))
    history.record(folder, _findings(), _context(5))  # resolved here: 5 days after day 0
    spells = history.load(folder).episodes
    assert len(spells) == 1
    assert spells.iloc[0]["days_to_resolve"] == 5
    assert spells.iloc[0]["end"] == START + timedelta(days=5)
    gap = {"table": "machines", "scope": "managementGroups", "ids": ["mg1"], "status": "failed"}
    assert history.unknown_scopes({"state": "partial", "not_read": [],
                                   "gaps": [json.dumps(gap)]})[0]["subscription_id"] == "*"


def test_a_new_fingerprint_scheme_starts_a_new_series(tmp_path, capsys):
    folder = tmp_path / "h"
    history.record(folder, _findings(VM_A), _context(0))
    history.record(folder, _findings(VM_A), _context(1))
    history.record(folder, _findings(VM_A), _context(4, fingerprint_version=2))
    loaded = history.load(folder)
    later = history.annotate(loaded, _findings(VM_A), _context(4, fingerprint_version=2))
    assert later.iloc[0]["first_seen"] == (START + timedelta(days=4)).isoformat()
    assert later.iloc[0]["age_days"] == 0
    earlier = history.annotate(loaded, _findings(VM_A), _context(1))
    assert earlier.iloc[0]["age_days"] == 1
    assert history.series_notes(loaded) == [
        "fingerprint scheme version 2 from 2026-11-20: a new series starts (findings before it "
        "are not matched with those after)"]
    assert loaded.episodes["end"].isna().all()  # the old series' finding is not "resolved"
    code, out, _ = run_cli(capsys, "history", "show", str(folder))
    assert code == 0 and "a new series starts" in out


def test_a_foreign_or_corrupt_file_is_refused_naming_it(tmp_path, capsys):
    folder = tmp_path / "h"
    history.record(folder, _findings(VM_A), _context(0))
    stray = folder / "findings" / "run_date=2026-11-16" / "notes.txt"
    stray.write_text("mine")
    code, _, err = run_cli(capsys, "history", "show", str(folder))
    assert code == 2
    one_line(err, str(stray), "not part of an image-audit history")
    stray.unlink()
    runs_file = next(folder.glob("runs/*/*.parquet"))
    runs_file.write_bytes(b"PAR1 not really parquet")
    code, _, err = run_cli(capsys, "history", "show", str(folder))
    assert code == 2
    one_line(err, str(runs_file), "corrupt history file")
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("a,b\n")
    with pytest.raises(AuditError, match="not an image-audit history"):
        auditor.audit("sample", history=other)
    assert sorted(p.name for p in other.iterdir()) == ["data.csv"]


CHILD = """
import sys
from tests.test_history import _context, _findings, VM_A
from auditor import history
for day in map(int, sys.argv[2:]):
    history.record(sys.argv[1], _findings(VM_A) if day % 2 else _findings(), _context(day))
"""


def test_two_processes_appending_at_once_lose_and_duplicate_nothing(tmp_path):
    folder = tmp_path / "h"
    root = Path(__file__).resolve().parent.parent
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(folder), *days], cwd=root)
                for days in (["0", "2", "4", "6", "8", "9"], ["1", "3", "5", "7", "9"])]
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    together = history.load(folder)
    assert len(together.runs) == 10 and together.runs["run_id"].is_unique
    alone = tmp_path / "alone"
    for day in range(10):
        history.record(alone, _findings(VM_A) if day % 2 else _findings(), _context(day))
    pd.testing.assert_frame_equal(together.episodes, history.load(alone).episodes)
    assert len(together.episodes) == 5  # open on each odd day, resolved on the next
    assert not (folder / history.LOCK).exists()


def test_history_add_takes_cost_from_the_cost_csv_beside_findings_json(tmp_path, capsys):
    reports = tmp_path / "reports"
    code, _, _ = run_cli(capsys, "audit", "--sample", "-o", str(reports), "--format", "json",
                         "--format", "cost")
    assert code == 0
    folder = tmp_path / "h"
    code, out, _ = run_cli(capsys, "history", "add", str(reports / "findings.json"),
                           "--history", str(folder))
    assert code == 0 and "added as run-20261115T060000Z-" in out
    code, out, _ = run_cli(capsys, "history", "add", str(reports / "findings.json"),
                           "--history", str(folder))
    assert "already there" in out
    loaded = history.load(folder)
    run = auditor.audit("sample")
    assert loaded.runs.iloc[0]["monthly_cost"] == pytest.approx(
        run.cost.totals().iloc[0]["monthly_cost"])
    assert loaded.runs.iloc[0]["open"] == run.counts["open"]
    assert loaded.runs.iloc[0]["savings_deletable_now"] == run.savings["deletable_now"]["monthly_cost"]
    (reports / "cost.csv").unlink()
    elsewhere = tmp_path / "h2"
    history.add_findings_file(elsewhere, reports / "findings.json")
    assert pd.isna(history.load(elsewhere).runs.iloc[0]["monthly_cost"])


def test_audit_with_history_writes_age_into_every_report(tmp_path, capsys):
    folder, reports = tmp_path / "h", tmp_path / "reports"
    for as_of in ("2026-11-15T06:00:00Z", "2026-12-20T06:00:00Z"):
        code, out, _ = run_cli(capsys, "audit", "--sample", "-o", str(reports), "--as-of", as_of,
                               "--history", str(folder))
        assert code == 0 and "history" in out
    document = json.loads((reports / "findings.json").read_text())
    ages = {f["age_days"] for f in document["findings"]}
    assert ages >= {0, 35} and document["trend"]["runs"][-1]["open"] == document["summary"]["open"]
    csv = pd.read_csv(reports / "findings.csv", encoding="utf-8-sig")
    assert {"first_seen", "age_days", "reopened", "last_reopened"} <= set(csv.columns)
    sarif = json.loads((reports / "findings.sarif").read_text())
    assert {r["properties"]["age_days"] for r in sarif["runs"][0]["results"]} == ages
    book = openpyxl.load_workbook(reports / "image-audit.xlsx")
    trend = book["Trend"]
    assert [c.value for c in trend[1]][:2] == ["as_of", "open"]
    assert [trend.cell(row, 1).value for row in (2, 3)] == ["2026-11-15", "2026-12-20"]
    assert trend._charts and trend._charts[0].tagname == "lineChart"
    assert {"Trend by rule", "Trend by month"} <= set(book.sheetnames)
    findings_sheet = book["Findings"]
    assert "age_days" in [c.value for c in findings_sheet[1]]
    summary = (reports / "summary.md").read_text()
    assert "Trend over 2 run(s) since 2026-11-15" in summary
    page = lxml.html.fromstring((reports / "report.html").read_text(encoding="utf-8"))
    rows = page.xpath('//table[@id="trend-table"]/tr')[1:]
    cells = [[c.text_content() for c in row] for row in rows]
    assert [row[0] for row in cells] == ["2026-11-15", "2026-12-20"]
    assert [int(row[1]) for row in cells] == [int(r["open"]) for r in document["trend"]["runs"]]
    assert int(cells[-1][1]) == document["summary"]["open"]  # the last row is this run
    high = page.xpath('//table[@id="trend-table"]/tr[1]/th').index(
        page.xpath('//table[@id="trend-table"]/tr[1]/th[text()="high"]')[0])
    assert int(cells[-1][high]) == document["summary"]["open_by_severity"].get("high", 0)
    code, out, _ = run_cli(capsys, "history", "show", str(folder), "--since", "2026-12-01")
    assert code == 0 and "(last 1 of 1 runs)" in out and "2026-12" in out


def test_duckdb_reads_the_history_as_the_readme_says(thirty_days):
    duckdb = pytest.importorskip("duckdb")
    folder, runs = thirty_days
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    query = readme.split("```sql\n", 1)[1].split("```", 1)[0]
    assert "'history/findings/*/*.parquet'" in query
    rows = duckdb.sql(query.replace("'history/", f"'{folder}/")).fetchall()
    assert str(rows[0][0]) == "2026-11-16"
    per_day = {}
    for run_date, _, count in rows:
        per_day[str(run_date)] = per_day.get(str(run_date), 0) + count
    assert list(per_day.values()) == [r.counts["open"] for r in runs]


def test_spark_reads_the_history_unchanged(thirty_days):
    if shutil.which("java") is None and not os.environ.get("CI"):
        pytest.skip("no Java runtime (CI installs default-jre-headless)")
    pyspark_sql = pytest.importorskip("pyspark.sql")
    folder, runs = thirty_days
    spark = (pyspark_sql.SparkSession.builder.master("local[1]").appName("history")
             .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
             .getOrCreate())
    try:
        findings = spark.read.parquet(str(folder / "findings"))
        findings.createOrReplaceTempView("findings")
        rows = spark.sql("SELECT run_date, rule_id, count(*) AS open FROM findings "
                         "WHERE NOT exempted GROUP BY run_date, rule_id "
                         "ORDER BY run_date, rule_id").collect()
        types = dict(findings.dtypes)
        first_run = spark.read.parquet(str(folder / "runs")).orderBy("as_of").first()
    finally:
        spark.stop()
    assert types["as_of"] == "timestamp" and types["run_date"] == "date"
    assert str(rows[0]["run_date"]) == "2026-11-16"
    assert sum(r["open"] for r in rows) == sum(r.counts["open"] for r in runs)
    assert first_run["as_of"].replace(tzinfo=timezone.utc) == START


def test_a_run_without_findings_is_recorded_and_shown(tmp_path, capsys):
    folder = tmp_path / "h"
    scope = [{"subscription_id": SUB, "display_name": "main", "status": "ok", "detail": ""}]
    run = auditor.audit(snapshot_of(*compliant_estate_resources(), scope=scope), history=folder)
    assert run.findings.empty and "age_days" in run.findings.columns
    assert run.context["trend"]["runs"][0]["open"] == 0
    code, out, _ = run_cli(capsys, "history", "show", str(folder))
    assert code == 0 and "complete" in out
