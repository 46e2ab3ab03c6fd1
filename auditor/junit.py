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

import numpy as np
import pandas as pd

from auditor.engine import SEVERITY_RANK
from auditor.safetext import xml_text

_PROPERTIES = ("severity", "rule_id", "resource_id", "resource_name", "location",
               "fingerprint", "status", "exempted")
_ATTRIBUTE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                            "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _attribute(value) -> str:
    """A value as the text of an XML attribute: characters XML 1.0 cannot hold (ElementTree
    and lxml would write them as they are, or refuse) shown as escapes, markup escaped."""
    return xml_text(value).translate(_ATTRIBUTE)


def _column(values: pd.Series) -> np.ndarray:
    """A column as attribute text, each distinct value escaped once (most columns repeat a
    few values)."""
    codes, distinct = pd.factorize(values.astype(object), use_na_sentinel=False)
    return np.array([_attribute(value) for value in distinct], dtype=object)[codes]


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


def _case_texts(findings: pd.DataFrame, reasons: pd.Series) -> np.ndarray:
    """Each finding's `<testcase>` element as text, built column by column."""
    column = {key: _column(findings[key]) for key in
              ("rule_id", "resource_id", "severity", "message", "fingerprint")}
    region = findings["fingerprint"].astype(object).str.rpartition("@")[2].where(
        findings["fingerprint"].astype(object).str.contains("@", regex=False), "")
    name = column["resource_id"] + np.where(region != "", " @" + _column(region), "")
    texts = ('    <testcase classname="image-audit.' + _column(findings["rule_id"].str[:3]) + "."
             + column["rule_id"] + '" name="' + name + '" time="0">\n      <properties>\n')
    for key in _PROPERTIES:
        present = findings[key].notna().to_numpy() if key in findings else None
        if present is None:
            continue
        values = column[key] if key in column else _column(findings[key])
        texts = texts + np.where(present, f'        <property name="{key}" value="' + values
                                 + '"/>\n', "")
    failing = (reasons == "").to_numpy()
    body = (column["severity"] + " " + column["rule_id"] + " " + column["resource_id"] + "&#10;"
            + column["message"] + "&#10;Remediation: " + _column(findings["remediation"]))
    outcome = np.where(failing, '      <failure message="' + column["message"] + '" type="'
                       + column["severity"] + '">' + body + "</failure>\n",
                       '      <skipped message="' + _column(reasons) + '"/>\n')
    return texts + "      </properties>\n" + outcome + "    </testcase>\n"


def _counts(rule_ids, positions: dict, failing: np.ndarray) -> dict:
    """tests, failures and skipped of the testcases of these rules."""
    counts = {"tests": 0, "failures": 0, "skipped": 0}
    for rule_id in rule_ids:
        where = positions.get(rule_id)
        failed = 0 if where is None else int(failing[where].sum())
        counts["tests"] += 1 if where is None else len(where)
        counts["failures"] += failed
        counts["skipped"] += 0 if where is None else len(where) - failed
    return counts


def write_junit(path, findings: pd.DataFrame, rules: list | None, context: dict, *,
                fail_on: str | None = None, fail_on_new: bool = False, chunk: int = 20_000) -> None:
    """The JUnit XML document, written `chunk` testcases at a time (never held whole)."""
    reasons = outcomes(findings, fail_on, fail_on_new)
    positions = findings.reset_index(drop=True).groupby("rule_id", sort=False).indices
    failing = (reasons == "").to_numpy()
    table = _rules_table(findings, rules)
    families = list(table.groupby(table["rule_id"].str[:3], sort=True))
    total = _counts(table["rule_id"], positions, failing)
    gate = (fail_on or "info") + (" (new findings only)" if fail_on_new else "")
    stamp = _attribute(xml_text(context.get("as_of"))[:19])
    with open(path, "w", encoding="utf-8") as out:
        out.write("<?xml version='1.0' encoding='utf-8'?>\n"
                  f'<testsuites name="image-audit" tests="{total["tests"]}" failures='
                  f'"{total["failures"]}" skipped="{total["skipped"]}" errors="0" time="0">\n')
        for family, rules_of_family in families:
            counts = _counts(rules_of_family["rule_id"], positions, failing)
            out.write(f'  <testsuite name="{_attribute(family)}" errors="0" time="0" '
                      f'timestamp="{stamp}" tests="{counts["tests"]}" failures='
                      f'"{counts["failures"]}" skipped="{counts["skipped"]}">\n'
                      f'    <properties>\n      <property name="fail-on" value="{gate}"/>\n'
                      "    </properties>\n")
            for rule in rules_of_family.itertuples(index=False):
                where = positions.get(rule.rule_id)
                if where is None:
                    out.write(f'    <testcase classname="image-audit.{_attribute(family)}.'
                              f'{_attribute(rule.rule_id)}" name="{_attribute(rule.rule_id)} '
                              f'{_attribute(rule.rule_name)}: no findings" time="0"/>\n')
                    continue
                for start in range(0, len(where), chunk):  # a chunk's texts at a time
                    part = where[start:start + chunk]
                    out.writelines(_case_texts(findings.iloc[part], reasons.iloc[part]))
            out.write("  </testsuite>\n")
        out.write("</testsuites>\n")
