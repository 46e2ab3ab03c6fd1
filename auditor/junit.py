"""findings.junit.xml: the audit as a test report for CI (Azure DevOps PublishTestResults,
Jenkins): one testsuite per rule family, one testcase per rule, a failure per non-exempt
finding. Exempted findings are listed as testcase properties, so they show without failing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd

from auditor.safetext import xml_text

# Text XML 1.0 can hold: ElementTree escapes markup, not control characters, U+FFFE, U+FFFF
# or lone surrogates, which it writes as they are (a file no XML parser reads).
_clean = xml_text


def _rules_table(findings: pd.DataFrame, rules: list | None) -> pd.DataFrame:
    rows = [(r.id, r.name, r.title, r.severity) for r in rules or []
            if r.enabled and not r.retired]
    table = pd.DataFrame(rows, columns=["rule_id", "rule_name", "title", "severity"])
    extra = findings[~findings["rule_id"].isin(table["rule_id"])].drop_duplicates("rule_id")
    table = pd.concat([table, extra[["rule_id", "rule_name", "title", "severity"]]])
    return table.sort_values("rule_id").reset_index(drop=True)


def junit_tree(findings: pd.DataFrame, rules: list | None, context: dict) -> ET.ElementTree:
    by_rule = {rule_id: group for rule_id, group in findings.groupby("rule_id", sort=False)}
    table = _rules_table(findings, rules)
    root = ET.Element("testsuites", name="image-audit")
    totals = {"tests": 0, "failures": 0}
    for family, rules_of_family in table.groupby(table["rule_id"].str[:3], sort=True):
        suite = ET.SubElement(root, "testsuite", name=_clean(family), errors="0", skipped="0", time="0",
                              timestamp=_clean(context.get("as_of"))[:19])
        failed = 0
        for rule in rules_of_family.itertuples(index=False):
            case = ET.SubElement(suite, "testcase", classname=_clean(f"image-audit.{family}"),
                                 name=_clean(f"{rule.rule_id} {rule.rule_name}: {rule.title}"),
                                 time="0")
            group = by_rule.get(rule.rule_id)
            if group is None:
                continue
            exempted = group["exempted"].astype(bool)
            if exempted.any():
                properties = ET.SubElement(case, "properties")
                for finding in group[exempted].itertuples(index=False):
                    ET.SubElement(properties, "property", name=_clean(f"exempted {finding.resource_id}"),
                                  value=_clean(finding.exemption_reason))
            for finding in group[~exempted].itertuples(index=False):
                failure = ET.SubElement(case, "failure", message=_clean(finding.message),
                                        type=_clean(finding.severity))
                failure.text = _clean(f"{finding.resource_id}\n{finding.message}")
            failed += int((~exempted).any())
        suite.set("tests", str(len(rules_of_family)))
        suite.set("failures", str(failed))
        totals["tests"] += len(rules_of_family)
        totals["failures"] += failed
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("time", "0")
    return ET.ElementTree(root)


def write_junit(path, findings: pd.DataFrame, rules: list | None, context: dict) -> None:
    tree = junit_tree(findings, rules, context)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
