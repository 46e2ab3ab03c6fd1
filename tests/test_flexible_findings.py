"""A Flexible scale set's members are ordinary VMs: a machine rule reports a cause once. A
member whose image reference is its set's model is answered for by the set's finding; a
member on another image, or whose set is not in the snapshot, is judged on its own.

The set and its members are tests/fixtures/azure/vmss_flexible_with_members_2024-03-01.json
(API 2024-03-01: orchestrationMode Flexible, sku.capacity, virtualMachineProfile with an
imageReference; members name the set in properties.virtualMachineScaleSet.id), with the
image, plan and tags each case needs."""

import copy
import json
from pathlib import Path

import pytest

from tests.builders import (
    GOOD_TAGS,
    azure_shape,
    definition,
    gallery,
    gallery_ref,
    managed_image,
    marketplace,
    rid,
    version,
)

FIXTURE = Path(__file__).parent / "fixtures" / "azure" / "vmss_flexible_with_members_2024-03-01.json"
SET, FIRST, SECOND = "ss-flex", "ss-flex_00000001", "ss-flex_00000002"
PRODUCTION = {"environment": "production", "team": "apps"}
DEV = {**GOOD_TAGS, "environment": "dev"}
PLAN = {"name": "byol", "publisher": "fortinet", "product": "fortinet_fortigate-vm_v5"}
FORTIGATE = marketplace("7.4.3", publisher="fortinet", offer="fortinet_fortigate-vm_v5", sku="byol")


def flexible(image=None, second_image=None, plan=None, tags=None, with_set=True) -> list[dict]:
    """The fixture's set and members on `image` (the second member on `second_image`)."""
    resources = copy.deepcopy(json.loads(FIXTURE.read_text(encoding="utf-8"))["resources"])
    scale_set, first, second = resources[:3]
    machines = {"set": scale_set, "first": first, "second": second}
    if image is not None:
        scale_set["properties"]["virtualMachineProfile"]["storageProfile"]["imageReference"] = \
            copy.deepcopy(image)
        for member in (first, second):
            member["properties"]["storageProfile"]["imageReference"] = copy.deepcopy(image)
    if second_image is not None:
        second["properties"]["storageProfile"]["imageReference"] = copy.deepcopy(second_image)
    for machine in machines.values():
        if plan:
            machine["plan"] = dict(plan)
        if tags:
            machine["tags"] = dict(tags)
    return resources if with_set else resources[1:]


def versions(*names, published="2026-11-01T00:00:00Z", **kwargs) -> list[dict]:
    return [version(name, published=published, **kwargs) for name in names]


def definition_past_end_of_life(end_of_life: str) -> list[dict]:
    return [gallery(), definition(endOfLifeDate=end_of_life), *versions("1.9.0", "1.10.0")]


DEV_IMAGE = {"id": rid("images", "img-dev")}
STALE = [gallery(), definition(), *versions("1.0.0", "1.1.0", published="2025-01-01T00:00:00Z"),
         *versions("1.2.0", "1.3.0")]

# rule id: (params, the images and sources around the set, the set's image, the second
# member's own image, which still breaks the rule on its own account).
CASES = {
    "APR001": ({"approved": {"marketplace": ["canonical:*"]}}, [],
               marketplace("1.0.0", publisher="Shady", offer="tools", sku="std"),
               marketplace("1.0.0", publisher="Other", offer="tools", sku="std")),
    "LIC001": (None, [], FORTIGATE, {**FORTIGATE, "sku": "payg"}),
    "STL001": (None, definition_past_end_of_life("2026-06-30T00:00:00Z"), None,
               gallery_ref("base", "1.9.0")),
    "STL004": (None, definition_past_end_of_life("2026-12-01T00:00:00Z"), None,
               gallery_ref("base", "1.9.0")),
    "STL003": (None, STALE, gallery_ref("base", "1.0.0"), gallery_ref("base", "1.1.0")),
    "ENV001": (None, [gallery(tags=DEV), definition(tags=DEV), *versions("1.9.0", "1.10.0"),
                      managed_image("img-dev", tags=DEV)], None, DEV_IMAGE),
    # Machines without the purchase plan of their definition; images from another tenant.
    "LIC002": (None, [gallery(), azure_shape("gallery_image_purchase_plan_2024-03-03.json"),
                      *versions("1.0.0", "1.1.0", definition_name="fortigate")],
               gallery_ref("fortigate", "1.1.0"), gallery_ref("fortigate", "1.0.0")),
    "SHR003": (None, [], {"communityGalleryImageId": "/CommunityGalleries/fabrikam-0f1e2d3c/"
                                                     "Images/nginx/Versions/1.0.0"},
               {"sharedGalleryImageId": "/SharedGalleries/99999999-8888-7777-6666-"
                                        "555555555555-PARTNER/Images/base/Versions/2.1.0"}),
}


def _estate(rule_id, second_image=None, with_set=True):
    params, sources, image, _ = CASES[rule_id]
    machines = flexible(image=image, second_image=second_image, with_set=with_set,
                        plan=PLAN if rule_id == "LIC001" else None, tags=PRODUCTION)
    return params, [*sources, *machines]


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_one_finding_on_the_set_for_members_on_its_image(run_rule, rule_id):
    params, resources = _estate(rule_id)
    findings = run_rule(rule_id, *resources, params=params)
    assert list(findings["resource_name"]) == [SET]
    assert findings.iloc[0]["resource_type"] == "Microsoft.Compute/virtualMachineScaleSets"
    assert "Its 2 member VMs in the snapshot, on the same image, are covered by this finding." \
        in findings.iloc[0]["message"]


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_a_member_on_another_image_is_judged_on_its_own(run_rule, rule_id):
    params, resources = _estate(rule_id, second_image=CASES[rule_id][3])
    findings = run_rule(rule_id, *resources, params=params)
    assert sorted(findings["resource_name"]) == [SET, SECOND]
    message = findings.set_index("resource_name").loc[SET, "message"]
    assert "Its 1 member VM in the snapshot, on the same image, is covered" in message


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_members_whose_set_is_not_in_the_snapshot_are_judged_on_their_own(run_rule, rule_id):
    params, resources = _estate(rule_id, with_set=False)
    findings = run_rule(rule_id, *resources, params=params)
    assert sorted(findings["resource_name"]) == [FIRST, SECOND]
    assert not findings["message"].str.contains("member VM").any()


def test_a_member_the_set_does_not_share_the_cause_with_is_still_reported(run_rule):
    """A production member of a set not tagged production: the cause is the member's own."""
    _, sources, _, _ = CASES["ENV001"]
    machines = flexible(tags=PRODUCTION)
    machines[0]["tags"] = {"environment": "test", "team": "apps"}
    findings = run_rule("ENV001", *sources, *machines)
    assert sorted(findings["resource_name"]) == [FIRST, SECOND]


def test_stand_alone_machines_are_unchanged(run_rule):
    from tests.builders import vm
    findings = run_rule("LIC001", vm("a", image=FORTIGATE, plan=PLAN), *flexible(FORTIGATE, plan=PLAN))
    assert sorted(findings["resource_name"]) == ["a", SET]
    assert "member VM" not in findings.set_index("resource_name").loc["a", "message"]


def test_machines_sheet_says_how_many_members_a_flexible_set_has_in_the_snapshot():
    from auditor.workbook import _machines_frame
    from tests.builders import estate_of, vmss
    estate = estate_of(*flexible(), vmss("uniform", capacity=3))
    frame = _machines_frame(estate.machines, estate.usage).set_index("name")
    assert frame.loc[SET, "capacity"] == 2 and frame.loc[SET, "members_in_snapshot"] == 2
    assert frame.loc[FIRST, "members_in_snapshot"] is None
    assert frame.loc["uniform", "members_in_snapshot"] is None
    alone = estate_of(flexible()[0])
    assert _machines_frame(alone.machines, alone.usage).iloc[0]["members_in_snapshot"] == 0
