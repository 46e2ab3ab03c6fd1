"""Meta-tests over the shipped rule pack: well-formed, documented, and every rule tested
both ways."""

import re
from pathlib import Path

import pytest

from auditor.engine import RULE_ID, RULE_NAME, evaluate, load_rules, table_columns
from tests.builders import definition, estate_of, gallery, gallery_ref, managed_image, version, vm

TESTS = Path(__file__).resolve().parent
PACK = load_rules()
# Families whose remediation can only be a change outside Azure's CLI have none listed here.
NO_AZ_COMMAND: set[str] = set()


def test_ids_and_names_unique_and_well_formed():
    ids = [rule.id for rule in PACK]
    names = [rule.name for rule in PACK]
    assert len(ids) == len(set(ids)) and len(names) == len(set(names))
    for rule in PACK:
        assert RULE_ID.match(rule.id) and RULE_NAME.match(rule.name), rule.id
        assert rule.file == f"{rule.family.lower()}.yaml", f"{rule.id} is in {rule.file}"


def test_one_file_per_family():
    files = {rule.file for rule in PACK}
    assert files >= {f"{family}.yaml" for family in
                     ["gen", "rep", "stl", "ret", "lic", "leg", "env", "apr", "ver", "cov"]}


@pytest.mark.parametrize("rule", PACK, ids=lambda r: r.id)
def test_rule_is_documented(rule):
    assert len(rule.rationale) > 80 and rule.title and rule.message
    assert rule.references and all(ref.startswith("https://") for ref in rule.references)
    if rule.family not in NO_AZ_COMMAND:
        assert "`az " in rule.remediation, f"{rule.id}: remediation needs an `az` command"


@pytest.mark.parametrize("rule", [r for r in PACK if r.condition is not None], ids=lambda r: r.id)
def test_declarative_columns_exist(rule):
    columns = set(table_columns(rule.tables[0]))
    for name in rule.evidence:
        assert name in columns or name.startswith("tag:"), f"{rule.id}: {name}"


def _test_functions() -> dict[str, str]:
    """Every test function's name and source, across the rule test modules."""
    out = {}
    for path in TESTS.glob("test_rules_*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^def (test_\w+)\(.*?(?=^def |\Z)", text, re.M | re.S):
            out[match.group(1)] = match.group(0)
    return out


@pytest.mark.parametrize("rule", PACK, ids=lambda r: r.id)
def test_every_rule_has_a_triggering_and_a_passing_test(rule):
    """A passing test asserts an empty result; a triggering test inspects the findings."""
    mine = [body for name, body in _test_functions().items()
            if name.startswith(f"test_{rule.id.lower()}_") or f'"{rule.id}"' in body]
    passing = [b for b in mine if re.search(r"\.empty\b", b)]
    triggering = [b for b in mine if re.search(r"\bfindings\b|len\(run_rule", b)]
    assert passing, f"{rule.id}: no test asserts that it does not fire"
    assert triggering, f"{rule.id}: no test shows it firing"


def test_python_checks_resolve():
    for rule in PACK:
        if rule.python:
            assert callable(rule.check()), rule.id


@pytest.mark.parametrize("resources", [
    [], [vm()], [gallery()], [gallery(), definition()], [managed_image()],
    [vm(image=gallery_ref())], [gallery(), definition(), version()],
], ids=["empty", "vm", "gallery", "definition", "managed-image", "dangling-ref", "version"])
def test_every_rule_runs_on_sparse_estates(rules, resources):
    enabled = [type(r)(**{**r.__dict__, "enabled": True}) for r in rules.values()]
    apr = next(r for r in enabled if r.id == "APR001")
    apr.params = {"approved": {"marketplace": ["*"]}}
    findings = evaluate(estate_of(*resources), enabled)
    assert set(findings.columns) >= {"rule_id", "fingerprint"}
