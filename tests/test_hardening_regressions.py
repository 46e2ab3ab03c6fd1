"""Replays every input under tests/regressions/ (crashes found by tools/fuzz_import.py and by
hand) through the import path: each must give a snapshot whose audit and reports succeed, or
one AuditError line. A new crash found by fuzzing becomes a file here."""

from pathlib import Path

import pytest

from auditor.cleanup import cleanup_plan
from auditor.cost import estimate
from auditor.engine import evaluate, load_rules
from auditor.errors import AuditError
from auditor.estate import Estate
from auditor.importer import import_files
from auditor.prices import load_prices
from auditor.report import write_reports

CASES = sorted(p for p in (Path(__file__).parent / "regressions").iterdir()
               if p.is_file() and not p.name.startswith("."))


def test_there_are_regression_cases():
    assert len(CASES) >= 2


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_regression_case_imports_audits_and_reports(path, tmp_path):
    try:
        snapshot = import_files([path])
    except AuditError as exc:
        assert "\n" not in str(exc) and path.name in str(exc)
        return
    estate = Estate(snapshot)
    rules = [rule for rule in load_rules() if rule.enabled]
    findings = evaluate(estate, rules)
    cost = estimate(estate, load_prices())
    written = write_reports(tmp_path, findings, estate.tables, {"tool_version": "test"},
                            ["json", "csv", "xlsx", "sarif", "junit", "md", "cost"], rules=rules,
                            cost=cost, usage=estate.usage)
    assert all(p.stat().st_size > 0 for p in written)
    cleanup_plan(findings, estate, monthly_cost=cost.resource_costs).script(
        {"tool_version": "test", "snapshot": path.name, "snapshot_sha256": "", "as_of": ""})


def test_far_future_date_parses_the_same_beside_a_7_digit_fraction():
    """pandas parsed a batch holding a 7-digit fraction in nanoseconds, so a 9999 date in the
    same column became missing; alone, it was kept. The normaliser now reads both one way."""
    path = Path(__file__).parent / "regressions" / "far-future-date-beside-7-digit-fraction.json"
    versions = import_files([path]).tables["image_versions"].set_index("name")
    assert versions.loc["1.0.0", "end_of_life_date"].year == 2262
    assert str(versions.loc["1.0.1", "published_date"]) == "2026-11-01 00:00:00.123456+00:00"


def test_fuzz_harness_smoke(tmp_path):
    """A tiny run of tools/fuzz_import.py's generator and runner (the real pass is manual)."""
    from hypothesis import HealthCheck, given, settings

    from tools.fuzz_import import input_file, run_one

    seen = []

    @settings(max_examples=5, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(input_file())
    def check(case):
        name, data = case
        assert name.startswith("fuzz.json")
        seen.append(name)
        run_one(name, data, tmp_path)
    check()
    assert len(seen) >= 5
