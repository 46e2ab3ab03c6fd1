"""The rule reference: generated from the YAML, committed as docs/rules.md, never drifting."""

import re
import textwrap
from pathlib import Path

import pytest

from auditor.cli import main
from auditor.docs import rules_markdown
from auditor.engine import load_rules

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ["### What it flags", "### Why it matters", "### How to fix", "### Params",
            "### References"]


def test_committed_docs_match_the_rule_pack():
    committed = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert committed == rules_markdown(load_rules()), (
        "docs/rules.md is out of date with rules/*.yaml; run: image-audit rules docs -o docs/rules.md")


def test_every_rule_has_every_section_in_order(rules):
    markdown = rules_markdown(list(rules.values()))
    chunks = re.split(r"^## ", markdown, flags=re.MULTILINE)[1:]
    assert [chunk.split()[0] for chunk in chunks] == sorted(rules)
    for chunk, rule in zip(chunks, sorted(rules.values(), key=lambda r: r.id), strict=True):
        positions = [chunk.index(section) for section in SECTIONS]
        assert positions == sorted(positions), rule.id
        assert f"- Severity: {rule.severity}" in chunk and rule.rationale in chunk
        assert rule.remediation in chunk
        assert all(f"- <{reference}>" in chunk for reference in rule.references)
        for name in rule.params:
            assert f"| `{name}` |" in chunk


def test_index_links_to_each_section(rules):
    markdown = rules_markdown(list(rules.values()))
    for rule in rules.values():
        assert f"[{rule.id}](#{rule.id.lower()}-{rule.name})" in markdown
        assert f"\n## {rule.id} {rule.name}\n" in markdown


def test_conditions_params_and_checks_are_described(tmp_path):
    (tmp_path / "x.yaml").write_text(textwrap.dedent("""\
        rules:
          - id: XYZ001
            name: thing-is-bad
            title: Things are good | always
            severity: low
            resource: machines
            params: {days: 30, names: [a, b]}
            condition:
              any:
                - {column: image_version, op: eq, value: latest, ignore_case: true}
                - not: {column: name, op: in, value: $names}
                - {column: image_sku, op: missing}
            message: "{name} is bad"
            rationale: because
            remediation: fix it
            references: [https://example.invalid/a]
          - id: XYZ002
            name: other-thing-is-bad
            title: Other things are good
            severity: info
            enabled: false
            resource: [galleries, managed_images]
            python: auditor.checks.tag:missing_required_tags
            params: {required_tags: [team]}
            message: "{name} lacks {missing_tags}"
            rationale: because
            remediation: fix it
            references: [https://example.invalid/b]
        """))
    markdown = rules_markdown(load_rules(tmp_path))
    assert textwrap.dedent("""\
        Flags rows of `machines` where:

        - any of:
          - `image_version` is `latest` (ignoring case)
          - not:
            - `name` is one of `$names`
          - `image_sku` is missing or empty

        Message template: `{name} is bad`
        """) in markdown
    assert "| `days` | `30` |\n| `names` | `[a, b]` |" in markdown
    assert "| Things are good &#124; always |" in markdown
    assert ("Checks `galleries`, `managed_images` with `auditor.checks.tag:missing_required_tags`:"
            " One row per image resource lacking any required tag") in markdown
    assert "- State: off by default" in markdown


def test_cli_writes_or_prints_the_docs(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["rules", "docs", "-o", str(tmp_path / "docs" / "rules.md")])
    assert info.value.code == 0
    written = (tmp_path / "docs" / "rules.md").read_text(encoding="utf-8")
    assert written == rules_markdown(load_rules())
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["rules", "docs"])
    assert capsys.readouterr().out == written
