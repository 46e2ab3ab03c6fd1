"""RET: retention (as-of 2026-11-15)."""

import json

import pytest

from auditor.errors import AuditError
from tests.builders import (
    GOOD_TAGS,
    RG,
    SUB,
    azure_shape,
    definition,
    gallery,
    gallery_ref,
    managed_image,
    rid,
    version,
    vm,
)

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


# --- versions that must not be deleted: shared beyond the audit, or in flight ---------------

OK_SCOPE = [{"subscription_id": SUB, "display_name": "images", "status": "ok", "detail": ""}]


def sharing(name, **profile):
    """The builder's gallery with a sharingProfile (Resource Graph row shape)."""
    return gallery() | {"properties": {"sharingProfile": {"permissions": name, **profile}}}


def role_assignment(scope, principal="5c1d2e3f-0000-4000-8000-00000000aaaa", name="r1"):
    item = azure_shape("role_assignment_gallery.json")
    item["id"] = scope + "/providers/Microsoft.Authorization/roleAssignments/" + name
    item["properties"] = dict(item["properties"], scope=scope, principalId=principal)
    return item


def test_ret001_does_not_flag_versions_of_a_community_gallery(run_rule):
    community = azure_shape("gallery_community.json")
    assert run_rule("RET001", community, definition(), *versions(7), scope=OK_SCOPE).empty
    findings = run_rule("RET001", community, definition(), *versions(7), scope=OK_SCOPE,
                        params={"consumers_in_scope": ["*/galleries/gal"]})
    assert sorted(findings["resource_name"]) == ["base/1.0.0", "base/1.1.0"]


def test_ret001_direct_sharing_holds_unless_every_group_is_audited(run_rule):
    unread = azure_shape("gallery_groups_row.json")  # Resource Graph leaves the groups out
    assert run_rule("RET001", unread, definition(), *versions(7), scope=OK_SCOPE).empty
    expanded = azure_shape("gallery_groups_expanded.json")  # a tenant and another subscription
    assert run_rule("RET001", expanded, definition(), *versions(7), scope=OK_SCOPE).empty
    inside = sharing("Groups", groups=[{"type": "Subscriptions", "ids": [SUB.upper()]}])
    findings = run_rule("RET001", inside, definition(), *versions(7), scope=OK_SCOPE)
    assert len(findings) == 2


def test_ret001_private_gallery_is_judged_as_before(run_rule):
    findings = run_rule("RET001", sharing("Private"), definition(), *versions(7), scope=OK_SCOPE)
    assert len(findings) == 2


def test_ret001_role_assignment_on_the_gallery_or_below_holds(run_rule):
    for scope in (rid("galleries", "gal"), rid("galleries", "gal", "images", "base").upper()):
        assert run_rule("RET001", *BASE, *versions(7), role_assignment(scope)).empty
    listed = run_rule("RET001", *BASE, *versions(7), role_assignment(rid("galleries", "gal")),
                      params={"principals_in_scope": ["5C1D2E3F-0000-4000-8000-00000000AAAA"]})
    assert len(listed) == 2


def test_ret001_role_assignments_above_the_gallery_count_only_when_asked(run_rule):
    group = f"/subscriptions/{SUB}/resourceGroups/{RG}"
    other_gallery = rid("galleries", "other")
    resources = [*BASE, *versions(7), role_assignment(group), role_assignment(other_gallery, name="r2")]
    assert len(run_rule("RET001", *resources)) == 2
    assert run_rule("RET001", *resources, params={"rbac_scopes": ["gallery", "resource_group"]}).empty
    subscription = [*BASE, *versions(7), role_assignment(f"/subscriptions/{SUB}")]
    assert run_rule("RET001", *subscription, params={"rbac_scopes": ["subscription"]}).empty


def test_ret001_a_bad_rbac_scope_is_an_error(run_rule):
    with pytest.raises(AuditError, match="rbac_scopes: unknown scope 'tenant'"):
        run_rule("RET001", *BASE, *versions(7), params={"rbac_scopes": ["tenant"]})


def test_ret001_subscription_not_read_holds_its_galleries(run_rule):
    denied = [{"subscription_id": SUB, "display_name": "images", "status": "failed",
               "detail": "role_assignments: 500 (gave up after 6 attempts)"}]
    assert run_rule("RET001", *BASE, *versions(7), scope=denied).empty


def test_ret001_never_flags_a_version_in_flight(run_rule):
    updating = azure_shape("gallery_version_updating.json")  # 1.0.0, a region being added
    creating = version("1.1.0", published=OLD, state="Creating")
    rest = [version(f"1.{n}.0", published=OLD) for n in range(2, 8)]
    findings = run_rule("RET001", *BASE, updating, creating, *rest)
    assert list(findings["resource_name"]) == ["base/1.2.0"]


def test_ret001_a_failed_version_is_judged_like_any_other(run_rule):
    failed = version("1.0.0", published=OLD, state="Failed")
    findings = run_rule("RET001", *BASE, failed, *versions(6)[1:])
    assert list(findings["resource_name"]) == ["base/1.0.0"]


@pytest.mark.parametrize("shape", ["gallery_version_2018-06-01.json",
                                   "gallery_version_2019-03-01.json",
                                   "gallery_version_2018-06-01-preview.json"])
def test_ret002_keeps_the_managed_image_an_old_version_was_built_from(run_rule, shape):
    item = azure_shape(shape)
    source = item["properties"]["publishingProfile"]["source"]["managedImage"]["id"]
    image = managed_image(source.rsplit("/", 1)[-1])
    assert run_rule("RET002", *BASE, item, image).empty
    assert len(run_rule("RET002", *BASE, image)) == 1  # without the version it is unused


def test_ret002_keeps_the_snapshot_shape_apart(run_rule):
    item = azure_shape("gallery_version_snapshot_source.json")  # built from a snapshot
    assert len(run_rule("RET002", *BASE, item, managed_image("img-1.0.0"))) == 1


def test_ret001_a_version_without_a_provisioning_state_is_not_flagged(run_rule):
    unknown = version("1.0.0", published=OLD)
    del unknown["properties"]["provisioningState"]
    findings = run_rule("RET001", *BASE, unknown, *versions(7)[1:])
    assert list(findings["resource_name"]) == ["base/1.1.0"]


def test_ret001_never_flags_a_version_still_replicating(run_rule):
    """As `collect --deep` reads it (GET with $expand=ReplicationStatus)."""
    copying = version("1.0.0", published=OLD)
    copying["properties"]["replicationStatus"] = {"aggregatedState": "InProgress", "summary": [
        {"region": "West Europe", "state": "Completed", "details": "", "progress": 100},
        {"region": "Sweden Central", "state": "Replicating", "details": "", "progress": 40}]}
    findings = run_rule("RET001", *BASE, copying, *versions(7)[1:])
    assert list(findings["resource_name"]) == ["base/1.1.0"]


def test_ret001_holds_every_version_under_latest_users_that_record_none(run_rule):
    """A Uniform scale set on `latest` has no OS disk resource per instance: what its
    instances run is unknown, so no version of the definition is flagged."""
    from tests.builders import disk, vmss
    floating = vmss("vmss-latest", image=gallery_ref(version_name=None), capacity=4)
    assert run_rule("RET001", *BASE, *versions(7), floating).empty
    # A VM on `latest` whose OS disk records the version it was created from is known:
    # the old versions are flagged as before.
    machine = vm("vm-latest", image=gallery_ref(version_name=None))
    known = run_rule("RET001", *BASE, *versions(7), machine,
                     disk(machine, versions(7)[6]["id"]))
    assert sorted(known["resource_name"]) == ["base/1.0.0", "base/1.1.0"]
