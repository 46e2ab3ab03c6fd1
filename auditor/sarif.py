"""findings.sarif: SARIF 2.1.0 for code-scanning views in CI (GitHub code scanning, Azure
DevOps), in the form GitHub code scanning accepts.

Azure resources have no source file, and GitHub needs a physical location per result: the
location is the resource id as a repository-relative path, `azure/` then the id lower-cased
(`azure/subscriptions/<sub>/resourcegroups/<rg>/providers/<type>/<name>/...`), line 1.
The path depends on the resource alone, so it is the same from run to run (GitHub matches
alerts across runs by path and `partialFingerprints`, here the finding's fingerprint), and
GitHub's path filter then selects a subscription or a resource group. The resource id is also
kept as a logical location. Exempted findings are results with an accepted suppression.

GitHub rejects a run of more than 25,000 results or a file over 10 MB gzipped, and keeps
only the 5,000 most severe results of a run. So at most 5,000 results are written, chosen
here: open before exempted, then most severe first; what was left out is counted in the
run's properties and a tool notification, and said on stderr.
"""

from __future__ import annotations

import gzip
import json
import sys
from urllib.parse import quote

import numpy as np
import pandas as pd

from auditor import __version__
from auditor.engine import SEVERITIES, SEVERITY_RANK
from auditor.safetext import json_without_surrogates

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
FINGERPRINT_KEY = "imageAuditFingerprint/v1"
# GitHub code scanning shows "security-severity" (a CVSS-like score) as critical/high/medium/low.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "2.0"}
MAX_RESULTS = 5_000  # GitHub keeps this many results of a run (and rejects over 25,000)
MAX_GZIPPED_BYTES = 10 * 1024 * 1024  # GitHub's upload limit, gzip-compressed


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
    if rule.severity in SECURITY_SEVERITY:
        descriptor["properties"]["security-severity"] = SECURITY_SEVERITY[rule.severity]
        descriptor["properties"]["tags"].append("security")
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


def artifact_uri(resource_id: str) -> str:
    """The repository-relative path standing for an Azure resource: `azure/` and its id
    lower-cased, each segment percent-encoded (a `..` in a name never climbs out)."""
    segments = [segment for segment in str(resource_id).lower().split("/") if segment]
    encoded = [quote(s, safe="", errors="surrogatepass") if s.strip(".") else "%2E" * len(s)
               for s in segments]
    return "azure/" + ("/".join(encoded) or "unknown-resource")


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
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": artifact_uri(finding["resource_id"])},
            "region": {"startLine": 1}}, "logicalLocations": [location]}],
        "partialFingerprints": {FINGERPRINT_KEY: finding["fingerprint"]},
        "properties": properties,
    }
    if finding.get("exempted"):
        result["suppressions"] = [{"kind": "external", "status": "accepted",
                                   "justification": _text(finding.get("exemption_reason"))
                                   or "exempted"}]
    return result


def _priority(findings: pd.DataFrame) -> np.ndarray:
    """Positions of the findings, the ones to keep first: open before exempted, then most
    severe, then in the findings' own order."""
    exempted = findings["exempted"].fillna(False).astype(bool).to_numpy()
    rank = findings["severity"].map(SEVERITY_RANK).fillna(-1).to_numpy()
    return np.lexsort((np.arange(len(findings)), -rank, exempted))


def _left_out_note(findings: pd.DataFrame, omitted: pd.DataFrame, why: str) -> dict:
    by_severity = omitted["severity"].value_counts()
    counts = {s: int(by_severity[s]) for s in reversed(SEVERITIES) if s in by_severity}
    listed = ", ".join(f"{s} {n}" for s, n in counts.items())
    exempted = int(omitted["exempted"].fillna(False).astype(bool).sum())
    text = (f"kept the {len(findings) - len(omitted)} most severe of {len(findings)} results "
            f"({why}); left out {len(omitted)}: {listed} ({exempted} of them exempted); "
            "findings.json lists every finding")
    return {"count": len(omitted), "bySeverity": counts, "exempted": exempted, "reason": why,
            "text": text}


def sarif_document(findings: pd.DataFrame, rules: list | None, context: dict,
                   max_results: int = MAX_RESULTS,
                   why: str = f"GitHub code scanning keeps {MAX_RESULTS:,} results of a run") -> dict:
    """The SARIF log: one run, the rule pack as tool.driver.rules, one result per finding,
    at most `max_results` of them (the most severe)."""
    priority = _priority(findings)
    kept = findings.iloc[np.sort(priority[:max_results])]
    records = kept.astype("object").where(kept.notna(), None).to_dict("records")
    descriptors = [_rule_descriptor(rule) for rule in rules or [] if not rule.retired]
    known = {d["id"] for d in descriptors}
    for finding in records:
        if finding["rule_id"] not in known:
            descriptors.append(_descriptor_from_finding(finding))
            known.add(finding["rule_id"])
    rule_index = {d["id"]: i for i, d in enumerate(descriptors)}
    invocation = {"executionSuccessful": True,
                  "commandLine": context.get("command") or "image-audit"}
    run = {
        "tool": {"driver": {"name": "image-audit", "version": __version__,
                            "semanticVersion": __version__, "rules": descriptors}},
        "invocations": [invocation],
        "results": [_result(finding, rule_index) for finding in records],
        "properties": {k: context[k] for k in ("snapshot", "snapshot_sha256", "as_of",
                                               "collected_at") if context.get(k)},
    }
    if len(kept) < len(findings):
        note = _left_out_note(findings, findings.iloc[priority[max_results:]], why)
        run["properties"]["resultsLeftOut"] = note
        invocation["toolExecutionNotifications"] = [{
            "level": "warning", "message": {"text": note["text"]},
            "descriptor": {"id": "results-left-out"}}]
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def write_sarif(path, findings: pd.DataFrame, rules: list | None, context: dict, *,
                max_results: int = MAX_RESULTS,
                max_gzipped_bytes: int = MAX_GZIPPED_BYTES) -> None:
    """findings.sarif within GitHub's limits: at most `max_results` results and, when the
    file gzipped would be larger than `max_gzipped_bytes`, fewer (the most severe)."""
    limit, why = max_results, f"GitHub code scanning keeps {max_results:,} results of a run"
    while True:
        document = sarif_document(findings, rules, context, limit, why)
        # A lone surrogate (an undecodable byte of a path on the command line, say) cannot be
        # written as UTF-8: it is shown as the text of its escape, so the file stays valid JSON.
        text = json_without_surrogates(json.dumps(document, indent=1, ensure_ascii=False))
        size = len(gzip.compress(text.encode("utf-8"), compresslevel=6))
        kept = len(document["runs"][0]["results"])
        if size <= max_gzipped_bytes or kept == 0:
            break
        limit = int(kept * max_gzipped_bytes / size * 0.95)
        why = f"GitHub code scanning accepts {max_gzipped_bytes / 2**20:g} MB gzipped"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    left_out = document["runs"][0]["properties"].get("resultsLeftOut")
    if left_out:
        print(f"image-audit: warning: findings.sarif: {left_out['text']}", file=sys.stderr)
