"""PIN: unpinned image references."""

import pytest

from tests.builders import gallery_ref, marketplace, vm, vmss


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
