"""APR: approved images (off by default; active when the config enables it)."""

import pytest

from auditor.engine import apply_config, evaluate
from auditor.errors import AuditError
from tests.builders import (
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

APPROVED = {"marketplace": ["canonical:0001-com-ubuntu-server-jammy:*", "contoso:base:golden"],
            "galleries": ["gal"], "definitions": ["partner/approved-*"],
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
        params=approved())
    messages = dict(zip(findings["resource_name"], findings["message"], strict=True))
    assert messages["market"] == ("market uses Marketplace image MicrosoftSQLServer:sql:std, "
                                  "which is not on the approved list.")
    assert "shared gallery image partner/other" in messages["shared"]
    assert "managed image golden" in messages["managed"]
    assert "an unmanaged VHD" in messages["vhd"]


def test_apr001_pass_gallery_matches_by_gallery_definition_or_identifier(run_rule):
    resources = [gallery("other_gal"), definition("golden", gallery_name="other_gal",
                                                  identifier={"publisher": "Contoso",
                                                              "offer": "base", "sku": "golden"}),
                 version(definition_name="golden", gallery_name="other_gal")]
    assert run_rule(
        "APR001", *resources,
        vm("by-gallery", image=gallery_ref("base", None)),
        vm("by-definition", image={"sharedGalleryImageId":
                                   "/SharedGalleries/PARTNER/Images/approved-ubuntu/Versions/1.0.0"}),
        vm("by-identifier", image=gallery_ref("golden", "1.0.0", gallery_name="other_gal")),
        vm("market"), managed_image("img-1.0.0"), vm("managed", image={"id": rid("images", "img-1.0.0")}),
        params=approved()).empty


def test_apr001_enabled_without_list_is_an_error(run_rule):
    with pytest.raises(AuditError, match="params.approved lists nothing"):
        run_rule("APR001", vm())


def test_apr001_unknown_key_is_an_error(run_rule):
    with pytest.raises(AuditError, match="unknown key"):
        run_rule("APR001", vm(), params={"approved": {"publishers": ["x"]}})
