"""REP: replication, judged against where the machines that use a version run."""

import json

import pytest

from tests.builders import GOOD_TAGS, definition, disk, gallery, gallery_ref, version, vm, vmss

WE3 = ("West Europe", 3, "Standard_ZRS")
EUS3 = ("East US", 3, "Standard_ZRS")
BASE = [gallery(), definition()]


def protected(item, allow=False, block=True):
    item["properties"]["safetyProfile"] = {"allowDeletionOfReplicatedLocations": allow,
                                           "blockDeletionBeforeEndOfLife": block}
    return item


def test_rep001_triggers_on_machine_outside_replica_regions(run_rule):
    findings = run_rule("REP001", *BASE, version(regions=(WE3,)),
                        vm("far", image=gallery_ref(), location="East US"))
    assert findings.iloc[0]["message"].startswith(
        "far runs in eastus but image version base/1.0.0 has no replica there "
        "(replicated to: westeurope)")
    assert findings.iloc[0]["region"] is None


def test_rep001_triggers_on_version_from_os_disk(run_rule):
    machine = vm("far", image=gallery_ref("base", None), location="eastus")
    old = "/subscriptions/11111111-2222-3333-4444-555555555555/resourcegroups/rg-img/providers/" \
          "microsoft.compute/galleries/gal/images/base/versions/1.0.0"
    findings = run_rule("REP001", *BASE, version("1.0.0", regions=(WE3,)),
                        version("1.1.0", regions=(WE3, EUS3)), machine, disk(machine, old))
    assert json.loads(findings.iloc[0]["evidence"])["resolved_from"] == "disk"


def test_rep001_pass_replicated_latest_or_unknown(run_rule):
    assert run_rule("REP001", *BASE, version(regions=(WE3, EUS3)),
                    vm("a", image=gallery_ref(), location="eastus"),
                    vm("b", image=gallery_ref("base", None)),
                    vm("c", image=gallery_ref("base", "9.9.9"), location="eastus"),
                    vm("d", image={"sharedGalleryImageId": "/SharedGalleries/x/Images/i/Versions/1.0.0"},
                       location="eastus")).empty


def test_rep002_triggers_below_minimum(run_rule):
    findings = run_rule("REP002", *BASE, version(regions=(("West Europe", 1, "Standard_ZRS"),)),
                        vm("a", image=gallery_ref()))
    row = findings.iloc[0]
    assert row["region"] == "westeurope" and row["fingerprint"].endswith("/versions/1.0.0@westeurope")
    assert row["message"] == ("base/1.0.0 has 1 replica(s) in westeurope, need 3: 1 machines use "
                              "it there (one per 20) and the minimum is 3.")


def test_rep002_one_per_twenty_machines_capped_at_fifty(run_rule):
    findings = run_rule("REP002", *BASE, version(regions=(WE3, EUS3)),
                        vmss("big", image=gallery_ref(), capacity=61),
                        vmss("huge", image=gallery_ref(), capacity=2000, location="eastus"))
    need = dict(zip(findings["region"], findings["message"], strict=True))
    assert "has 3 replica(s) in westeurope, need 4: 61 machines" in need["westeurope"]
    assert "has 3 replica(s) in eastus, need 50: 2000 machines" in need["eastus"]


def test_rep002_pass_at_the_boundary(run_rule):
    assert run_rule("REP002", *BASE, version(regions=(WE3,)),
                    vmss("s", image=gallery_ref(), capacity=60)).empty


def test_rep002_judges_latest_even_unused(run_rule):
    findings = run_rule("REP002", *BASE, version("1.0.0", regions=(WE3,)),
                        version("1.1.0", regions=(("West Europe", 2, "Standard_ZRS"),)))
    assert list(findings["resource_name"]) == ["base/1.1.0"]
    assert "what `latest` resolves to" in findings.iloc[0]["message"]


def test_rep002_pass_enough_replicas(run_rule):
    assert run_rule("REP002", *BASE, version("1.0.0", regions=(("West Europe", 1, "Standard_LRS"),)),
                    version("1.1.0", regions=(WE3,)), vmss("s", image=gallery_ref("base", "1.1.0"),
                                                           capacity=60)).empty


def test_rep002_configured_params(run_rule):
    findings = run_rule("REP002", *BASE, version(regions=(WE3,)), vmss("s", image=gallery_ref(),
                                                                       capacity=4),
                        params={"min_replicas": 1, "machines_per_replica": 1})
    assert "need 4: 4 machines" in findings.iloc[0]["message"]


def test_rep004_triggers_on_shallow_version_in_production(run_rule):
    findings = run_rule("REP004", *BASE, version(replicationMode="Shallow"),
                        vmss("s", image=gallery_ref(), capacity=5))
    assert "Shallow replication and 5 production machine(s)" in findings.iloc[0]["message"]


@pytest.mark.parametrize("mode,env", [("Full", "production"), ("Shallow", "dev"),
                                      (None, "production")])
def test_rep004_pass(run_rule, mode, env):
    extra = {"replicationMode": mode} if mode else {}
    assert run_rule("REP004", *BASE, version(**extra),
                    vm("a", image=gallery_ref(), tags={"environment": env})).empty


def test_rep005_triggers_per_region_with_production_machines(run_rule):
    lrs = (("West Europe", 3, "Standard_LRS"), ("East US", 3, "Premium_LRS"))
    findings = run_rule("REP005", *BASE, version(regions=lrs),
                        vm("a", image=gallery_ref()),
                        vm("b", image=gallery_ref(), location="eastus", tags={"environment": "dev"}))
    assert list(findings["region"]) == ["westeurope"]
    assert "stored as Standard_LRS in westeurope, where 1 production machine(s)" in \
        findings.iloc[0]["message"]


def test_rep005_pass_zone_redundant(run_rule):
    assert run_rule("REP005", *BASE,
                    version(regions=(WE3, ("East US", 3, "Premium_ZRS"))),
                    vm("a", image=gallery_ref()), vm("b", image=gallery_ref(), location="eastus")).empty


def test_rep006_triggers_on_allow_deletion_and_unblocked_in_use(run_rule):
    findings = run_rule("REP006", *BASE, protected(version("1.0.0"), allow=True),
                        protected(version("1.1.0"), block=False), vm("a", image=gallery_ref("base", "1.1.0")))
    messages = dict(zip(findings["resource_name"], findings["message"], strict=True))
    assert messages["base/1.0.0"] == "base/1.0.0 allows deletion of replicated locations."
    assert "is in use but does not block deletion" in messages["base/1.1.0"]


def test_rep006_pass_protected_or_unused(run_rule):
    assert run_rule("REP006", *BASE, protected(version("1.0.0"), block=False),
                    protected(version("1.1.0")), vm("a", image=gallery_ref("base", "1.1.0"),
                                                    tags=GOOD_TAGS)).empty


# --- REP003: replication status (filled by a --deep collection) ---

REP003_PUBLISHED = "2026-11-14T14:00:00Z"  # 10 hours before AS_OF


def replica_status(name, state, progress=100, details=""):
    return {"region": name, "state": state, "progress": progress, "details": details}


def replicated(*summary, published=REP003_PUBLISHED, name="1.0.0"):
    row = version(name=name, published=published)
    row["properties"]["replicationStatus"] = {"summary": list(summary)}
    return row


@pytest.fixture
def rep003(run_rule):
    return lambda *versions, **kwargs: run_rule("REP003", *versions, **kwargs)


def test_rep003_failed_region(rep003):
    findings = rep003(
        replicated(
            replica_status("West Europe", "Completed"),
            replica_status("East US", "Failed", 40, "quota"),
        )
    )
    assert len(findings) == 1
    finding = findings.iloc[0]
    assert finding["region"] == "eastus" and finding["severity"] == "high"
    assert finding["message"] == "1.0.0 failed to replicate in eastus."
    assert '"details":"quota"' in finding["evidence"]
    assert finding["fingerprint"].endswith("/versions/1.0.0@eastus")


def test_rep003_stuck_replicating(rep003):
    findings = rep003(replicated(replica_status("West Europe", "Replicating", 35)))
    assert "still replicating (35% done) more than 6 hours" in findings.iloc[0]["message"]


def test_rep003_recent_replication_is_not_stuck(rep003):
    recent = replicated(
        replica_status("westeurope", "Replicating", 35), published="2026-11-14T23:00:00Z"
    )
    assert rep003(recent).empty
    assert len(rep003(recent, params={"stuck_hours": 0.5})) == 1


def test_rep003_pass(rep003):
    both = [replica_status("West Europe", "Completed"), replica_status("East US", "Completed")]
    assert rep003(replicated(*both)).empty


def test_rep003_without_deep_collection_has_nothing_to_judge(rep003):
    assert rep003(version()).empty


# --- REP007: no version serves `latest` in the machine's region ----------------------------

def _vid(name):
    return ("/subscriptions/11111111-2222-3333-4444-555555555555/resourcegroups/rg-img/"
            f"providers/microsoft.compute/galleries/gal/images/base/versions/{name}")


@pytest.mark.parametrize("versions, reason", [
    ([], "the definition has no versions"),
    ([version("1.0.0", regions=(WE3,))], "no version of it is replicated to eastus"),
    ([version("1.0.0", regions=(WE3, EUS3), exclude_from_latest=True)],
     "every version replicated there is excluded from latest there"),
    ([version("1.0.0", regions=(WE3, EUS3), state="Failed")],
     "every version replicated there is excluded from latest there, not provisioned"),
])
def test_rep007_triggers_when_nothing_serves_latest_in_region(run_rule, versions, reason):
    findings = run_rule("REP007", *BASE, *versions,
                        vmss("ss", image=gallery_ref("base", None), location="eastus"))
    assert list(findings["rule_id"]) == ["REP007"]
    message = findings.iloc[0]["message"]
    assert message.startswith("ss references gal/base without a version, and no version can be "
                              "deployed from it in eastus: ")
    assert reason in message


def test_rep007_triggers_when_replication_to_the_region_is_not_complete(run_rule):
    replicating = version("1.0.0", regions=(WE3, EUS3))
    replicating["properties"]["replicationStatus"] = {"summary": [
        {"region": "West Europe", "state": "Completed", "progress": 100},
        {"region": "East US", "state": "Replicating", "progress": 10}]}
    findings = run_rule("REP007", *BASE, replicating,
                        vmss("ss", image=gallery_ref("base", "latest"), location="eastus"))
    assert list(findings["resource_name"]) == ["ss"]


def test_rep007_triggers_even_when_the_os_disk_records_a_version(run_rule):
    machine = vm("a", image=gallery_ref("base", None), location="eastus")
    findings = run_rule("REP007", *BASE, version("1.0.0", regions=(WE3,)), machine,
                        disk(machine, _vid("1.0.0")))
    assert json.loads(findings.iloc[0]["evidence"])["resolved_from"] == "disk"


def test_rep007_pass_served_pinned_or_outside_snapshot(run_rule):
    excluded_globally = version("1.1.0", regions=(WE3, EUS3), exclude_from_latest=True)
    excluded_globally["properties"]["publishingProfile"]["targetRegions"][1][
        "excludeFromLatest"] = False  # the region's own flag wins
    assert run_rule(
        "REP007", *BASE, excluded_globally,
        vmss("a", image=gallery_ref("base", None), location="eastus"),
        vm("b", image=gallery_ref("base", "1.1.0"), location="eastus"),
        vm("c", image=gallery_ref("other", None, gallery_name="elsewhere"), location="eastus"),
        vm("d", image={"sharedGalleryImageId": "/SharedGalleries/x/Images/i"})).empty


# --- REP012: the version a machine records no longer exists ---------------------------------

@pytest.mark.parametrize("image, extra, how", [
    (gallery_ref("base", "1.0.0"), False, "its image reference names it"),
    (gallery_ref("base", None), True, "its OS disk was created from it"),
    ({**gallery_ref("base", None), "exactVersion": "1.0.0"}, False, "its exactVersion names it"),
])
def test_rep012_triggers_on_deleted_recorded_version(run_rule, image, extra, how):
    machine = vmss("ss", image=image)
    resources = [*BASE, version("1.1.0", regions=(WE3,)), machine]
    if extra:
        resources.append({**disk(machine, _vid("1.0.0")),
                          "managedBy": machine["id"] + "/virtualMachines/0"})
    findings = run_rule("REP012", *resources)
    assert list(findings["rule_id"]) == ["REP012"]
    assert findings.iloc[0]["message"] == (
        f"ss records image version base/1.0.0 ({how}), which no longer exists in gal/base; "
        "reimaging or scaling out from it fails.")


def test_rep012_pass_existing_or_unknown(run_rule):
    assert run_rule(
        "REP012", *BASE, version("1.0.0", regions=(WE3,)),
        vm("a", image=gallery_ref("base", "1.0.0")),
        vm("b", image=gallery_ref("other", "1.0.0", gallery_name="elsewhere")),
        vm("c", image={"sharedGalleryImageId": "/SharedGalleries/x/Images/i/Versions/1.0.0"}),
        vm("d", image=marketplace_latest())).empty


def marketplace_latest():
    from tests.builders import marketplace
    return marketplace("latest")
