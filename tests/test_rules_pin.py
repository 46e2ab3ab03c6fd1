"""PIN: unpinned image references."""

import copy
import json
from pathlib import Path

import pytest

from auditor.engine import apply_config, evaluate
from auditor.errors import AuditError
from tests.builders import definition, estate_of, gallery, gallery_ref, marketplace, version, vm, vmss


@pytest.mark.parametrize("version", ["latest", "Latest", "LATEST"])
def test_pin001_triggers_on_latest_any_casing(run_rule, version):
    findings = run_rule("PIN001", vm(image=marketplace(version, exactVersion="22.04.1")))
    assert list(findings["rule_id"]) == ["PIN001"]
    message = findings.iloc[0]["message"]
    assert f"Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:{version}" in message
    assert "22.04.1" in message


def test_pin001_triggers_on_scale_set(run_rule):
    findings = run_rule("PIN001", vmss(image=marketplace("latest")))
    assert findings.iloc[0]["resource_type"] == "Microsoft.Compute/virtualMachineScaleSets"


def test_pin001_pass_pinned_and_gallery(run_rule):
    assert run_rule("PIN001", vm("a", image=marketplace("22.04.1")),
                    vm("b", image=gallery_ref())).empty


@pytest.mark.parametrize("image", [
    gallery_ref("base", None),
    gallery_ref("base", "latest"),
    {"sharedGalleryImageId": "/SharedGalleries/x-G/Images/img"},
    {"sharedGalleryImageId": "/SharedGalleries/x-G/Images/img/Versions/Latest"},
    {"communityGalleryImageId": "/CommunityGalleries/c-1/Images/img"},
])
def test_pin002_triggers_without_version(run_rule, image):
    findings = run_rule("PIN002", vm(image=image))
    assert list(findings["rule_id"]) == ["PIN002"]
    assert "without a version" in findings.iloc[0]["message"]


@pytest.mark.parametrize("image", [
    gallery_ref("base", "1.0.0"),
    {"sharedGalleryImageId": "/SharedGalleries/x-G/Images/img/Versions/1.0.0"},
    {"communityGalleryImageId": "/CommunityGalleries/c-1/Images/img/Versions/2.0.0"},
    marketplace("latest"),
])
def test_pin002_pass_pinned(run_rule, image):
    assert run_rule("PIN002", vm(image=image)).empty


# --- machine kinds, automatic OS image upgrade (PIN003), platform-managed scale sets -------
# Scale set fixtures are GET bodies and Resource Graph rows in Azure's shapes.

FIXTURES = Path(__file__).parent / "fixtures" / "azure"


def fixture(name: str) -> list[dict]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))["resources"]


def auto_upgrade_set(image=None, probe=True, extension=None, **policy) -> dict:
    """The 2024-03-01 scale set fixture (automatic OS image upgrade on, health probe)."""
    item = copy.deepcopy(fixture("vmss_automatic_upgrade_2024-03-01.json")[0])
    profile = item["properties"]["virtualMachineProfile"]
    if image is not None:
        profile["storageProfile"]["imageReference"] = image
    if not probe:
        profile["networkProfile"].pop("healthProbe")
    if extension:
        profile["extensionProfile"] = {"extensions": [
            {"name": "health", "properties": {"publisher": "Microsoft.ManagedServices",
                                              "type": extension, "typeHandlerVersion": "2.0"}}]}
    item["properties"]["upgradePolicy"].update(policy)
    return item


GALLERY = [gallery(), definition(), version("1.0.0")]


def test_pin001_severity_by_machine_kind(run_rule):
    findings = run_rule("PIN001", vm("a", image=marketplace("latest")),
                        vmss("s", image=marketplace("latest")))
    severity = dict(zip(findings["resource_name"], findings["severity"], strict=True))
    assert severity == {"a": "low", "s": "high"}
    assert "stand-alone VM" in findings.set_index("resource_name").loc["a", "message"]


def test_pin001_vm_severity_is_a_param(run_rule):
    findings = run_rule("PIN001", vm("a", image=marketplace("latest")),
                        params={"vm_severity": "medium"})
    assert list(findings["severity"]) == ["medium"]


def test_config_severity_overrides_per_machine_severities(rules):
    configured = apply_config([rules["PIN001"]], {"rules": {"PIN001": {"severity": "info"}}})
    findings = evaluate(estate_of(vm("a", image=marketplace("latest")),
                                  vmss("s", image=marketplace("latest"))), configured)
    assert set(findings["severity"]) == {"info"}


def test_pin001_pass_compliant_automatic_upgrade_scale_set(run_rule):
    supported = marketplace("latest")  # Canonical 0001-com-ubuntu-server-jammy 22_04-lts-gen2
    assert run_rule("PIN001", auto_upgrade_set(image=supported)).empty
    assert run_rule("PIN003", auto_upgrade_set(image=supported)).empty


def test_pin002_pass_compliant_automatic_upgrade_scale_set(run_rule):
    assert run_rule("PIN002", *GALLERY, auto_upgrade_set()).empty
    assert run_rule("PIN003", *GALLERY, auto_upgrade_set()).empty


def test_pin002_external_scale_set_is_high(run_rule):
    findings = run_rule("PIN002", vmss("s", image={
        "communityGalleryImageId": "/CommunityGalleries/c-1/Images/img"}), vmss("own", image=gallery_ref(
            "base", None)))
    severity = dict(zip(findings["resource_name"], findings["severity"], strict=True))
    assert severity == {"s": "high", "own": "medium"}


def test_pin003_triggers_on_legacy_shape_without_health_and_unsupported_image(run_rule):
    findings = run_rule("PIN003", *fixture("vmss_legacy_automatic_os_upgrade_2018-06-01.json"))
    assert list(findings["rule_id"]) == ["PIN003"]
    message = findings.iloc[0]["message"]
    assert "Canonical:UbuntuServer:16.04-LTS is not one automatic upgrade supports" in message
    assert "neither a load balancer health probe nor the Application Health extension" in message
    # ... and PIN001 leaves it to PIN003: `latest` is what automatic upgrade needs.
    assert run_rule("PIN001", *fixture("vmss_legacy_automatic_os_upgrade_2018-06-01.json")).empty


@pytest.mark.parametrize("image, probe, extension, missing", [
    (gallery_ref("base", "1.0.0"), True, None, "its image version is pinned"),
    (gallery_ref("base", None), False, None, "neither a load balancer health probe"),
    ({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/img"}, True, None,
     "a managed image is not supported"),
])
def test_pin003_names_what_is_missing(run_rule, image, probe, extension, missing):
    findings = run_rule("PIN003", *GALLERY, auto_upgrade_set(image=image, probe=probe,
                                                             extension=extension))
    assert missing in findings.iloc[0]["message"]


@pytest.mark.parametrize("extension", ["ApplicationHealthLinux", "ApplicationHealthWindows"])
def test_pin003_pass_with_application_health_extension(run_rule, extension):
    assert run_rule("PIN003", *GALLERY, auto_upgrade_set(probe=False, extension=extension)).empty


def test_pin003_pass_without_automatic_upgrade(run_rule):
    assert run_rule("PIN003", vmss("s", image=marketplace("latest"))).empty


def test_flexible_members_are_judged_through_their_set(run_rule):
    resources = [*GALLERY, *fixture("vmss_flexible_with_members_2024-03-01.json")]
    findings = run_rule("PIN002", *resources)
    assert list(findings["resource_name"]) == ["ss-flex"]
    members_alone = [r for r in resources if r.get("name") != "ss-flex"]
    findings = run_rule("PIN002", *members_alone)  # their set is not in the snapshot
    assert sorted(findings["severity"]) == ["medium", "medium"]
    assert "member of a Flexible scale set" in findings.iloc[0]["message"]


def test_flexible_member_on_another_image_than_its_set_is_judged_on_its_own(run_rule):
    resources = [*GALLERY, *fixture("vmss_flexible_with_members_2024-03-01.json")]
    member = copy.deepcopy(resources[-3])  # ss-flex_00000002: a definition reference of its own
    member["properties"]["storageProfile"]["imageReference"] = gallery_ref("other", None)
    findings = run_rule("PIN002", *resources[:-3], member, *resources[-2:])
    assert sorted(findings["resource_name"]) == ["ss-flex", "ss-flex_00000002"]
    message = findings.set_index("resource_name").loc["ss-flex_00000002", "message"]
    assert "member of a Flexible scale set, on an image other than its set's" in message


def test_platform_managed_scale_sets_are_left_out_unless_included(rules):
    aks = fixture("resource_graph_aks_node_pool.json")
    unpinned = copy.deepcopy(aks)
    unpinned[0]["properties"]["virtualMachineProfile"]["storageProfile"]["imageReference"] = \
        marketplace("latest")
    estate = estate_of(*unpinned)
    assert evaluate(estate, [rules["PIN001"]]).empty
    included = apply_config([rules["PIN001"]], {"include_platform_managed": True})
    assert list(evaluate(estate, included)["rule_id"]) == ["PIN001"]


@pytest.mark.parametrize("config, error", [
    ({"include_platform_managed": "yes"}, "include_platform_managed: expected true or false"),
    ({"include_platform": True}, "include_platform: unknown key"),
])
def test_platform_managed_switch_is_validated(rules, config, error):
    with pytest.raises(AuditError, match=error.replace("(", r"\(").replace(")", r"\)")):
        apply_config(list(rules.values()), config)


def test_a_severity_param_that_is_not_a_severity_is_a_clear_error(run_rule):
    with pytest.raises(AuditError, match=r"PIN001: check .* returned rows with severity \['huge'\]"):
        run_rule("PIN001", vm("a", image=marketplace("latest")), params={"vm_severity": "huge"})
