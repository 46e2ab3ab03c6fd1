"""findings.sarif validated against the SARIF 2.1.0 JSON schema (OASIS, errata 01, vendored
in tests/schemas) and read back, with the rules GitHub code scanning adds: a physical
location and partialFingerprints per result, at most 5,000 results (the most severe; GitHub
keeps that many of a run and rejects over 25,000) and at most 10 MB gzipped."""

import gzip
import json
import secrets
from pathlib import Path
from urllib.parse import unquote

import jsonschema
import pandas as pd
import pytest

from auditor.engine import SEVERITY_RANK, evaluate, load_rules
from auditor.estate import Estate
from auditor.importer import sample_snapshot
from auditor.report import write_reports
from auditor.sarif import MAX_GZIPPED_BYTES, MAX_RESULTS, artifact_uri, write_sarif

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
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == artifact_uri(finding.resource_id)
        assert physical["region"]["startLine"] == 1
        assert location["fullyQualifiedName"] == finding.resource_id
        assert result["partialFingerprints"]["imageAuditFingerprint/v1"] == finding.fingerprint


def test_exempted_findings_are_suppressed_with_their_justification(sarif):
    document, _, _ = sarif
    results = document["runs"][0]["results"]
    suppressed = [r for r in results if r.get("suppressions")]
    assert len(suppressed) == 1
    assert suppressed[0]["suppressions"] == [{"kind": "external", "status": "accepted",
                                              "justification": "Accepted until the Q1 rebuild"}]


def test_every_result_has_a_repository_relative_physical_location(sarif):
    document, findings, _ = sarif
    results = document["runs"][0]["results"]
    for result, finding in zip(results, findings.itertuples(), strict=True):
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert "uriBaseId" not in result["locations"][0]["physicalLocation"]["artifactLocation"]
        assert uri.startswith("azure/subscriptions/") and ":" not in uri and "//" not in uri
        assert unquote(uri) == "azure" + finding.resource_id.lower()
        assert result["partialFingerprints"] and all(
            isinstance(v, str) and v for v in result["partialFingerprints"].values())


def test_artifact_uri_is_stable_and_never_leaves_the_repository():
    resource = "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.Compute/images/My Image"
    assert artifact_uri(resource) == artifact_uri(resource.lower()) == \
        "azure/subscriptions/s1/resourcegroups/rg/providers/microsoft.compute/images/my%20image"
    hostile = artifact_uri("/subscriptions/s/../../../etc/passwd?x#y/./%2e")
    assert ".." not in hostile.split("/") and "." not in hostile.split("/")
    assert "?" not in hostile and "#" not in hostile
    assert artifact_uri("") == "azure/unknown-resource"
    assert artifact_uri("/subscriptions/s/x/r\x0b\ud800").isascii()  # lone surrogate: encoded


def test_github_reads_severity_from_the_rules(sarif):
    document, _, rules = sarif
    by_id = {rule["id"]: rule for rule in document["runs"][0]["tool"]["driver"]["rules"]}
    assert len(by_id) <= 25_000
    for rule in rules:
        if rule.retired:
            continue
        properties = by_id[rule.id]["properties"]
        assert len(properties["tags"]) <= 10  # GitHub shows 10 tags of a rule
        if rule.severity == "info":
            assert "security-severity" not in properties
        else:
            score = float(properties["security-severity"])
            expected = {"critical": (9.0, 10.0), "high": (7.0, 8.9), "medium": (4.0, 6.9),
                        "low": (0.1, 3.9)}[rule.severity]
            assert expected[0] <= score <= expected[1] and "security" in properties["tags"]


def _many(findings: pd.DataFrame, copies: int) -> pd.DataFrame:
    """The sample's findings repeated over as many resources, each with its own fingerprint."""
    frames = []
    for copy in range(copies):
        frame = findings.copy()
        frame["resource_id"] = frame["resource_id"] + f"-{copy}"
        frame["fingerprint"] = frame["fingerprint"] + f"-{copy}"
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_above_github_limits_the_most_severe_are_kept_and_the_rest_counted(tmp_path, capsys):
    rules = load_rules()
    findings = evaluate(Estate(sample_snapshot()), rules)
    findings["exempted"] = findings["exempted"].astype(bool)
    many = _many(findings, 30_000 // len(findings) + 1)
    many.loc[many.index[::7], ["exempted", "exemption_reason"]] = [True, "accepted"]
    assert len(many) > 25_000
    write_sarif(tmp_path / "findings.sarif", many, rules, {})
    document = json.loads((tmp_path / "findings.sarif").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator(SCHEMA).validate(document)
    run = document["runs"][0]
    assert len(run["results"]) == MAX_RESULTS == 5_000
    by_fingerprint = many.set_index("fingerprint")
    kept = by_fingerprint.loc[[r["partialFingerprints"]["imageAuditFingerprint/v1"]
                               for r in run["results"]]]
    left_out = by_fingerprint.drop(kept.index)
    rank = lambda frame: frame["severity"].map(SEVERITY_RANK)  # noqa: E731
    open_kept, open_left = kept[~kept["exempted"]], left_out[~left_out["exempted"]]
    assert len(open_kept) == len(kept)  # open findings come before exempted ones
    assert rank(open_kept).min() >= rank(open_left).max()
    note = run["properties"]["resultsLeftOut"]
    assert note["count"] == len(many) - 5_000 == len(left_out)
    assert note["bySeverity"] == {s: int(n) for s, n in left_out["severity"].value_counts().items()}
    assert note["exempted"] == int(left_out["exempted"].sum())
    notification = run["invocations"][0]["toolExecutionNotifications"][0]
    assert notification["level"] == "warning" and notification["message"]["text"] == note["text"]
    assert f"left out {note['count']}" in capsys.readouterr().err


def test_a_file_over_10_mb_gzipped_keeps_fewer_results(tmp_path, capsys):
    rules = load_rules()
    findings = evaluate(Estate(sample_snapshot()), rules)
    many = _many(findings, 4_000 // len(findings) + 1)
    # Incompressible messages: about 4 KB of random text each, 16 MB gzipped in all.
    many["message"] = [secrets.token_urlsafe(3_000) for _ in range(len(many))]
    write_sarif(tmp_path / "findings.sarif", many, rules, {})
    raw = (tmp_path / "findings.sarif").read_bytes()
    assert len(gzip.compress(raw)) <= MAX_GZIPPED_BYTES == 10 * 1024 * 1024
    run = json.loads(raw)["runs"][0]
    assert 0 < len(run["results"]) < len(many)
    assert run["properties"]["resultsLeftOut"]["reason"] == "GitHub code scanning accepts 10 MB gzipped"
    assert "10 MB gzipped" in capsys.readouterr().err


def test_within_the_limits_nothing_is_left_out(sarif, capsys):
    document, findings, _ = sarif
    run = document["runs"][0]
    assert len(run["results"]) == len(findings)
    assert "resultsLeftOut" not in run["properties"]
    assert "toolExecutionNotifications" not in run["invocations"][0]
