"""TAG: required tags and allowed values."""

from tests.builders import GOOD_TAGS, definition, gallery, managed_image, version, vm


def test_tag001_lists_every_missing_tag(run_rule):
    findings = run_rule("TAG001", gallery(tags={"team": "platform"}))
    assert len(findings) == 1
    assert "created, environment" in findings.iloc[0]["message"]
    assert findings.iloc[0]["resource_type"] == "Microsoft.Compute/galleries"


def test_tag001_each_image_table(run_rule):
    findings = run_rule("TAG001", gallery(tags={}), definition(tags={}), version(tags={}),
                        managed_image(tags={}))
    assert sorted(findings["resource_type"].str.rsplit("/", n=1).str[-1]) == [
        "galleries", "images", "images", "versions"]
    assert "base/1.0.0" in set(findings["resource_name"])


def test_tag001_names_compare_case_insensitively(run_rule):
    tags = {"Environment": "production", "TEAM": "platform", "Created": "2026-01-01"}
    assert run_rule("TAG001", gallery(tags=tags)).empty


def test_tag001_empty_value_counts_as_missing(run_rule):
    findings = run_rule("TAG001", gallery(tags=GOOD_TAGS | {"team": "  "}))
    assert "team" in findings.iloc[0]["message"]


def test_tag001_configured_tags(run_rule):
    findings = run_rule("TAG001", gallery(), params={"required_tags": ["cost-center"]})
    assert "cost-center" in findings.iloc[0]["message"]


def test_tag001_pass(run_rule):
    assert run_rule("TAG001", gallery(), definition(), version(), managed_image()).empty


def test_tag001_ignores_machines(run_rule):
    assert run_rule("TAG001", vm(tags={})).empty


def test_tag002_value_outside_allowed_set(run_rule):
    findings = run_rule("TAG002", vm(tags={"environment": "Prd"}),
                        definition(tags=GOOD_TAGS | {"Environment": "live"}))
    assert sorted(findings["resource_name"]) == ["base", "vm1"]
    assert "environment='Prd'" in " ".join(findings["message"])


def test_tag002_values_compare_case_insensitively(run_rule):
    assert run_rule("TAG002", vm(tags={"environment": "PRODUCTION"}), gallery()).empty


def test_tag002_configured_allowed_values(run_rule):
    findings = run_rule("TAG002", vm(tags={"tier": "gold"}),
                        params={"allowed_values": {"tier": ["silver"]}})
    assert len(findings) == 1


def test_tag002_judges_each_value_once_whatever_the_config_repeats(run_rule):
    findings = run_rule("TAG002", vm("a", tags={"tier": "gold"}), vm("b", tags={"tier": "Silver"}),
                        vm("c", tags={"Tier": "bronze"}), vm("d", tags={"tier": "gold"}),
                        params={"allowed_values": {"tier": ["silver", "Silver", "gold"]}})
    assert sorted(findings["resource_name"]) == ["c"]


def test_tag001_created_not_required_on_versions(run_rule):
    no_created = {k: v for k, v in GOOD_TAGS.items() if k != "created"}
    findings = run_rule("TAG001", definition(tags=no_created), version(tags=no_created))
    assert list(findings["resource_name"]) == ["base"]
    assert findings.iloc[0]["resource_type"] == "Microsoft.Compute/galleries/images"


def test_tag001_versions_still_need_the_other_tags(run_rule):
    findings = run_rule("TAG001", version(tags={"created": "2026-01-01"}))
    assert "lacks required tag(s): environment, team." in findings.iloc[0]["message"]


def test_tag001_versions_need_created_when_configured(run_rule):
    findings = run_rule("TAG001", version(tags={"environment": "production", "team": "x"}),
                        params={"not_required_on_versions": []})
    assert "created" in findings.iloc[0]["message"]


def test_tag002_prod_is_allowed_as_every_production_rule_reads_it(run_rule):
    assert run_rule("TAG002", vm(tags={"environment": "prod"}),
                    definition(tags=GOOD_TAGS | {"Environment": "Prod"})).empty


def test_production_values_are_one_list_and_allowed_by_tag002(rules):
    """`prod` means production in every rule: each rule's production_values default is the
    same list, and TAG002 allows every value of it."""
    lists = {rule_id: sorted(v.lower() for v in rule.params["production_values"])
             for rule_id, rule in rules.items() if "production_values" in rule.params}
    assert "ENV001" in lists and len({tuple(v) for v in lists.values()}) == 1, lists
    allowed = {v.lower() for v in rules["TAG002"].params["allowed_values"]["environment"]}
    assert set(lists["ENV001"]) == {"production", "prod"} and set(lists["ENV001"]) <= allowed
