"""LIC: licensing."""

from tests.builders import vm

PLAN = {"name": "standard-gen2", "publisher": "microsoftsqlserver", "product": "sql2022-ws2022"}


def test_lic001_triggers_on_plan(run_rule):
    findings = run_rule("LIC001", vm(plan=PLAN))
    assert "microsoftsqlserver/sql2022-ws2022/standard-gen2" in findings.iloc[0]["message"]


def test_lic001_pass_without_plan(run_rule):
    assert run_rule("LIC001", vm()).empty
