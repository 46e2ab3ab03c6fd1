"""IMG: machines on legacy managed images, and scale sets past the managed-image cap."""

from tests.builders import azure_fixture, gallery_ref, managed_image, vm, vmss

LEGACY_SET = "vmss_managed_image_2024_03_01"


def _autoscale(maximum: str, enabled: bool = True, target: str = "ss1") -> dict:
    setting = azure_fixture("autoscale_setting_get")
    properties = setting["properties"]
    properties["targetResourceUri"] = properties["targetResourceUri"].replace("/ss1", f"/{target}")
    properties["enabled"] = enabled
    for profile in properties["profiles"]:
        profile["capacity"]["maximum"] = maximum
    return setting


def test_img001_triggers_on_machines_from_managed_images(run_rule):
    image = managed_image()
    findings = run_rule("IMG001", image, vm("a", image={"id": image["id"]}),
                        azure_fixture(LEGACY_SET))
    assert sorted(findings["resource_name"]) == ["a", "ss-legacy"]
    assert "is deployed from the managed image" in findings.iloc[0]["message"]


def test_img001_pass_on_gallery_and_marketplace(run_rule):
    assert run_rule("IMG001", vm("a", image=gallery_ref()), vm("b")).empty


def test_img002_triggers_on_capacity_over_600(run_rule):
    findings = run_rule("IMG002", managed_image(), azure_fixture(LEGACY_SET))
    assert findings.iloc[0]["message"] == (
        "Scale set ss-legacy is on the managed image /subscriptions/11111111-2222-3333-4444-"
        "555555555555/resourcegroups/rg-img/providers/microsoft.compute/images/img-1.0.0 with "
        "capacity 650 and autoscale maximum none; a scale set on a managed image holds at most "
        "600 instances.")


def test_img002_triggers_on_autoscale_maximum_over_600(run_rule):
    image = managed_image()
    findings = run_rule("IMG002", image, vmss("ss1", image={"id": image["id"]}, capacity=10),
                        _autoscale("800"))
    assert "capacity 10 and autoscale maximum 800" in findings.iloc[0]["message"]


def test_img002_pass_within_cap_disabled_or_gallery(run_rule):
    image = managed_image()
    assert run_rule("IMG002", image, vmss("ss1", image={"id": image["id"]}, capacity=600),
                    _autoscale("600"), vmss("ss2", image={"id": image["id"]}, capacity=5),
                    _autoscale("900", enabled=False, target="ss2"),
                    vmss("ss3", image=gallery_ref(), capacity=900)).empty
