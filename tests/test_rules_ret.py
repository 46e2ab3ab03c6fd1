"""RET: retention (as-of 2026-11-15)."""

import json

from tests.builders import GOOD_TAGS, definition, gallery, gallery_ref, managed_image, rid, version, vm

BASE = [gallery(), definition()]
OLD = "2026-01-01T00:00:00Z"


def versions(count, published=OLD, **extra):
    return [version(f"1.{n}.0", published=published, **extra) for n in range(count)]


def test_ret001_triggers_beyond_keep_versions(run_rule):
    findings = run_rule("RET001", *BASE, *versions(7))
    assert sorted(findings["resource_name"]) == ["base/1.0.0", "base/1.1.0"]
    evidence = json.loads(findings.iloc[0]["evidence"])
    assert evidence["size_gb"] == 30 and evidence["replicas"] == 1
    assert evidence["replica_regions"] == 1 and evidence["version_count"] == 7
    assert "beyond the newest 5 versions of its definition (7 in all)" in findings.iloc[0]["message"]


def test_ret001_failed_builds_do_not_push_good_versions_out(run_rule):
    failed = [version(f"2.{n}.0", published=OLD, state="Failed") for n in range(3)]
    findings = run_rule("RET001", *BASE, *versions(6), *failed)
    assert sorted(findings["resource_name"]) == [
        "base/1.0.0", "base/2.0.0", "base/2.1.0", "base/2.2.0"]


def test_ret001_keeps_used_young_and_retained(run_rule):
    resources = versions(6)
    resources[0]["properties"]["publishingProfile"]["publishedDate"] = "2026-11-01T00:00:00Z"
    resources.append(version("0.9.0", published=OLD, tags=GOOD_TAGS | {"Retain": "TRUE"}))
    resources.append(version("0.8.0", published=OLD))
    findings = run_rule("RET001", *BASE, *resources, vm("a", image=gallery_ref("base", "0.8.0")))
    assert findings.empty


def test_ret001_numeric_order_and_params(run_rule):
    names = ["1.9.0", "1.10.0", "1.11.0"]
    resources = [version(n, published=OLD) for n in names]
    findings = run_rule("RET001", *BASE, *resources,
                        params={"keep_versions": 2, "min_age_days": 10})
    assert list(findings["resource_name"]) == ["base/1.9.0"]


def test_ret001_pass_within_keep(run_rule):
    assert run_rule("RET001", *BASE, *versions(5)).empty


def test_ret002_triggers_on_unused_managed_image(run_rule):
    findings = run_rule("RET002", managed_image("img-1.0.0"))
    assert "img-1.0.0 is used by no machine" in findings.iloc[0]["message"]
    assert json.loads(findings.iloc[0]["evidence"])["size_gb"] == 30


def test_ret002_pass_used_by_machine_or_version(run_rule):
    source = version()
    source["properties"]["storageProfile"]["source"] = {"id": rid("images", "SRC-1.0.0")}
    assert run_rule("RET002", managed_image("img-1.0.0"), managed_image("src-1.0.0"), source,
                    vm("a", image={"id": rid("images", "img-1.0.0")})).empty


def test_ret003_triggers_on_empty_definition_and_gallery(run_rule):
    findings = run_rule("RET003", gallery(), gallery("empty_gal"), definition(),
                        definition("used"), version(definition_name="used"))
    messages = sorted(findings["message"])
    assert messages == ["base is an image definition with no versions.",
                        "empty_gal is a gallery with no image definitions."]


def test_ret003_pass(run_rule):
    assert run_rule("RET003", *BASE, version()).empty
