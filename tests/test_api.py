"""The Python API: what the command line does, in a few lines of a notebook."""

import pytest

import auditor
from auditor.errors import AuditError
from auditor.importer import sample_snapshot


def test_a_notebook_audit_in_five_lines(tmp_path):
    snapshot = sample_snapshot().write(tmp_path / "snap")
    run = auditor.audit(snapshot, as_of="2026-11-15")
    high = run.findings[(run.findings["severity"] == "high") & ~run.findings["exempted"]]
    assert run.counts["open_by_severity"]["high"] == len(high)
    assert run.context["snapshot"] == str(snapshot)
    assert run.context["as_of"].startswith("2026-11-15")
    assert run.cost.totals().iloc[0]["monthly_cost"] > 0
    assert "monthly_cost" in run.findings.columns


def test_config_as_a_dict_or_a_file_gives_the_same_findings(tmp_path):
    policy = {"rules": {"LEG001": {"severity": "high"}}}
    config = tmp_path / "policy.yaml"
    config.write_text("rules:\n  LEG001:\n    severity: high\n")
    from_dict = auditor.audit("sample", config=policy)
    from_file = auditor.audit("sample", config=config)
    assert from_dict.counts == from_file.counts
    assert from_dict.counts["open_by_severity"]["critical"] == 0
    assert from_file.context["config"]["path"] == str(config)


def test_only_some_rules(tmp_path):
    run = auditor.audit("sample", rule_ids=("RET001", "RET002", "STL001"))
    assert set(run.findings["rule_id"]) <= {"RET001", "RET002", "STL001"}
    assert run.savings == auditor.audit("sample").savings


def test_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(AuditError, match="cannot parse 'soon'"):
        auditor.audit("sample", as_of="soon")
    with pytest.raises(AuditError, match="not-there"):
        auditor.audit(tmp_path / "not-there")
    with pytest.raises(AuditError):
        auditor.audit("sample", config={"rules": {"NOPE999": {"enabled": False}}})
