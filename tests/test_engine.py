"""The engine: pack validation, config validation, declarative ops, determinism."""

import textwrap

import pandas as pd
import pytest

from auditor.engine import apply_config, evaluate, load_rules, rules_dir
from auditor.errors import AuditError
from tests.builders import estate_of, marketplace, version, vm, vmss

GOOD = """
  - id: XYZ001
    name: thing-is-bad
    title: Things are good
    severity: low
    resource: machines
    condition: {column: image_kind, op: eq, value: marketplace}
    message: "{name} is bad"
    rationale: because
    remediation: fix it
    references: [https://example.invalid]
"""


def pack(tmp_path, body: str):
    (tmp_path / "x.yaml").write_text("rules:\n" + textwrap.dedent(body))
    return tmp_path


def test_shipped_pack_loads_with_well_formed_ids(rules):
    assert {"PIN001", "PIN002", "TAG001", "TAG002"} <= set(rules)
    for rule in rules.values():
        assert rule.rationale and rule.remediation and rule.references


def test_rules_dir_has_the_yaml():
    assert (rules_dir() / "pin.yaml").is_file()


def test_good_custom_pack(tmp_path):
    assert [r.id for r in load_rules(pack(tmp_path, GOOD))] == ["XYZ001"]


@pytest.mark.parametrize("edit, message", [
    (("severity: low", "severity: urgent"), "x.yaml: XYZ001: bad severity 'urgent'"),
    (("resource: machines", "resource: vms"), "x.yaml: XYZ001: unknown table 'vms'"),
    (("column: image_kind", "column: image_knd"), "unknown column 'image_knd' in table 'machines'"),
    (("op: eq", "op: equals"), "unknown op 'equals'"),
    (("title: Things are good", "titel: x"), "unknown field(s): titel"),
    (("id: XYZ001", "id: X1"), "bad id 'X1'"),
    (("name: thing-is-bad", "name: Thing Bad"), "bad name 'Thing Bad'"),
    (("value: marketplace", "value: $nope"), "undefined param '$nope'"),
    (("message: \"{name} is bad\"", "message: \"{nme} is bad\""), "unknown column or param 'nme'"),
    (("references: [https://example.invalid]", ""), "missing required field 'references'"),
])
def test_bad_rule_yaml_named(tmp_path, edit, message):
    body = textwrap.dedent(GOOD).replace(*edit)
    with pytest.raises(AuditError) as info:
        load_rules(pack(tmp_path, body))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_duplicate_id(tmp_path):
    with pytest.raises(AuditError, match="XYZ001: duplicate rule id"):
        load_rules(pack(tmp_path, GOOD + GOOD.replace("thing-is-bad", "other-thing")))


def test_invalid_yaml_names_line(tmp_path):
    (tmp_path / "x.yaml").write_text("rules:\n  - id: [unclosed\n")
    with pytest.raises(AuditError, match=r"x.yaml: invalid YAML at line \d+"):
        load_rules(tmp_path)


def test_python_check_must_exist(tmp_path):
    body = GOOD.replace("condition: {column: image_kind, op: eq, value: marketplace}",
                        "python: auditor.checks.tag:no_such_function")
    with pytest.raises(AuditError, match="is not a function"):
        load_rules(pack(tmp_path, body))


def test_python_check_outside_checks_package_refused(tmp_path):
    body = GOOD.replace("condition: {column: image_kind, op: eq, value: marketplace}",
                        "python: os:system")
    with pytest.raises(AuditError, match="must name auditor.checks"):
        load_rules(pack(tmp_path, body))


@pytest.mark.parametrize("config, message", [
    ({"rulez": {}}, "unknown key(s): rulez"),
    ({"rules": {"NOPE001": {}}}, "rules.NOPE001: unknown rule id"),
    ({"rules": {"PIN001": {"enabld": False}}}, "rules.PIN001: unknown key(s): enabld"),
    ({"rules": {"PIN001": {"severity": "huge"}}}, "rules.PIN001.severity: bad value 'huge'"),
    ({"rules": {"PIN001": {"enabled": "no"}}}, "rules.PIN001.enabled: must be true or false"),
    ({"rules": {"TAG001": {"params": {"tags": []}}}}, "rules.TAG001.params.tags: unknown param"),
    ({"rules": {"TAG001": {"params": {"required_tags": "team"}}}},
     "rules.TAG001.params.required_tags: expected a list"),
])
def test_bad_config_named(rules, config, message):
    with pytest.raises(AuditError) as info:
        apply_config(list(rules.values()), config, where="image-audit.yaml")
    assert str(info.value).startswith("image-audit.yaml: ")
    assert message in str(info.value)


def test_config_applies(rules):
    configured = {r.id: r for r in apply_config(list(rules.values()), {"rules": {
        "PIN001": {"enabled": False}, "TAG001": {"severity": "high",
                                                 "params": {"required_tags": ["owner"]}}}})}
    assert configured["PIN001"].enabled is False
    assert configured["TAG001"].severity == "high"
    assert configured["TAG001"].params["required_tags"] == ["owner"]
    assert rules["TAG001"].params["required_tags"] != ["owner"]  # the pack itself is untouched


def test_ops_vectorised(tmp_path):
    body = GOOD.replace("condition: {column: image_kind, op: eq, value: marketplace}",
                        "condition: {column: published_date, op: older-than-days, value: 90}"
                        ).replace("resource: machines", "resource: image_versions")
    rule = load_rules(pack(tmp_path, body))[0]
    estate = estate_of(version("1.0.0", published="2026-01-01T00:00:00Z"),
                       version("1.1.0", published="2026-11-01T00:00:00Z"))
    findings = evaluate(estate, [rule])
    assert list(findings["resource_name"]) == ["1.0.0"]


def test_tag_columns_in_conditions(tmp_path):
    body = GOOD.replace("condition: {column: image_kind, op: eq, value: marketplace}",
                        "condition: {column: 'tag:Environment', op: eq, value: prod, "
                        "ignore_case: true}")
    rule = load_rules(pack(tmp_path, body))[0]
    estate = estate_of(vm("a", tags={"ENVIRONMENT": "PROD"}), vm("b"))
    assert list(evaluate(estate, [rule])["resource_name"]) == ["a"]


def test_findings_deterministic_and_ordered(rules):
    resources = [vmss(f"vm{i}", image=marketplace("latest")) for i in range(5)] + [
        vm("t", tags={"environment": "Prd"})]
    first = evaluate(estate_of(*resources), list(rules.values()))
    second = evaluate(estate_of(*reversed(resources)), list(rules.values()))
    pd.testing.assert_frame_equal(first, second)
    assert list(first["severity"]) == ["high"] * 5 + ["low"]


def test_per_region_rule_must_return_regions(tmp_path):
    body = GOOD.replace("condition: {column: image_kind, op: eq, value: marketplace}",
                        "python: auditor.checks.tag:missing_required_tags\n"
                        "    per_region: true\n    params: {required_tags: [team]}"
                        ).replace("resource: machines", "resource: galleries")
    rule = load_rules(pack(tmp_path, body))[0]
    from tests.builders import gallery
    with pytest.raises(AuditError, match="XYZ001: per_region rule's check .* without a 'region'"):
        evaluate(estate_of(gallery(tags={})), [rule])
