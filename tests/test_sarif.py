"""findings.sarif validated against the SARIF 2.1.0 JSON schema and read back."""

import json
from pathlib import Path

import jsonschema
import pytest

from auditor.engine import evaluate, load_rules
from auditor.estate import Estate
from auditor.importer import sample_snapshot
from auditor.report import write_reports

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "sarif-2.1.0.json").read_text())


@pytest.fixture(scope="module")
def sarif(tmp_path_factory):
    rules = load_rules()
    findings = evaluate(Estate(sample_snapshot()), rules)
    findings.loc[0, ["exempted", "exemption_reason"]] = [True, "Accepted until the Q1 rebuild"]
    out = tmp_path_factory.mktemp("sarif")
    write_reports(out, findings, {}, {"command": "image-audit audit --sample",
                                      "snapshot_sha256": "ab" * 32}, ["sarif"], rules=rules)
    return json.loads((out / "findings.sarif").read_text()), findings, rules


def test_validates_against_the_sarif_schema(sarif):
    document, _, _ = sarif
    jsonschema.Draft4Validator(SCHEMA).validate(document)
    assert document["version"] == "2.1.0"


def test_driver_rules_come_from_the_rule_yaml(sarif):
    document, _, rules = sarif
    driver = document["runs"][0]["tool"]["driver"]
    assert driver["name"] == "image-audit" and driver["version"]
    by_id = {rule["id"]: rule for rule in driver["rules"]}
    assert set(by_id) == {rule.id for rule in rules if not rule.retired}
    pin001 = next(rule for rule in rules if rule.id == "PIN001")
    assert by_id["PIN001"]["shortDescription"]["text"] == pin001.title
    assert by_id["PIN001"]["fullDescription"]["text"] == pin001.rationale
    assert by_id["PIN001"]["help"]["text"] == pin001.remediation
    assert by_id["PIN001"]["helpUri"] == pin001.references[0]


def test_results_levels_locations_fingerprints(sarif):
    document, findings, _ = sarif
    driver = document["runs"][0]["tool"]["driver"]
    results = document["runs"][0]["results"]
    assert len(results) == len(findings)
    levels = {"critical": "error", "high": "error", "medium": "warning", "low": "note",
              "info": "note"}
    for result, finding in zip(results, findings.itertuples(), strict=True):
        assert result["ruleId"] == finding.rule_id
        assert driver["rules"][result["ruleIndex"]]["id"] == finding.rule_id
        assert result["level"] == levels[finding.severity]
        assert result["message"]["text"] == finding.message
        location = result["locations"][0]["logicalLocations"][0]
        assert location["fullyQualifiedName"] == finding.resource_id
        assert result["partialFingerprints"]["imageAuditFingerprint/v1"] == finding.fingerprint


def test_exempted_findings_are_suppressed_with_their_justification(sarif):
    document, _, _ = sarif
    results = document["runs"][0]["results"]
    suppressed = [r for r in results if r.get("suppressions")]
    assert len(suppressed) == 1
    assert suppressed[0]["suppressions"] == [{"kind": "external", "status": "accepted",
                                              "justification": "Accepted until the Q1 rebuild"}]
