"""findings.junit.xml read back by a JUnit XML parser and by ElementTree: failures only for
what the exit-code gate counts, every other finding skipped with its reason."""

import xml.etree.ElementTree as ET

import pytest
from junitparser import Failure, JUnitXml, Skipped

from auditor.baseline import Baseline
from auditor.engine import SEVERITY_RANK, evaluate, load_rules
from auditor.estate import Estate
from auditor.importer import sample_snapshot
from auditor.report import write_reports

CONTEXT = {"as_of": "2026-11-15T06:00:00+00:00"}


@pytest.fixture(scope="module")
def audited():
    rules = load_rules()
    findings = evaluate(Estate(sample_snapshot()), rules)
    exempt = findings.index[findings["rule_id"] == "TAG002"]
    findings.loc[exempt, ["exempted", "exemption_reason"]] = [True, "legacy <tag> & co"]
    return findings, rules


def _written(tmp_path, findings, rules, **gate):
    write_reports(tmp_path, findings, {}, CONTEXT, ["junit"], rules=rules, **gate)
    return tmp_path / "findings.junit.xml"


def _outcome(case):
    return "failure" if any(isinstance(r, Failure) for r in case.result) else \
        "skipped" if any(isinstance(r, Skipped) for r in case.result) else "passed"


def _by_fingerprint(path):
    """fingerprint -> (outcome, testcase element) for the finding testcases."""
    found = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "fingerprint" in properties:
            found[properties["fingerprint"]] = (properties, case)
    return found


def test_one_testcase_per_finding_and_one_per_rule_without_findings(tmp_path, audited):
    findings, rules = audited
    path = _written(tmp_path, findings, rules, fail_on="high")
    xml = JUnitXml.fromfile(str(path))
    enabled = {rule.id for rule in rules if rule.enabled and not rule.retired}
    assert {suite.name for suite in xml} == {rule_id[:3] for rule_id in enabled}
    cases = [case for suite in xml for case in suite]
    clean = [c for c in cases if c.name.endswith(": no findings")]
    assert {c.classname.rsplit(".", 1)[1] for c in clean} == enabled - set(findings["rule_id"])
    assert all(_outcome(c) == "passed" for c in clean)
    assert len(cases) - len(clean) == len(findings)
    names = [(c.classname, c.name) for c in cases]
    assert len(set(names)) == len(names)  # a test's identity is unique and stable


def test_failures_only_at_or_above_fail_on_and_exempted_never_fail(tmp_path, audited):
    findings, rules = audited
    path = _written(tmp_path, findings, rules, fail_on="high")
    by_fingerprint = _by_fingerprint(path)
    assert set(by_fingerprint) == set(findings["fingerprint"])
    gate = (~findings["exempted"]) & (findings["severity"].map(SEVERITY_RANK) >= SEVERITY_RANK["high"])
    assert 0 < gate.sum() < len(findings)
    for finding, failing in zip(findings.itertuples(), gate, strict=True):
        properties, case = by_fingerprint[finding.fingerprint]
        assert properties["severity"] == finding.severity
        assert properties["resource_id"] == finding.resource_id
        assert properties["rule_id"] == finding.rule_id
        failure, skipped = case.find("failure"), case.find("skipped")
        if failing:
            assert skipped is None and failure.get("type") == finding.severity
            assert failure.get("message") == finding.message
            assert finding.resource_id in failure.text
        else:
            assert failure is None
            expected = ("exempted: legacy <tag> & co" if finding.exempted
                        else f"below --fail-on high: {finding.severity}")
            assert skipped.get("message") == expected
    root = ET.parse(path).getroot()
    assert root.get("failures") == str(int(gate.sum()))
    assert root.get("skipped") == str(int((~gate).sum()))
    assert root.get("tests") == str(len(list(root.iter("testcase"))))
    assert {p.get("value") for p in root.findall("testsuite/properties/property")} == {"high"}


def test_without_fail_on_every_open_finding_fails(tmp_path, audited):
    findings, rules = audited
    root = ET.parse(_written(tmp_path, findings, rules)).getroot()
    assert root.get("failures") == str(int((~findings["exempted"]).sum()))
    assert root.get("skipped") == str(int(findings["exempted"].sum()))
    skipped = [s.get("message") for s in root.iter("skipped")]
    assert set(skipped) == {"exempted: legacy <tag> & co"}
    tag_suite = root.find("testsuite[@name='TAG']")
    assert int(tag_suite.get("skipped")) == int((findings["rule_id"] == "TAG002").sum())


def test_fail_on_new_fails_only_new_findings(tmp_path, audited):
    findings, rules = audited
    open_high = findings[~findings["exempted"] & (findings["severity"] == "high")]
    new_one = open_high.iloc[0]["fingerprint"]
    baseline = Baseline("previous/findings.json", [
        {"fingerprint": f} for f in findings["fingerprint"] if f != new_one])
    compared, _ = baseline.compare(findings)
    path = _written(tmp_path, compared, rules, fail_on="high", fail_on_new=True)
    by_fingerprint = _by_fingerprint(path)
    failed = [f for f, (_, case) in by_fingerprint.items() if case.find("failure") is not None]
    assert failed == [new_one]
    properties, _ = by_fingerprint[open_high.iloc[1]["fingerprint"]]
    assert properties["status"] == "existing"
    _, case = by_fingerprint[open_high.iloc[1]["fingerprint"]]
    assert case.find("skipped").get("message").startswith("in the baseline")
    root = ET.parse(path).getroot()
    assert root.get("failures") == "1"
    assert root.find("testsuite/properties/property").get("value") == "high (new findings only)"


def test_hostile_text_stays_well_formed(tmp_path, audited):
    findings, rules = audited
    hostile = findings.head(2).copy()
    hostile["message"] = "bad \x1b[31m <![CDATA[ ]]> \ufffe name"
    hostile["resource_id"] = "/subscriptions/x/resourceGroups/rg/providers/a/b/<script>\x00"
    root = ET.parse(_written(tmp_path, hostile, rules, fail_on="info")).getroot()
    messages = [f.get("message") for f in root.iter("failure")]
    assert messages and all("\\x1b" in m and "\\ufffe" in m for m in messages)


def test_written_in_chunks_the_file_is_the_same(tmp_path, audited):
    from auditor.junit import write_junit
    findings, rules = audited
    write_junit(tmp_path / "whole.xml", findings, rules, CONTEXT, fail_on="medium")
    write_junit(tmp_path / "chunked.xml", findings, rules, CONTEXT, fail_on="medium", chunk=2)
    assert (tmp_path / "chunked.xml").read_bytes() == (tmp_path / "whole.xml").read_bytes()
    assert ET.parse(tmp_path / "chunked.xml").getroot().get("failures") != "0"
