"""The rule reference (docs/rules.md), generated from the rule pack's YAML so that no rule prose
is written twice. Every rule gets the same sections; a test fails when the committed page
drifts from the YAML.
"""

from __future__ import annotations

import inspect

import yaml

from auditor.engine import Rule

HEADER = """# Rule reference

Generated from the rule pack (`rules/*.yaml`) by `image-audit rules docs -o docs/rules.md`;
do not edit by hand. Severities, params and whether a rule is on can be changed per rule in
`image-audit.yaml` (see the README).
"""

_OP_WORDS = {"eq": "is", "ne": "is not", "in": "is one of", "not-in": "is not one of",
             "lt": "is less than", "le": "is at most", "gt": "is greater than",
             "ge": "is at least", "regex": "matches the regular expression",
             "missing": "is missing or empty", "present": "is present",
             "older-than-days": "is more days before the as-of date than",
             "due-within-days": "falls within this many days after the as-of date:"}


def _code(value) -> str:
    if isinstance(value, list):
        return ", ".join(_code(v) for v in value)
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _condition(condition: dict, depth: int = 0) -> list[str]:
    """The declarative condition as a nested markdown list, one comparison a line."""
    indent = "  " * depth
    for group, words in (("all", "all of"), ("any", "any of")):
        if group in condition:
            return [f"{indent}- {words}:"] + [line for sub in condition[group]
                                              for line in _condition(sub, depth + 1)]
    if "not" in condition:
        return [f"{indent}- not:"] + _condition(condition["not"], depth + 1)
    text = f"{indent}- `{condition['column']}` {_OP_WORDS[condition['op']]}"
    if "value" in condition:
        text += f" {_code(condition['value'])}"
    if condition.get("ignore_case"):
        text += " (ignoring case)"
    return [text]


def _flags(rule: Rule) -> list[str]:
    tables = ", ".join(f"`{table}`" for table in rule.tables)
    lines = [f"Flags rows of {tables} where:", ""]
    if rule.condition is not None:
        lines += _condition(rule.condition)
    else:
        doc = inspect.getdoc(rule.check()) or "(no description)"
        lines = [f"Checks {tables} with `{rule.python}`: {' '.join(doc.split())}"]
    return lines + ["", f"Message template: `{rule.message}`"]


def _params(rule: Rule) -> list[str]:
    if not rule.params:
        return ["None."]
    lines = ["| param | default |", "| --- | --- |"]
    for name, default in rule.params.items():
        text = yaml.safe_dump(default, default_flow_style=True, sort_keys=False).strip()
        text = text.removesuffix("...").strip().replace("|", "\\|")
        lines.append(f"| `{name}` | `{text}` |")
    return lines


def _section(rule: Rule) -> list[str]:
    state = "retired" if rule.retired else "on" if rule.enabled else "off by default"
    return [
        f"## {rule.id} {rule.name}", "",
        f"**{rule.title}**", "",
        f"- Severity: {rule.severity}",
        f"- Resource: {', '.join(f'`{t}`' for t in rule.tables)}",
        f"- State: {state}", "",
        "### What it flags", "", *_flags(rule), "",
        "### Why it matters", "", rule.rationale, "",
        "### How to fix", "", rule.remediation, "",
        "### Params", "", *_params(rule), "",
        "### References", "", *[f"- <{reference}>" for reference in rule.references], "",
    ]


def rules_markdown(rules: list[Rule]) -> str:
    """The whole reference page: an index table, then one section per rule in id order."""
    ordered = sorted(rules, key=lambda rule: rule.id)
    lines = [HEADER, "| id | name | severity | title |", "| --- | --- | --- | --- |"]
    lines += [f"| [{r.id}](#{r.id.lower()}-{r.name}) | {r.name} | {r.severity} | "
              f"{r.title.replace('|', '&#124;')} |" for r in ordered]
    lines.append("")
    for rule in ordered:
        lines += _section(rule)
    return "\n".join(lines).rstrip("\n") + "\n"
