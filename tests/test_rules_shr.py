"""SHR: who outside the organisation can deploy a gallery's images, and production machines
on images published outside it."""

import json
from pathlib import Path

from tests.builders import SUB, azure_fixture, azure_shape, definition, gallery, version, vm

CLI = Path(__file__).parent / "fixtures" / "azure" / "cli"
OK_SCOPE = [{"subscription_id": SUB, "display_name": "images", "status": "ok", "detail": ""}]
PARTNER_SUB = "99999999-8888-7777-6666-555555555555"
PARTNER_TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def test_shr001_triggers_on_a_community_gallery(run_rule):
    findings = run_rule("SHR001", azure_shape("gallery_community.json"))
    assert findings.iloc[0]["message"] == (
        "Gallery gal is shared with the community (public names: "
        "contoso-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d): every Azure customer can list and "
        "deploy its images.")
    assert findings.iloc[0]["resource_type"] == "Microsoft.Compute/galleries"


def test_shr001_pass_private_and_directly_shared_galleries(run_rule):
    assert run_rule("SHR001", gallery("private"), azure_shape("gallery_groups_expanded.json")).empty


def test_shr002_triggers_on_groups_outside_the_allow_list(run_rule):
    expanded = azure_shape("gallery_groups_expanded.json")
    findings = run_rule("SHR002", expanded, scope=OK_SCOPE)
    assert findings.iloc[0]["message"] == (
        f"Gallery gal is shared directly to subscription {PARTNER_SUB}, tenant {PARTNER_TENANT}, "
        "outside the allow list.")
    findings = run_rule("SHR002", expanded, scope=OK_SCOPE,
                        params={"allowed_tenants": [PARTNER_TENANT.upper()]})
    assert findings.iloc[0]["message"].endswith(f"subscription {PARTNER_SUB}, outside the allow list.")


def test_shr002_unread_groups_are_unknown_not_allowed(run_rule):
    findings = run_rule("SHR002", azure_shape("gallery_groups_row.json"), scope=OK_SCOPE)
    assert "its groups could not be read" in findings.iloc[0]["message"]


def test_shr002_pass_allowed_or_audited_groups(run_rule):
    expanded = azure_shape("gallery_groups_expanded.json")
    assert run_rule("SHR002", expanded, scope=OK_SCOPE,
                    params={"allowed_tenants": [PARTNER_TENANT],
                            "allowed_subscriptions": [PARTNER_SUB]}).empty
    audited = gallery() | {"properties": {"sharingProfile": {
        "permissions": "Groups", "groups": [{"type": "Subscriptions", "ids": [SUB.upper()]}]}}}
    assert run_rule("SHR002", audited, scope=OK_SCOPE).empty
    assert not run_rule("SHR002", audited, scope=OK_SCOPE,
                        params={"allow_audited_subscriptions": False}).empty
    assert run_rule("SHR002", azure_shape("gallery_community.json"), gallery("private")).empty


def test_shr003_triggers_on_community_and_foreign_shared_images(run_rule):
    community = azure_shape("vm_community_gallery_image_2024-03-01.json")
    shared = azure_shape("vm_shared_gallery_image_2024-03-01.json")
    findings = run_rule("SHR003", community, shared, scope=OK_SCOPE).set_index("resource_name")
    assert findings.loc["web-community", "message"] == (
        "Production machine web-community runs community gallery image "
        "fabrikam-0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/nginx-hardened, published outside the "
        "organisation.")
    assert findings.loc["api-shared", "message"].startswith(
        "Production machine api-shared runs directly shared gallery image "
        f"{PARTNER_SUB}-partnerimages/ubuntu-cis")


def test_shr003_pass_own_galleries_non_production_and_platform_managed(run_rule):
    community = azure_shape("vm_community_gallery_image_2024-03-01.json")
    shared = azure_shape("vm_shared_gallery_image_2024-03-01.json")
    assert run_rule("SHR003", community, shared, scope=OK_SCOPE, params={
        "own_galleries": ["FABRIKAM-0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"],
        "own_subscriptions": [PARTNER_SUB]}).empty
    test = azure_fixture("vm_community_gallery_image_2024-03-01", tags={"environment": "test"})
    assert run_rule("SHR003", test).empty
    node_pool = azure_fixture("vm_community_gallery_image_2024-03-01",
                              tags={"environment": "production", "aks-managed-poolName": "np1"})
    assert run_rule("SHR003", node_pool).empty


def test_shr003_pass_image_from_a_gallery_in_the_snapshot(run_rule):
    own = azure_shape("gallery_community.json")
    machine = vm("app", image={"communityGalleryImageId":
                               "/CommunityGalleries/contoso-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
                               "/Images/base/Versions/1.0.0"})
    assert run_rule("SHR003", own, definition(), version(), machine).empty
    assert len(run_rule("SHR003", machine)) == 1


def test_shr002_reads_az_sig_show_sharing_groups_output(run_rule):
    shown = json.loads((CLI / "az_sig_show_sharing_groups.json").read_text(encoding="utf-8"))
    findings = run_rule("SHR002", shown, scope=OK_SCOPE)
    assert findings.iloc[0]["message"] == (
        f"Gallery gal_partner is shared directly to subscription {PARTNER_SUB}, "
        f"tenant {PARTNER_TENANT}, outside the allow list.")
