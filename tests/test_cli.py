"""The command line end to end: exit codes, one-line errors, files written."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from auditor.cli import main
from tests.builders import compliant_estate_resources, marketplace, vm


def run(*args, capsys=None):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr() if capsys else None
    return info.value.code, out


def test_audit_sample_writes_reports(tmp_path, capsys):
    code, out = run("audit", "--sample", "-o", str(tmp_path), capsys=capsys)
    assert code == 0
    assert {p.name for p in tmp_path.iterdir()} == {
        "findings.json", "findings.csv", "image-audit.xlsx", "findings.sarif",
        "findings.junit.xml", "report.html", "summary.md", "cost.csv", "cost_lines.csv",
        "run.json"}
    assert "PIN001" in out.out and f"wrote {tmp_path / 'findings.json'}" in out.out


def test_fail_on(tmp_path, capsys):
    assert run("audit", "--sample", "-o", str(tmp_path), "--fail-on", "high",
               capsys=capsys)[0] == 1
    # The sample's only critical findings are LEG001's (machines on unmanaged disks).
    assert run("audit", "--sample", "-o", str(tmp_path), "--fail-on", "critical",
               capsys=capsys)[0] == 1
    config = tmp_path / "no-critical.yaml"
    config.write_text("rules:\n  LEG001:\n    severity: high\n")
    assert run("audit", "--sample", "-o", str(tmp_path), "--fail-on", "critical",
               "--config", str(config), capsys=capsys)[0] == 0


def test_import_then_audit(tmp_path, capsys):
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(compliant_estate_resources() + [vm("x", image=marketplace("latest"))]))
    code, out = run("import", str(raw), "-o", str(tmp_path / "snap"),
                    "--collected-at", "2026-11-15", capsys=capsys)
    assert code == 0 and "machines 2" in out.out
    code, _ = run("audit", str(tmp_path / "snap"), "-o", str(tmp_path / "out"),
                  "--format", "json", "--fail-on", "low", capsys=capsys)
    assert code == 1
    findings = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert [f["rule_id"] for f in findings["findings"]] == ["PIN001"]
    assert findings["as_of"].startswith("2026-11-15")


def test_corrupt_snapshot_is_exit_2_one_line(tmp_path, capsys):
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(compliant_estate_resources()))
    run("import", str(raw), "-o", str(tmp_path / "snap"), capsys=capsys)
    (tmp_path / "snap" / "machines.parquet").write_bytes(b"garbage")
    code, out = run("audit", str(tmp_path / "snap"), "-o", str(tmp_path / "out"), capsys=capsys)
    assert code == 2
    assert out.err.count("\n") == 1 and "SHA-256 does not match" in out.err
    assert "Traceback" not in out.err
    assert not (tmp_path / "out").exists()


def test_the_config_and_exemptions_read_are_recorded_as_evidence(tmp_path, capsys, monkeypatch):
    """A config found in the working directory changes findings: the run says so, and the
    reports record which files shaped them (path and SHA-256)."""
    import hashlib

    from openpyxl import load_workbook
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "image-audit.yaml"
    config.write_text("rules:\n  PIN002:\n    enabled: false\n")
    code, out = run("audit", "--sample", "-o", str(tmp_path / "r"), capsys=capsys)
    digest = hashlib.sha256(config.read_bytes()).hexdigest()
    assert code == 0 and f"using config image-audit.yaml (sha256 {digest[:12]})" in out.err
    context = json.loads((tmp_path / "r" / "findings.json").read_text())
    assert context["config"] == {"path": "image-audit.yaml", "sha256": digest}
    assert len(context["exemptions_sha256"]) == 64
    manifest = dict(load_workbook(tmp_path / "r" / "image-audit.xlsx")["Manifest"].iter_rows(
        min_row=2, values_only=True))
    assert manifest["config"] == "image-audit.yaml" and manifest["config sha256"] == digest


def test_bad_config_is_exit_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("rules:\n  PIN001: {enabled: maybe}\n")
    code, out = run("audit", "--sample", "--config", str(config), "-o", str(tmp_path),
                    capsys=capsys)
    assert code == 2 and "rules.PIN001.enabled: expected true or false, got 'maybe'" in out.err


def test_bad_as_of(tmp_path, capsys):
    code, out = run("audit", "--sample", "--as-of", "yesterday-ish", "-o", str(tmp_path),
                    capsys=capsys)
    assert code == 2 and "--as-of" in out.err


def test_usage_errors_exit_2(capsys):
    assert run("audit", capsys=capsys)[0] == 2
    assert run("audit", "--fail-on", "severe", "--sample", capsys=capsys)[0] == 2


def test_debug_shows_traceback(tmp_path, capsys):
    code, out = run("--debug", "audit", str(tmp_path), capsys=capsys)
    assert code == 2 and "Traceback" in out.err


def test_rules_list_and_show(capsys):
    code, out = run("rules", "list", capsys=capsys)
    assert code == 0 and "PIN001  high" in out.out
    code, out = run("rules", "show", "tag001", capsys=capsys)
    assert code == 0 and "required_tags" in out.out and "References:" in out.out
    code, out = run("rules", "show", "NOPE999", capsys=capsys)
    assert code == 2 and "unknown rule id 'NOPE999'" in out.err


def test_installed_console_script_works_from_any_directory(tmp_path):
    """The installed package carries the rule pack and the sample (not only the checkout)."""
    exe = shutil.which("image-audit")
    if exe is None:
        pytest.skip("image-audit is not installed (pip install .)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([exe, "audit", "--sample", "-o", "out"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "image-audit.xlsx").is_file()
    assert sys.executable


def test_sample_audit_fires_every_rule_id_and_applies_sample_exemptions(tmp_path, capsys):
    from auditor.engine import load_rules

    code, _ = run("audit", "--sample", "-o", str(tmp_path), "--format", "json", capsys=capsys)
    assert code == 0
    findings = json.loads((tmp_path / "findings.json").read_text())["findings"]
    pack = {rule.id for rule in load_rules() if not rule.retired}
    assert pack <= {f["rule_id"] for f in findings}
    exempted = {f["resource_name"] for f in findings if f["exempted"]}
    assert exempted == {f"vm-latest-1{i}" for i in range(10)}
    expired = [f for f in findings if f["rule_id"] == "EXM001"]
    assert len(expired) == 1 and "TAG001" in expired[0]["message"]


def test_sample_exemptions_replaced_by_given_file(tmp_path, capsys):
    empty = tmp_path / "none.yaml"
    empty.write_text("exemptions: []\n")
    code, _ = run("audit", "--sample", "-o", str(tmp_path), "--format", "json",
                  "--exemptions", str(empty), capsys=capsys)
    findings = json.loads((tmp_path / "findings.json").read_text())["findings"]
    assert code == 0 and not any(f["exempted"] for f in findings)
    assert not {"EXM001", "EXM002"} & {f["rule_id"] for f in findings}


def test_small_command_line_mends(tmp_path, capsys):
    # an out-of-range ratio is a usage error (exit 2), named as the option
    code, out = run("cost", "--sample", "-o", str(tmp_path), "--occupancy", "1.5", capsys=capsys)
    assert code == 2 and "--occupancy" in out.err and "0<x<=1" in out.err
    # `rules show` indents every line of the rationale, not only the first
    code, out = run("rules", "show", "PIN001", capsys=capsys)
    why = out.out.split("Why it matters:\n", 1)[1].split("\n\nHow to fix:", 1)[0]
    assert all(line.startswith("  ") for line in why.splitlines() if line)
    # import names the types it skipped
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(compliant_estate_resources() + [{
        "id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a",
        "type": "Microsoft.Storage/storageAccounts", "name": "a", "location": "westeurope"}]))
    code, out = run("import", str(raw), "-o", str(tmp_path / "snap"), capsys=capsys)
    assert code == 0 and "1 other resources skipped (microsoft.storage/storageaccounts 1)" in out.out
