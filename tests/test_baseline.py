"""Baselines: new / existing / resolved by fingerprint, stable across runs and casing changes,
bad baseline files, and --fail-on-new through the CLI."""

import json

import pandas as pd
import pytest

from auditor.baseline import load_baseline
from auditor.cli import main
from auditor.engine import evaluate, load_rules
from auditor.errors import AuditError
from tests.builders import compliant_estate_resources, estate_of, marketplace, vm

LATEST = marketplace("latest")


def findings_json(path, fingerprints):
    path.write_text(json.dumps({"findings": [{"rule_id": f.split(":")[0], "fingerprint": f}
                                             for f in fingerprints]}))
    return path


def frame(*fingerprints):
    return pd.DataFrame({"rule_id": [f.split(":")[0] for f in fingerprints],
                         "fingerprint": list(fingerprints), "status": None})


def test_status_new_existing_and_resolved(tmp_path):
    baseline = load_baseline(findings_json(tmp_path / "b.json", ["PIN001:/a", "PIN001:/gone",
                                                                 "TAG001:/a"]))
    findings, resolved = baseline.compare(frame("PIN001:/a", "PIN001:/b", "TAG001:/a"))
    assert list(findings["status"]) == ["existing", "new", "existing"]
    assert resolved == [{"rule_id": "PIN001", "fingerprint": "PIN001:/gone", "status": "resolved"}]
    assert baseline.summary(findings, resolved) == {
        "file": str(tmp_path / "b.json"), "new": 1, "existing": 2, "resolved": 1}


def test_fingerprints_compare_ignoring_case(tmp_path):
    baseline = load_baseline(findings_json(tmp_path / "b.json", ["PIN001:/Subscriptions/X/VM"]))
    findings, resolved = baseline.compare(frame("PIN001:/subscriptions/x/vm"))
    assert list(findings["status"]) == ["existing"] and resolved == []


def test_region_is_part_of_the_fingerprint(tmp_path):
    baseline = load_baseline(findings_json(tmp_path / "b.json", ["REP001:/v@eastus"]))
    findings, resolved = baseline.compare(frame("REP001:/v@westeurope"))
    assert list(findings["status"]) == ["new"]
    assert [r["fingerprint"] for r in resolved] == ["REP001:/v@eastus"]


def test_empty_baseline_makes_everything_new(tmp_path):
    findings, resolved = load_baseline(findings_json(tmp_path / "b.json", [])).compare(
        frame("PIN001:/a"))
    assert list(findings["status"]) == ["new"] and resolved == []


def test_fingerprints_are_stable_across_casing_changes_in_azure():
    """Resource Graph may return an id with different casing from one run to the next."""
    def upper(resource):
        return {**resource, "id": resource["id"].upper()}
    rules = load_rules()
    resources = compliant_estate_resources() + [vm("vm-a", image=LATEST)]
    first = evaluate(estate_of(*resources), rules)
    second = evaluate(estate_of(*map(upper, resources)), rules)
    assert len(first) == 1
    assert list(first["fingerprint"]) == list(second["fingerprint"])


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a findings.json (malformed JSON"),
    ("[1, 2]", "not a findings.json (no 'findings' list)"),
    ('{"findings": {"a": 1}}', "not a findings.json (no 'findings' list)"),
    ('{"findings": [{"fingerprint": "PIN001:/a"}, {"rule_id": "PIN001"}]}',
     "findings[1] has no 'fingerprint'"),
    ('{"findings": ["PIN001:/a"]}', "findings[0] has no 'fingerprint'"),
    ('{"findings": [{"fingerprint": ""}]}', "findings[0] has no 'fingerprint'"),
])
def test_bad_baseline_is_a_one_line_error(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(AuditError) as info:
        load_baseline(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_baseline_file(tmp_path):
    with pytest.raises(AuditError, match="file not found"):
        load_baseline(tmp_path / "nope.json")


# --- end to end through the CLI ----------------------------------------------------------------

def run(*args, capsys):
    """The CLI; an audit writes findings.json and .csv only unless the test names formats."""
    args = [str(a) for a in args]
    if args[0] == "audit" and "--format" not in args:
        args += ["--format", "json", "--format", "csv"]
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr()


def snapshot(tmp_path, name, *machines, capsys):
    raw = tmp_path / f"{name}.json"
    raw.write_text(json.dumps(compliant_estate_resources() + list(machines)))
    code, _ = run("import", raw, "-o", tmp_path / name, "--collected-at", "2026-11-15",
                  capsys=capsys)
    assert code == 0
    return tmp_path / name


def test_cli_baseline_then_fail_on_new(tmp_path, capsys):
    before = snapshot(tmp_path, "before", vm("vm-a", image=LATEST), vm("vm-b", image=LATEST),
                      capsys=capsys)
    code, _ = run("audit", before, "-o", tmp_path / "r1", "--format", "json", capsys=capsys)
    assert code == 0
    baseline = tmp_path / "r1" / "findings.json"

    # Same estate: every finding exists already, so --fail-on-new passes where --fail-on fails.
    assert run("audit", before, "-o", tmp_path / "r2", "--fail-on", "low", "--baseline",
               baseline, capsys=capsys)[0] == 1
    code, printed = run("audit", before, "-o", tmp_path / "r2", "--fail-on", "low",
                        "--baseline", baseline, "--fail-on-new", capsys=capsys)
    assert code == 0 and "0 new, 2 existing, 0 resolved" in printed.out

    # vm-b fixed, vm-c new: one new finding fails the build; vm-b is listed as resolved.
    after = snapshot(tmp_path, "after", vm("vm-a", image=LATEST), vm("vm-b"),
                     vm("VM-C", image=LATEST), capsys=capsys)
    code, printed = run("audit", after, "-o", tmp_path / "r3", "--fail-on", "low", "--baseline",
                        baseline, "--fail-on-new", capsys=capsys)
    assert code == 1 and "1 new findings at or above low" in printed.err
    document = json.loads((tmp_path / "r3" / "findings.json").read_text())
    assert {f["resource_name"]: f["status"] for f in document["findings"]} == {
        "vm-a": "existing", "VM-C": "new"}
    assert [(f["resource_name"], f["status"]) for f in document["resolved"]] == [
        ("vm-b", "resolved")]
    assert document["baseline"] == {"file": str(baseline), "new": 1, "existing": 1, "resolved": 1}
    csv_text = (tmp_path / "r3" / "findings.csv").read_text(encoding="utf-8-sig")
    assert ",new," in csv_text and ",existing," in csv_text


def test_cli_new_but_exempted_finding_does_not_fail(tmp_path, capsys):
    estate = snapshot(tmp_path, "s", vm("vm-a", image=LATEST), capsys=capsys)
    baseline = findings_json(tmp_path / "empty.json", [])
    exemptions = tmp_path / "ex.yaml"
    exemptions.write_text("exemptions:\n  - {rule: PIN001, resource: '*/VM-A', reason: appliance,"
                          " approved_by: ciso, expires: 2027-01-01}\n")
    code, printed = run("audit", estate, "-o", tmp_path / "r", "--fail-on", "high", "--baseline",
                        baseline, "--fail-on-new", "--exemptions", exemptions, capsys=capsys)
    assert code == 0 and "1 new, 0 existing" in printed.out


@pytest.mark.parametrize("args", [["--fail-on-new"], ["--fail-on-new", "--fail-on", "high"]])
def test_cli_fail_on_new_needs_fail_on_and_baseline(tmp_path, capsys, args):
    baseline = findings_json(tmp_path / "b.json", [])
    extra = [] if "--fail-on" in args else ["--baseline", baseline]
    code, printed = run("audit", "--sample", "-o", tmp_path, *args, *extra, capsys=capsys)
    assert code == 2 and "--fail-on-new needs --fail-on and --baseline" in printed.err


def test_cli_corrupt_baseline_is_exit_2(tmp_path, capsys):
    bad = tmp_path / "b.json"
    bad.write_text('{"summary": {}}')
    code, printed = run("audit", "--sample", "-o", tmp_path / "out", "--baseline", bad,
                        capsys=capsys)
    assert code == 2 and printed.err == (f"image-audit: error: {bad}: not a findings.json "
                                         "(no 'findings' list)\n")
    assert not (tmp_path / "out").exists()
