"""findings.junit.xml read back by a JUnit XML parser and by ElementTree."""

import xml.etree.ElementTree as ET

import pytest
from junitparser import Failure, JUnitXml

from auditor.engine import evaluate, load_rules
from auditor.estate import Estate
from auditor.importer import sample_snapshot
from auditor.report import write_reports


@pytest.fixture(scope="module")
def junit(tmp_path_factory):
    rules = load_rules()
    findings = evaluate(Estate(sample_snapshot()), rules)
    exempt = findings.index[findings["rule_id"] == "TAG002"]
    findings.loc[exempt, ["exempted", "exemption_reason"]] = [True, "legacy <tag> & co"]
    out = tmp_path_factory.mktemp("junit")
    write_reports(out, findings, {}, {"as_of": "2026-11-15T06:00:00+00:00"}, ["junit"],
                  rules=rules)
    return out / "findings.junit.xml", findings, rules


def test_one_suite_per_family_one_case_per_rule(junit):
    path, _, rules = junit
    xml = JUnitXml.fromfile(str(path))
    suites = {suite.name: suite for suite in xml}
    enabled = [rule for rule in rules if rule.enabled and not rule.retired]
    assert set(suites) == {rule.id[:3] for rule in enabled}
    cases = [case.name.split()[0] for suite in suites.values() for case in suite]
    assert sorted(cases) == sorted(rule.id for rule in enabled)


def test_a_failure_per_non_exempt_finding(junit):
    path, findings, _ = junit
    xml = JUnitXml.fromfile(str(path))
    failures = {}
    for suite in xml:
        for case in suite:
            failures[case.name.split()[0]] = [r for r in case.result if isinstance(r, Failure)]
    active = findings[~findings["exempted"]]
    for rule_id, count in active["rule_id"].value_counts().items():
        assert len(failures[rule_id]) == count
    assert failures["TAG002"] == []  # all exempted
    first = active.iloc[0]
    assert any(f.message == first["message"] and first["resource_id"] in f.text
               for f in failures[first["rule_id"]])


def test_exempted_findings_listed_as_properties_and_xml_is_well_formed(junit):
    path, findings, _ = junit
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    properties = root.findall(".//testcase/properties/property")
    assert len(properties) == int(findings["exempted"].sum())
    assert {p.get("value") for p in properties} == {"legacy <tag> & co"}
    tag_suite = root.find("testsuite[@name='TAG']")
    assert tag_suite.get("failures") == "1"
