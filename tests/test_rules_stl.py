"""STL: staleness and end of life (as-of 2026-11-15 unless a test says otherwise)."""

import json

from tests.builders import definition, gallery, gallery_ref, version, vm, vmss

BASE = [gallery(), definition()]


def test_stl001_triggers_on_version_past_end_of_life(run_rule):
    findings = run_rule("STL001", *BASE, version(end_of_life="2026-11-14T00:00:00Z"),
                        vm("a", image=gallery_ref()))
    assert findings.iloc[0]["message"] == (
        "a uses an image past its end of life: version base/1.0.0 (2026-11-14).")


def test_stl001_triggers_on_definition_past_end_of_life(run_rule):
    findings = run_rule("STL001", gallery(), definition(endOfLifeDate="2026-01-01T00:00:00Z"),
                        version(), vmss("s", image=gallery_ref("base", None)),
                        vm("b", image=gallery_ref("base", "0.1.0")))
    assert sorted(findings["resource_name"]) == ["b", "s"]
    assert "definition base (2026-01-01)" in findings.iloc[0]["message"]


def test_stl001_pass_before_end_of_life(run_rule):
    assert run_rule("STL001", *BASE, version(end_of_life="2026-11-15T00:00:00Z"),
                    version("0.9.0", end_of_life="2020-01-01T00:00:00Z"),
                    vm("a", image=gallery_ref()), vm("b")).empty


def test_stl001_follows_as_of(run_rule):
    resources = [*BASE, version(end_of_life="2027-01-01T00:00:00Z"), vm("a", image=gallery_ref())]
    assert run_rule("STL001", *resources).empty
    assert len(run_rule("STL001", *resources, as_of="2027-02-01")) == 1


def test_stl002_triggers_when_newest_version_is_old(run_rule):
    findings = run_rule("STL002", *BASE, version("1.0.0", published="2026-01-01T00:00:00Z"),
                        version("1.1.0", published="2026-08-01T00:00:00Z"),
                        version("1.2.0", published="2026-11-01T00:00:00Z", state="Failed"))
    assert "has not had a new version for 106 days" in findings.iloc[0]["message"]
    assert "limit 90" in findings.iloc[0]["message"]


def test_stl002_pass_recent_or_empty(run_rule):
    assert run_rule("STL002", *BASE, definition("empty"),
                    version("1.0.0", published="2025-01-01T00:00:00Z"),
                    version("1.1.0", published="2026-09-01T00:00:00Z")).empty


def test_stl003_triggers_on_old_version(run_rule):
    findings = run_rule("STL003", *BASE, version(published="2026-05-01T00:00:00Z"),
                        vm("a", image=gallery_ref()))
    assert findings.iloc[0]["message"] == (
        "a runs image version base/1.0.0, published 2026-05-01 (198 days before the as-of date).")


def test_stl003_triggers_on_versions_behind_compared_as_numbers(run_rule):
    findings = run_rule("STL003", *BASE, version("1.9.0"), version("1.10.0"), version("1.11.0"),
                        version("1.12.0", state="Failed"), vm("a", image=gallery_ref("base", "1.9.0")),
                        vm("b", image=gallery_ref("base", "1.10.0")))
    assert list(findings["resource_name"]) == ["a"]
    evidence = json.loads(findings.iloc[0]["evidence"])
    assert evidence["versions_behind"] == 2 and evidence["latest_version"] == "1.11.0"


def test_stl003_pass_recent_and_close(run_rule):
    assert run_rule("STL003", *BASE, version("1.0.0"), version("1.1.0"),
                    version("1.2.0", exclude_from_latest=True),
                    vm("a", image=gallery_ref("base", "1.0.0")),
                    vm("b", image=gallery_ref("base", None))).empty


def test_stl003_configured_params(run_rule):
    findings = run_rule("STL003", *BASE, version("1.0.0"), version("1.1.0"),
                        vm("a", image=gallery_ref("base", "1.0.0")),
                        params={"max_versions_behind": 1, "max_age_days": 5})
    assert "published 2026-11-01" in findings.iloc[0]["message"]
    assert "and 1 versions behind the latest, 1.1.0" in findings.iloc[0]["message"]


def test_stl004_triggers_within_warning(run_rule):
    findings = run_rule("STL004", *BASE, version(end_of_life="2026-12-01T00:00:00Z"),
                        vm("a", image=gallery_ref()))
    assert "within 30 days: version base/1.0.0 (2026-12-01)" in findings.iloc[0]["message"]


def test_stl004_pass_far_or_past(run_rule):
    assert run_rule("STL004", *BASE, version("1.0.0", end_of_life="2026-12-15T00:00:00Z"),
                    version("0.9.0", end_of_life="2026-11-01T00:00:00Z"),
                    vm("a", image=gallery_ref("base", "1.0.0")),
                    vm("b", image=gallery_ref("base", "0.9.0"))).empty


def test_stl005_triggers_without_end_of_life(run_rule):
    findings = run_rule("STL005", *BASE, version(end_of_life=None))
    assert findings.iloc[0]["message"].startswith("Image version base/1.0.0 has no end-of-life date")


def test_stl005_pass_with_end_of_life(run_rule):
    assert run_rule("STL005", *BASE, version()).empty


def test_stl006_triggers_when_latest_gives_an_end_of_life_version(run_rule):
    findings = run_rule("STL006", *BASE, version("1.0.0"),
                        version("1.1.0", end_of_life="2026-10-01T00:00:00Z",
                                regions=(("West Europe", 1, "Standard_LRS"),
                                         ("North Europe", 1, "Standard_LRS"))))
    assert findings.iloc[0]["message"] == (
        "Image definition base: `latest` gives 1.1.0 (end of life 2026-10-01) in northeurope, "
        "westeurope; every new deployment from `latest` there gets an end-of-life image.")


def test_stl006_follows_what_latest_serves_in_each_region(run_rule):
    excluded_here = version("1.1.0", end_of_life="2026-10-01T00:00:00Z",
                            regions=(("West Europe", 1, "Standard_LRS"),
                                     ("North Europe", 1, "Standard_LRS")))
    excluded_here["properties"]["publishingProfile"]["targetRegions"][0][
        "excludeFromLatest"] = True
    findings = run_rule("STL006", *BASE, version("1.0.0"), excluded_here)
    assert "1.1.0 (end of life 2026-10-01) in northeurope;" in findings.iloc[0]["message"]


def test_stl006_pass_when_latest_is_supported(run_rule):
    # The end-of-life version is excluded from latest, failed, or older than a good one.
    assert run_rule("STL006", *BASE, version("1.0.0"),
                    version("1.1.0", end_of_life="2026-10-01T00:00:00Z", exclude_from_latest=True),
                    version("1.2.0", end_of_life="2026-10-01T00:00:00Z", state="Failed"),
                    version("0.9.0", end_of_life="2026-01-01T00:00:00Z")).empty


# --- STL007: scale-set instances drift from the model ----------------------------------------

def instance_rows(name: str) -> list[dict]:
    from pathlib import Path
    path = Path(__file__).parent / "fixtures" / "azure" / name
    return json.loads(path.read_text(encoding="utf-8"))["resources"]


def test_stl007_triggers_on_instances_behind_latest_with_counts_per_version(run_rule):
    findings = run_rule("STL007", *BASE, version("1.9.0"), version("1.10.0"),
                        *instance_rows("resource_graph_vmss_instances_model_view.json"))
    assert list(findings["resource_name"]) == ["ss-drift"]
    assert findings.iloc[0]["message"] == (
        "ss-drift: 1 of 3 instances run another version than the model gives (1.10.0) or have "
        "not applied the latest model; instances per version: 1.10.0: 2, 1.9.0: 1.")


def test_stl007_triggers_on_latest_model_not_applied_alone(run_rule):
    rows = instance_rows("resource_graph_vmss_instances_model_view.json")
    rows[3]["properties"]["storageProfile"]["imageReference"]["exactVersion"] = "1.10.0"
    findings = run_rule("STL007", *BASE, version("1.9.0"), version("1.10.0"), *rows)
    assert "1 of 3" in findings.iloc[0]["message"] and "1.10.0: 3" in findings.iloc[0]["message"]


def test_stl007_pass_when_every_instance_runs_the_model(run_rule):
    rows = instance_rows("resource_graph_vmss_instances_model_view.json")[:3]
    assert run_rule("STL007", *BASE, version("1.9.0"), version("1.10.0"), *rows).empty


def test_stl007_pinned_model_compares_with_the_pinned_version(run_rule):
    rows = instance_rows("resource_graph_vmss_instances_model_view.json")
    rows[0]["properties"]["virtualMachineProfile"]["storageProfile"]["imageReference"] = \
        gallery_ref("base", "1.9.0")
    rows[3]["properties"]["latestModelApplied"] = True
    findings = run_rule("STL007", *BASE, version("1.9.0"), version("1.10.0"), *rows)
    assert "2 of 3" in findings.iloc[0]["message"] and "(1.9.0)" in findings.iloc[0]["message"]


def test_stl007_instances_without_a_recorded_version_are_unknown_not_a_pass_or_drift(run_rule):
    bare = instance_rows("resource_graph_vmss_instances_bare.json")
    assert run_rule("STL007", *BASE, version("1.10.0"), *bare).empty
    rows = instance_rows("resource_graph_vmss_instances_model_view.json") + bare[1:2]
    rows[-1] = dict(rows[-1], id=rows[-1]["id"].replace("/virtualMachines/0", "/virtualMachines/7"))
    findings = run_rule("STL007", *BASE, version("1.9.0"), version("1.10.0"), *rows)
    assert findings.iloc[0]["message"].endswith("1.10.0: 2, 1.9.0: 1, unknown: 1.")
