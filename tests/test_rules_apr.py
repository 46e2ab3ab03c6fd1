"""APR: approved images (off by default; active when the config enables it). Gallery images
are approved by resource id, never by the definition's free-text publisher/offer/sku."""

import pytest

from auditor.engine import apply_config, evaluate
from auditor.errors import AuditError
from tests.builders import (
    SUB,
    definition,
    estate_of,
    gallery,
    gallery_ref,
    managed_image,
    marketplace,
    rid,
    version,
    vm,
)

SHARED = "/SharedGalleries/a1b2c3d4-PARTNER/Images/approved-ubuntu"
APPROVED = {"marketplace": ["canonical:0001-com-ubuntu-server-jammy:*", "contoso:base:golden"],
            "gallery_ids": [f"/subscriptions/{SUB}/resourceGroups/*/providers/"
                            "Microsoft.Compute/galleries/gal"],
            "shared_images": [SHARED],
            "managed_images": ["img-*"]}


def approved(**changes):
    return {"approved": {**APPROVED, **changes}}


def test_apr001_off_by_default(rules):
    assert rules["APR001"].enabled is False
    assert evaluate(estate_of(vm(image=marketplace(publisher="Shady"))), [rules["APR001"]]).empty


def test_apr001_enabled_by_config(rules):
    config = {"rules": {"APR001": {"enabled": True, "params": approved()}}}
    rule = apply_config([rules["APR001"]], config)[0]
    findings = evaluate(estate_of(vm("ok"), vm("bad", image=marketplace(offer="other"))), [rule])
    assert list(findings["resource_name"]) == ["bad"]


def test_apr001_triggers_on_unapproved_images(run_rule):
    findings = run_rule(
        "APR001",
        vm("market", image=marketplace(publisher="MicrosoftSQLServer", offer="sql", sku="std")),
        vm("shared", image={"sharedGalleryImageId": "/SharedGalleries/partner/Images/other"}),
        vm("managed", image={"id": rid("images", "golden")}),
        vm("vhd", image={}, os_disk={"image": {"uri": "https://x.blob.core.windows.net/v/a.vhd"}}),
        vm("gal", image=gallery_ref("base", "1.0.0", gallery_name="dev_gal")),
        params=approved())
    messages = dict(zip(findings["resource_name"], findings["message"], strict=True))
    assert messages["market"] == ("market uses Marketplace image MicrosoftSQLServer:sql:std, "
                                  "which is not on the approved list.")
    assert "uses shared gallery image partner/other," in messages["shared"]
    assert "managed image golden" in messages["managed"]
    assert "an unmanaged VHD" in messages["vhd"]
    assert messages["gal"] == "gal uses gallery image dev_gal/base, which is not on the approved list."
    assert not any("gallery gallery" in m for m in messages.values())


def test_apr001_triggers_on_definition_labelled_as_an_approved_marketplace_image(run_rule):
    """Anyone can create a definition whose publisher/offer/sku copy Canonical's."""
    spoof = definition("ubuntu", gallery_name="dev_gal",
                       identifier={"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy",
                                   "sku": "22_04-lts-gen2"})
    findings = run_rule("APR001", gallery("dev_gal"), spoof,
                        version(definition_name="ubuntu", gallery_name="dev_gal"),
                        vm("spoofed", image=gallery_ref("ubuntu", "1.0.0", gallery_name="dev_gal")),
                        params=approved())
    assert list(findings["resource_name"]) == ["spoofed"]


def test_apr001_triggers_on_community_image_listed_by_name_only(run_rule):
    findings = run_rule(
        "APR001",
        vm("same-name", image={"communityGalleryImageId":
                               "/CommunityGalleries/a1b2c3d4-partner/Images/approved-ubuntu"}),
        vm("other-version", image={"sharedGalleryImageId": SHARED.replace("PARTNER", "other")}),
        params=approved())
    assert sorted(findings["resource_name"]) == ["other-version", "same-name"]


def test_apr001_pass_gallery_by_id_shared_by_full_id(run_rule):
    resources = [gallery(), definition("golden", identifier={"publisher": "Contoso",
                                                            "offer": "base", "sku": "golden"}),
                 version(definition_name="golden")]
    by_definition = [rid("galleries", "other_gal", "images", "approved-*")]
    assert run_rule(
        "APR001", *resources,
        vm("by-gallery", image=gallery_ref("base", None)),
        vm("by-gallery-version", image=gallery_ref("golden", "1.0.0")),
        vm("by-definition", image=gallery_ref("approved-x", "2.0.0", gallery_name="other_gal")),
        vm("shared-pinned", image={"sharedGalleryImageId": SHARED.upper() + "/Versions/1.0.0"}),
        vm("shared-latest", image={"sharedGalleryImageId": SHARED.lower()}),
        vm("market"), managed_image("img-1.0.0"), vm("managed", image={"id": rid("images", "img-1.0.0")}),
        params=approved(gallery_ids=APPROVED["gallery_ids"] + by_definition)).empty


def test_apr001_enabled_without_list_is_an_error(run_rule):
    with pytest.raises(AuditError, match="params.approved lists nothing"):
        run_rule("APR001", vm(), params={"approved": {}})


def test_apr001_unknown_key_is_an_error(run_rule):
    with pytest.raises(AuditError, match="unknown key"):
        run_rule("APR001", vm(), params={"approved": {"publishers": ["x"]}})


@pytest.mark.parametrize("old, replacement", [("galleries", "use gallery_ids"),
                                              ("definitions", "use gallery_ids")])
def test_apr001_config_with_a_replaced_key_is_refused_when_read(rules, old, replacement):
    config = {"rules": {"APR001": {"params": {"approved": {old: ["gal"]}}}}}
    with pytest.raises(AuditError) as info:
        apply_config([rules["APR001"]], config)
    message = str(info.value)
    assert message.startswith("config: rules.APR001: params.approved.")
    assert f"{old} is no longer read" in message and replacement in message


@pytest.mark.parametrize("entry", ["/CommunityGalleries/*/Images/x", "partner-base",
                                   "/SharedGalleries/g/Images/x/Versions/*"])
def test_apr001_shared_images_need_full_ids(rules, entry):
    config = {"rules": {"APR001": {"params": {"approved": {"shared_images": [entry]}}}}}
    with pytest.raises(AuditError, match="not the full id of a shared or community"):
        apply_config([rules["APR001"]], config)


def test_sample_config_is_valid_and_uses_ids(rules):
    from auditor.importer import sample_config

    configured = {r.id: r for r in apply_config(list(rules.values()), sample_config())}
    rule = configured["APR001"]
    assert rule.enabled and rule.params["approved"]["gallery_ids"]


def test_readme_config_example_is_valid(rules):
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)
              if "APR001" in b]
    assert blocks
    for block in blocks:
        rule = apply_config([rules["APR001"]], block)[0]
        assert rule.params["approved"]["gallery_ids"]


def test_apr001_managed_images_by_name_or_id(run_rule):
    by_id = f"/subscriptions/{SUB}/resourceGroups/rg-img/providers/Microsoft.Compute/images/*"
    elsewhere = rid("images", "golden", rg="rg-dev")
    findings = run_rule("APR001", vm("here", image={"id": rid("images", "golden")}),
                        vm("there", image={"id": elsewhere}),
                        params=approved(managed_images=[by_id]))
    assert list(findings["resource_name"]) == ["there"]
