"""findings.junit.xml: the audit as a test report for CI test-result views (Azure DevOps
PublishTestResults, GitHub JUnit reporter actions, Jenkins).

One testsuite per rule family. In it, one testcase per finding and one passing testcase per
rule that found nothing. A testcase per finding, not per rule, because these views show one
failure message per testcase (Azure DevOps keeps the first `<failure>` of a testcase) and
track a test's history by its name: a finding's testcase is named by its resource, so
"new failure" and "existing failure" there mean what they mean in the audit.

A finding fails exactly when it counts toward the exit code: open (not exempted), at or
above --fail-on and, with --fail-on-new, new against the baseline. Without --fail-on every
open finding fails (the report still says what is wrong when no gate is set). Every other
finding is `<skipped>` with the reason (exempted and why, below the threshold, already in the
baseline): it is still a violation, so it is never reported as passed. Each finding's
testcase carries its severity, rule, resource, fingerprint and status as properties.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd

from auditor.engine import SEVERITY_RANK
from auditor.safetext import xml_text

# Text XML 1.0 can hold: ElementTree escapes markup, not control characters, U+FFFE, U+FFFF
# or lone surrogates, which it writes as they are (a file no XML parser reads).
_clean = xml_text
_PROPERTIES = ("severity", "rule_id", "resource_id", "resource_name", "location",
               "fingerprint", "status", "exempted")


def _rules_table(findings: pd.DataFrame, rules: list | None) -> pd.DataFrame:
    rows = [(r.id, r.name, r.title, r.severity) for r in rules or []
            if r.enabled and not r.retired]
    table = pd.DataFrame(rows, columns=["rule_id", "rule_name", "title", "severity"])
    extra = findings[~findings["rule_id"].isin(table["rule_id"])].drop_duplicates("rule_id")
    table = pd.concat([table, extra[["rule_id", "rule_name", "title", "severity"]]])
    return table.sort_values("rule_id").reset_index(drop=True)


def outcomes(findings: pd.DataFrame, fail_on: str | None = None,
             fail_on_new: bool = False) -> pd.Series:
    """Per finding: "" when it fails, else why it does not (the text of its `<skipped>`)."""
    threshold = SEVERITY_RANK[fail_on or "info"]
    exempted = findings["exempted"].fillna(False).astype(bool)
    below = findings["severity"].map(SEVERITY_RANK).fillna(-1) < threshold
    status = findings["status"] if "status" in findings else pd.Series(None, findings.index)
    existing = pd.Series(fail_on_new, findings.index) & (status != "new")
    reasons = pd.Series("", findings.index, dtype="object")
    reasons = reasons.mask(existing, "in the baseline (--fail-on-new counts new findings only)")
    # object, not str: text from users may hold lone surrogates, which Arrow strings cannot
    reasons = reasons.mask(below, f"below --fail-on {fail_on}: " + findings["severity"].astype(object))
    reasons = reasons.mask(exempted, "exempted: " + findings["exemption_reason"].fillna("")
                           .astype(object))
    return reasons


def _case_name(finding) -> str:
    """The resource, and its region for a per-region finding: stable from run to run."""
    region = str(finding.fingerprint).rpartition("@")[2] if "@" in str(finding.fingerprint) else ""
    return f"{finding.resource_id} @{region}" if region else str(finding.resource_id)


def _finding_case(suite: ET.Element, family: str, finding, reason: str) -> None:
    case = ET.SubElement(suite, "testcase", classname=_clean(f"image-audit.{family}.{finding.rule_id}"),
                         name=_clean(_case_name(finding)), time="0")
    properties = ET.SubElement(case, "properties")
    for key in _PROPERTIES:
        value = getattr(finding, key, None)
        if value is not None and value == value:
            ET.SubElement(properties, "property", name=key, value=_clean(value))
    if reason:
        ET.SubElement(case, "skipped", message=_clean(reason))
        return
    failure = ET.SubElement(case, "failure", message=_clean(finding.message),
                            type=_clean(finding.severity))
    failure.text = _clean(f"{finding.severity} {finding.rule_id} {finding.resource_id}\n"
                          f"{finding.message}\nRemediation: {finding.remediation}")


def junit_tree(findings: pd.DataFrame, rules: list | None, context: dict,
               fail_on: str | None = None, fail_on_new: bool = False) -> ET.ElementTree:
    findings = findings.assign(not_failing_because=outcomes(findings, fail_on, fail_on_new))
    by_rule = {rule_id: group for rule_id, group in findings.groupby("rule_id", sort=False)}
    table = _rules_table(findings, rules)
    root = ET.Element("testsuites", name="image-audit")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for family, rules_of_family in table.groupby(table["rule_id"].str[:3], sort=True):
        suite = ET.SubElement(root, "testsuite", name=_clean(family), errors="0", time="0",
                              timestamp=_clean(context.get("as_of"))[:19])
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="fail-on",
                      value=(fail_on or "info") + (" (new findings only)" if fail_on_new else ""))
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        for rule in rules_of_family.itertuples(index=False):
            group = by_rule.get(rule.rule_id)
            if group is None:
                ET.SubElement(suite, "testcase", classname=_clean(f"image-audit.{family}.{rule.rule_id}"),
                              name=_clean(f"{rule.rule_id} {rule.rule_name}: no findings"), time="0")
                counts["tests"] += 1
                continue
            for finding in group.itertuples(index=False):
                _finding_case(suite, family, finding, finding.not_failing_because)
            counts["tests"] += len(group)
            counts["failures"] += int((group["not_failing_because"] == "").sum())
            counts["skipped"] += int((group["not_failing_because"] != "").sum())
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    root.set("time", "0")
    return ET.ElementTree(root)


def write_junit(path, findings: pd.DataFrame, rules: list | None, context: dict, *,
                fail_on: str | None = None, fail_on_new: bool = False) -> None:
    tree = junit_tree(findings, rules, context, fail_on, fail_on_new)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
