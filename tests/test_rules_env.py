"""ENV: environment separation."""

import json

import pytest

from tests.builders import GOOD_TAGS, definition, gallery, gallery_ref, managed_image, rid, version, vm

DEV = GOOD_TAGS | {"environment": "dev"}


def test_env001_triggers_on_dev_definition(run_rule):
    findings = run_rule("ENV001", gallery(), definition(tags=DEV), version(),
                        vm("a", image=gallery_ref()))
    assert findings.iloc[0]["message"] == (
        "Production machine a uses image definition base (environment=dev).")


def test_env001_triggers_on_dev_gallery_and_managed_image(run_rule):
    findings = run_rule("ENV001", gallery(tags=DEV), definition(), version(),
                        vm("a", image=gallery_ref("base", None)),
                        managed_image("img-1.0.0", tags=DEV),
                        vm("b", image={"id": rid("images", "img-1.0.0")}, tags={"environment": "Prod"}))
    assert sorted(findings["resource_name"]) == ["a", "b"]
    assert "gallery gal (environment=dev)" in " ".join(findings["message"])


@pytest.mark.parametrize("machine_env", ["dev", "staging"])
def test_env001_pass_non_production_machine(run_rule, machine_env):
    assert run_rule("ENV001", gallery(), definition(tags=DEV), version(),
                    vm("a", image=gallery_ref(), tags={"environment": machine_env})).empty


def test_env001_pass_production_images_any_spelling(run_rule):
    assert run_rule("ENV001", gallery(tags=GOOD_TAGS | {"environment": "PROD"}),
                    definition(tags={"team": "x"}), version(), vm("a", image=gallery_ref())).empty


def test_env001_configured_production_values(run_rule):
    findings = run_rule("ENV001", gallery(), definition(tags=GOOD_TAGS | {"environment": "prod"}),
                        version(), vm("a", image=gallery_ref(), tags={"environment": "live"}),
                        params={"production_values": ["live"]})
    assert len(findings) == 1 and "gallery gal" in findings.iloc[0]["message"]


# --- ENV002 ----------------------------------------------------------------------------------

def test_env002_triggers_on_production_and_dev_definitions_in_one_gallery(run_rule):
    findings = run_rule("ENV002", gallery(), definition(), definition("dev-base", tags=DEV),
                        version(), version(definition_name="dev-base", tags=DEV))
    assert findings.iloc[0]["message"] == (
        "Gallery gal holds 2 production and 2 non-production (dev) image definitions or versions.")


def test_env002_triggers_on_a_test_version_of_a_production_definition(run_rule):
    findings = run_rule("ENV002", gallery(), definition(), version(),
                        version("1.1.0", tags={"Environment": "Test"}))
    assert json.loads(findings.iloc[0]["evidence"])["non_production_environments"] == "Test"


def test_env002_pass_separate_galleries_and_untagged(run_rule):
    assert run_rule("ENV002", gallery(), definition(), version(), gallery("gal-dev", tags=DEV),
                    definition("base", gallery_name="gal-dev", tags=DEV),
                    version(gallery_name="gal-dev", tags=DEV)).empty
    assert run_rule("ENV002", gallery(), definition(), version("1.1.0", tags={})).empty
