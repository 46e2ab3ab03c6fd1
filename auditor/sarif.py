"""findings.sarif: SARIF 2.1.0 for code-scanning views in CI (Azure DevOps, GitHub).

Azure resources have no source file, so a result's location is a logical location holding
the resource id; exempted findings are results with an accepted suppression.
"""

from __future__ import annotations

import json

import pandas as pd

from auditor import __version__
from auditor.safetext import json_without_surrogates

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
FINGERPRINT_KEY = "imageAuditFingerprint/v1"


def _rule_descriptor(rule) -> dict:
    descriptor = {
        "id": rule.id, "name": rule.name,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.rationale},
        "help": {"text": rule.remediation,
                 "markdown": rule.remediation + "".join(f"\n\n- {r}" for r in rule.references)},
        "defaultConfiguration": {"level": LEVELS[rule.severity], "enabled": bool(rule.enabled)},
        "properties": {"severity": rule.severity, "family": rule.id[:3],
                       "tags": ["azure", "image-audit", rule.id[:3]]},
    }
    if rule.references:
        descriptor["helpUri"] = rule.references[0]
    return descriptor


def _descriptor_from_finding(finding: dict) -> dict:
    """A rule that is in the findings but not in the pack given (so SARIF stays complete)."""
    return {"id": finding["rule_id"], "name": finding.get("rule_name") or finding["rule_id"],
            "shortDescription": {"text": finding.get("title") or finding["rule_id"]},
            "fullDescription": {"text": finding.get("title") or finding["rule_id"]},
            "help": {"text": finding.get("remediation") or ""},
            "defaultConfiguration": {"level": LEVELS.get(finding["severity"], "warning")}}


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and value != value) else str(value)


def _result(finding: dict, rule_index: dict[str, int]) -> dict:
    location = {"fullyQualifiedName": finding["resource_id"], "kind": "resource"}
    name = _text(finding.get("resource_name"))
    if name:
        location["name"] = name
    properties = {key: finding[key] for key in ("severity", "resource_type", "subscription_id",
                                                "resource_group", "location", "region",
                                                "status", "first_seen", "age_days", "reopened",
                                                "last_reopened") if _text(finding.get(key))}
    cost = finding.get("monthly_cost")
    if isinstance(cost, float) and cost == cost:
        properties["monthly_cost"] = round(cost, 4)
    result = {
        "ruleId": finding["rule_id"], "ruleIndex": rule_index[finding["rule_id"]],
        "level": LEVELS.get(finding["severity"], "warning"),
        "message": {"text": finding["message"]},
        "locations": [{"logicalLocations": [location]}],
        "partialFingerprints": {FINGERPRINT_KEY: finding["fingerprint"]},
        "properties": properties,
    }
    if finding.get("exempted"):
        result["suppressions"] = [{"kind": "external", "status": "accepted",
                                   "justification": _text(finding.get("exemption_reason"))
                                   or "exempted"}]
    return result


def sarif_document(findings: pd.DataFrame, rules: list | None, context: dict) -> dict:
    """The SARIF log: one run, the rule pack as tool.driver.rules, one result per finding."""
    records = findings.astype("object").where(findings.notna(), None).to_dict("records")
    descriptors = [_rule_descriptor(rule) for rule in rules or [] if not rule.retired]
    known = {d["id"] for d in descriptors}
    for finding in records:
        if finding["rule_id"] not in known:
            descriptors.append(_descriptor_from_finding(finding))
            known.add(finding["rule_id"])
    rule_index = {d["id"]: i for i, d in enumerate(descriptors)}
    run = {
        "tool": {"driver": {"name": "image-audit", "version": __version__,
                            "semanticVersion": __version__, "rules": descriptors}},
        "invocations": [{"executionSuccessful": True,
                         "commandLine": context.get("command") or "image-audit"}],
        "results": [_result(finding, rule_index) for finding in records],
        "properties": {k: context[k] for k in ("snapshot", "snapshot_sha256", "as_of",
                                               "collected_at") if context.get(k)},
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def write_sarif(path, findings: pd.DataFrame, rules: list | None, context: dict) -> None:
    document = sarif_document(findings, rules, context)
    # A lone surrogate (an undecodable byte of a path on the command line, say) cannot be
    # written as UTF-8: it is shown as the text of its escape, so the file stays valid JSON.
    text = json_without_surrogates(json.dumps(document, indent=1, ensure_ascii=False))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
