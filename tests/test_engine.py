"""The engine: pack validation, config validation, declarative ops, determinism."""

import re
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
    (("severity: low", "severity: urgent"), "x.yaml: XYZ001: severity: bad value 'urgent' (one of info"),
    (("resource: machines", "resource: vms"), "x.yaml: XYZ001: resource: bad value 'vms' (one of galleries"),
    (("column: image_kind", "column: image_knd"), "unknown column 'image_knd' in table 'machines'"),
    (("op: eq", "op: equals"), "XYZ001: condition.op: bad value 'equals' (one of eq, ne"),
    (("title: Things are good", "titel: x"), "XYZ001: titel: unknown field (known: id, name, title"),
    (("id: XYZ001", "id: X1"),
     "rule #1: id: expected a family prefix and three digits (like PIN001), got 'X1'"),
    (("name: thing-is-bad", "name: Thing Bad"),
     "XYZ001: name: expected a kebab-case name (like vm-uses-latest-image), got 'Thing Bad'"),
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
    with pytest.raises(AuditError, match="XYZ001: python: expected auditor.checks.<family>:"
                                         "<function>, got 'os:system'"):
        load_rules(pack(tmp_path, body))


@pytest.mark.parametrize("config, message", [
    ({"rulez": {}}, "image-audit.yaml: rulez: unknown key (known: include_platform_managed, rules)"),
    ({"rules": {"NOPE001": {}}}, "rules.NOPE001: unknown rule id"),
    ({"rules": {"PIN001": {"enabld": False}}},
     "rules.PIN001.enabld: unknown key (known: enabled, severity, params)"),
    ({"rules": {"PIN001": {"severity": "huge"}}}, "rules.PIN001.severity: bad value 'huge'"),
    ({"rules": {"PIN001": {"enabled": "no"}}}, "rules.PIN001.enabled: expected true or false, got 'no'"),
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


# --- config values that passed validation and crashed later (issue 14, items 10 and 14) ----------

@pytest.mark.parametrize("config, message", [
    ({"TAG001": {"params": {"required_tags": [1, None]}}},
     "rules.TAG001.params.required_tags[0]: expected text, got 1"),
    ({"RET001": {"params": {"keep_versions": float("inf")}}},
     "rules.RET001.params.keep_versions: expected a whole number, got inf"),
    ({"RET001": {"params": {"min_age_days": float("nan")}}},
     "rules.RET001.params.min_age_days: expected a whole number, got nan"),
    ({"RET001": {"params": {"keep_versions": -1}}},
     "rules.RET001.params.keep_versions: expected a whole number >= 0, got -1"),
    ({"RET001": {"params": {"min_age_days": True}}},
     "rules.RET001.params.min_age_days: expected a whole number, got True"),
    ({"STL004": {"params": {"warning_days": 10**9}}},
     "rules.STL004.params.warning_days: expected a whole number <= 36,500, got 1000000000"),
    ({"REP002": {"params": {"min_replicas": 10**400}}},
     "rules.REP002.params.min_replicas: expected a whole number <= 1,000,000, got 1000000"),
    ({"VER001": {"params": {"version_pattern": "(("}}},
     "rules.VER001.params.version_pattern: expected a regular expression, got '(('"),
    ({"TAG002": {"params": {"allowed_values": {"environment": ["prod", 7]}}}},
     "rules.TAG002.params.allowed_values.environment[1]: expected text, got 7"),
    ({"TAG002": {"params": {"allowed_values": {"owner": "x"}}}},
     "rules.TAG002.params.allowed_values.owner: expected a list, got 'x'"),
    ({"APR001": {"params": {"approved": {"marketplce": ["x"]}}}},
     "rules.APR001.params.approved.marketplce: unknown key (known: marketplace, gallery_ids"),
    ({"RET001": {"params": {"retain_tag": ["retain"]}}},
     "rules.RET001.params.retain_tag: expected text, got ['retain']"),
    ({"TAG001": {"params": {"required_tags": ["a" * 500]}, "severity": "x" * 10**6}},
     "rules.TAG001.severity: bad value 'xxxxxxxx"),
])
def test_config_values_that_crashed_later_are_named_up_front(rules, config, message):
    with pytest.raises(AuditError) as info:
        apply_config(list(rules.values()), {"rules": config}, where="image-audit.yaml")
    text = str(info.value)
    assert text.startswith("image-audit.yaml: rules.") and message in text, text
    assert "\n" not in text and len(text) < 300


def test_params_schema_derives_from_the_yaml_defaults(tmp_path):
    """A new param needs no schema of its own: its default says what it takes."""
    body = GOOD.replace("    message:", "    params: {limit_days: 7, share: 0.5, names: [a], strict: true, "
                        "label: x, nested: {k: [v]}}\n    message:")
    rules = load_rules(pack(tmp_path, body))
    good = {"limit_days": 0, "share": 1.5, "names": [], "strict": False, "label": "", "nested": {"z": []}}
    assert apply_config(rules, {"rules": {"XYZ001": {"params": good}}})[0].params == good
    for params, message in [({"limit_days": 36_501}, "limit_days: expected a whole number <= 36,500"),
                            ({"share": float("-inf")}, "share: expected a finite number, got -inf"),
                            ({"share": -0.5}, "share: expected a finite number >= 0, got -0.5"),
                            ({"names": "a"}, "names: expected a list, got 'a'"),
                            ({"strict": "yes"}, "strict: expected true or false, got 'yes'"),
                            ({"nested": {"z": [1]}}, "nested.z[0]: expected text, got 1"),
                            ({"other": 1}, "params.other: unknown param (known: limit_days")]:
        with pytest.raises(AuditError, match=re.escape(message)):
            apply_config(rules, {"rules": {"XYZ001": {"params": params}}})


def test_a_list_default_is_the_lists_not_its_items():
    from auditor.schema import param_schema
    schema = param_schema("names", ["production", "prod"])
    assert schema["default"] == ["production", "prod"]
    assert schema["items"] == {"type": "string"}
    nested = param_schema("allowed", {"environment": ["production"]})
    assert nested["properties"]["environment"]["items"] == {"type": "string"}


def test_a_rule_can_lay_its_own_schema_over_a_param(tmp_path):
    body = GOOD.replace("    message:", "    params: {mode: fast}\n    param_schemas:\n"
                        "      mode: {enum: [fast, slow]}\n    message:")
    rules = load_rules(pack(tmp_path, body))
    with pytest.raises(AuditError, match=r"rules.XYZ001.params.mode: bad value 'quick' \(one of fast"):
        apply_config(rules, {"rules": {"XYZ001": {"params": {"mode": "quick"}}}})
    for schemas_text, message in [("      nope: {enum: [a]}\n", "param_schemas.nope: names no param"),
                                  ("      mode: {type: 7}\n", "param_schemas.mode: not a valid JSON Schema")]:
        bad = GOOD.replace("    message:", "    params: {mode: fast}\n    param_schemas:\n"
                           + schemas_text + "    message:")
        with pytest.raises(AuditError, match=message):
            load_rules(pack(tmp_path, bad))


def test_the_shipped_files_validate_against_the_printed_schemas(capsys):
    """`image-audit schema NAME` prints valid JSON Schema that the shipped pack, the sample
    config and the sample exemptions satisfy (what an editor would check while typing)."""
    import json

    import jsonschema
    import yaml

    from auditor.cli import main

    printed = {}
    for name in ("config", "rules", "exemptions"):
        with pytest.raises(SystemExit) as info:
            main(["schema", name])
        assert info.value.code == 0
        printed[name] = json.loads(capsys.readouterr().out)
        jsonschema.Draft7Validator.check_schema(printed[name])
    for path in sorted(rules_dir().glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), printed["rules"])
    from importlib.resources import files
    data = files("auditor.data")
    jsonschema.validate(yaml.safe_load(data.joinpath("sample_config.yaml").read_text()),
                        printed["config"])
    jsonschema.validate(yaml.load(data.joinpath("sample_exemptions.yaml").read_text(),
                                  Loader=yaml.BaseLoader), printed["exemptions"])
    assert set(printed["config"]["properties"]["rules"]["properties"]) == {r.id for r in load_rules()}


def test_shown_values_are_short_one_line_and_escaped():
    from auditor.errors import shown

    assert shown("x" * 10**6).endswith("...") and len(shown("x" * 10**6)) <= 80
    assert shown("\x1b[31mred\u202e\n") == "'\\x1b[31mred\\u202e\\n'"
    nested = [[["deep"] * 10**3] * 10**3] * 10**3  # a billion items by reference
    assert len(shown(nested)) <= 80 and "\n" not in shown({"k\x00": nested})


# --- random config documents: a one-line error or a run, never a traceback ---------------------

def _config_documents(rules):
    """Whole random documents, and (more often) well-formed configs that set a real param of
    a real rule to a random value: the ones that passed validation and crashed later."""
    from hypothesis import strategies as st

    keys = st.sampled_from(["rules", "enabled", "severity", "params", "environment", "marketplace",
                            "galleries", "x", "TAG001", "RET001"])
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                        st.floats(allow_nan=True, allow_infinity=True),
                        st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
                        st.sampled_from(["high", "prod", "(", ".*", "*", "\x1b[2J", "\ufffe"]))
    values = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
    params = [(rule.id, name) for rule in rules for name in rule.params]

    def config(settings):
        document = {"rules": {}}
        for (rule_id, name), value in settings:
            document["rules"].setdefault(rule_id, {"params": {}})["params"][name] = value
        return document

    return st.one_of(values, st.lists(st.tuples(st.sampled_from(params), values), min_size=1,
                                      max_size=3).map(config))


def test_random_config_documents_never_crash(rules):
    from hypothesis import HealthCheck, given, settings

    estate = estate_of(vm("a", image=marketplace("latest"), tags={"environment": "prd"}),
                       version("1.0.0", published="2020-01-01T00:00:00Z"))
    pack_rules = list(rules.values())

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_config_documents(pack_rules))
    def check(document):
        try:
            configured = apply_config(pack_rules, document, where="c.yaml")
        except AuditError as exc:
            assert str(exc).startswith("c.yaml: ") and "\n" not in str(exc) and len(str(exc)) < 400
            return
        try:
            evaluate(estate, configured)
        except AuditError as exc:  # a check's own one-line refusal (APR001 with nothing approved)
            assert "\n" not in str(exc)

    check()


def test_rule_pack_with_an_alias_bomb_is_refused(tmp_path):
    bomb = "".join(f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9) if i else 'a'}]\n" for i in range(9))
    (tmp_path / "x.yaml").write_text(bomb + "rules:\n  - {id: *x8}\n")
    with pytest.raises(AuditError, match=r"x.yaml: invalid YAML at line \d+, column \d+: aliases expand"):
        load_rules(tmp_path)
