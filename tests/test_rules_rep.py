"""REP: replication, judged against where the machines that use a version run."""

import json

import pytest

from tests.builders import (
    GOOD_TAGS,
    azure_fixture,
    definition,
    disk,
    gallery,
    gallery_ref,
    version,
    vm,
    vmss,
)

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


def autoscale(target: dict, step: int = 20, minimum: int = 10, maximum: int = 200,
              enabled: bool = True, name: str = "ss1-autoscale") -> dict:
    """The autoscale fixture (API 2022-10-01 shape) aimed at `target`, with one profile whose
    scale-out rule adds `step` machines."""
    body = azure_fixture("autoscale_setting_get")
    body["id"] = body["id"].rsplit("/", 1)[0] + "/" + name
    props = body["properties"]
    props.update(enabled=enabled, targetResourceUri=target["id"])
    profile = props["profiles"][0]
    profile["capacity"] = {"minimum": str(minimum), "maximum": str(maximum),
                           "default": str(minimum)}
    profile["rules"][0]["scaleAction"]["value"] = str(step)
    props["profiles"] = [profile]
    return body


def test_rep002_triggers_below_the_production_minimum(run_rule):
    findings = run_rule("REP002", *BASE, version(regions=(("West Europe", 1, "Standard_ZRS"),)),
                        vm("a", image=gallery_ref()))
    row = findings.iloc[0]
    assert row["region"] == "westeurope" and row["fingerprint"].endswith("/versions/1.0.0@westeurope")
    assert row["message"] == (
        "base/1.0.0 has 1 replica(s) in westeurope, need 3: no autoscale setting or surge upgrade "
        "creates VMs at once "
        "(1 machine(s) run it there; running machines are not creations); production image: "
        "at least 3.")


def test_rep002_minimum_is_for_production_images_only(run_rule):
    dev = {"environment": "dev", "team": "apps"}
    resources = [gallery(tags=dev), definition(tags=dev),
                 version(regions=(("West Europe", 1, "Standard_LRS"),), tags=dev),
                 vm("a", image=gallery_ref(), tags=dev)]
    assert run_rule("REP002", *resources).empty
    assert len(run_rule("REP002", *resources[:3], vm("a", image=gallery_ref()))) == 1


def test_rep002_a_steady_thousand_instance_scale_set_needs_only_the_minimum(run_rule):
    assert run_rule("REP002", *BASE, version(regions=(WE3,)),
                    vmss("big", image=gallery_ref(), capacity=1000)).empty


def test_rep002_autoscale_step_sets_the_load(run_rule):
    ss = vmss("ss1", image=gallery_ref(), capacity=40)
    ss["properties"]["overprovision"] = False
    findings = run_rule("REP002", *BASE, version(regions=(WE3,)), ss, autoscale(ss, step=80))
    assert findings.iloc[0]["message"] == (
        "base/1.0.0 has 3 replica(s) in westeurope, need 4: autoscale: up to 80 VMs created at "
        "once (largest scale-out step: 80 in ss1); one replica per 20 VMs created at once; "
        "one per scale set creating VMs at once (1); production image: at least 3.")
    evidence = json.loads(findings.iloc[0]["evidence"])
    assert evidence["estimate"].startswith("autoscale")
    assert evidence["added_gb"] == 30  # one more replica of a 30 GB version


def test_rep002_the_fixture_setting_scales_out_by_forty_at_most(run_rule):
    # default profile: ChangeCount 20; business hours: from minimum 10 to 50 when it starts,
    # and 25% at the capacity where that adds most (40 at 160 of 200).
    ss = vmss("ss1", image=gallery_ref(), capacity=10)
    ss["properties"]["overprovision"] = False
    findings = run_rule("REP002", *BASE, version(regions=(("West Europe", 1, "Standard_ZRS"),)),
                        ss, azure_fixture("autoscale_setting_get"),
                        params={"min_replicas": 1})
    assert "need 2: autoscale: up to 40 VMs created at once" in findings.iloc[0]["message"]


def test_rep002_overprovisioning_adds_to_a_scale_out(run_rule):
    # `overprovision` absent: on for a Uniform scale set; Microsoft documents no amount, the
    # rule assumes as many extra VMs as asked for (overprovisioned_per_requested: 1.0).
    ss = vmss("ss1", image=gallery_ref(), capacity=40)
    findings = run_rule("REP002", *BASE, version(regions=(WE3,)), ss, autoscale(ss, step=80))
    assert findings.iloc[0]["message"].startswith(
        "base/1.0.0 has 3 replica(s) in westeurope, need 8: autoscale: up to 160 VMs created at "
        "once (largest scale-out step: 80 in ss1, with 80 overprovisioned);")
    assert json.loads(findings.iloc[0]["evidence"])["creations"] == 160
    assert "need 4:" in run_rule("REP002", *BASE, version(regions=(WE3,)), ss,
                                 autoscale(ss, step=80),
                                 params={"overprovisioned_per_requested": 0}).iloc[0]["message"]


def test_rep002_no_overprovisioning_when_off_or_flexible(run_rule):
    ss = vmss("ss1", image=gallery_ref(), capacity=40)
    ss["properties"]["overprovision"] = False
    assert run_rule("REP002", *BASE, version(regions=(WE3,)), ss, autoscale(ss, step=60)).empty
    flexible = vmss("ss1", image=gallery_ref(), capacity=40)
    flexible["properties"]["orchestrationMode"] = "Flexible"
    assert run_rule("REP002", *BASE, version(regions=(WE3,)), flexible,
                    autoscale(flexible, step=60)).empty
    # the same step overprovisioned creates 120 at once
    on = vmss("ss1", image=gallery_ref(), capacity=40)
    assert "need 6:" in run_rule("REP002", *BASE, version(regions=(WE3,)), on,
                                 autoscale(on, step=60)).iloc[0]["message"]


def surge_set(**policy) -> dict:
    """The 1,000-instance Uniform scale set with a Rolling surge policy (API 2024-03-01),
    running base/1.0.0, its rolling upgrade policy changed by `policy`."""
    body = azure_fixture("vmss_rolling_surge_2024-03-01")
    body["properties"]["virtualMachineProfile"]["storageProfile"]["imageReference"] = gallery_ref()
    body["properties"]["upgradePolicy"]["rollingUpgradePolicy"].update(policy)
    return body


def test_rep002_a_rolling_upgrade_with_surge_creates_its_batch(run_rule):
    findings = run_rule("REP002", *BASE, version(regions=(WE3,)), surge_set())
    assert findings.iloc[0]["message"] == (
        "base/1.0.0 has 3 replica(s) in westeurope, need 10: rolling upgrade with surge: up to 200 "
        "VMs created at once (largest surge batch: 200 in ss-surge, 20% of 1000); one replica per "
        "20 VMs created at once; one per scale set creating VMs at once (1); production image: "
        "at least 3.")
    assert "need 25:" in run_rule("REP002", *BASE, version(regions=(WE3,)),
                                  surge_set(maxBatchInstancePercent=50)).iloc[0]["message"]
    absent = surge_set()
    del absent["properties"]["upgradePolicy"]["rollingUpgradePolicy"]["maxBatchInstancePercent"]
    assert "need 10:" in run_rule("REP002", *BASE, version(regions=(WE3,)),
                                  absent).iloc[0]["message"]  # default batch 20%


def test_rep002_a_rolling_upgrade_without_surge_creates_nothing(run_rule):
    assert run_rule("REP002", *BASE, version(regions=(WE3,)), surge_set(maxSurge=False)).empty
    manual = surge_set()
    manual["properties"]["upgradePolicy"]["mode"] = "Manual"
    assert run_rule("REP002", *BASE, version(regions=(WE3,)), manual).empty
    assert run_rule("REP002", *BASE, version(regions=(("West Europe", 10, "Standard_ZRS"),)),
                    surge_set()).empty


def test_scale_set_policy_columns_are_read_as_recorded():
    from tests.builders import snapshot_of
    machines = snapshot_of(surge_set(), vmss("plain", image=gallery_ref()),
                           vm("a", image=gallery_ref())).tables["machines"].set_index("name")
    assert machines.loc["ss-surge", ["overprovision", "rolling_max_batch_percent",
                                     "rolling_max_surge"]].tolist() == [False, 20, True]
    assert machines.loc[["plain", "a"], ["overprovision", "rolling_max_batch_percent",
                                         "rolling_max_surge"]].isna().all(axis=None)


def test_rep002_disabled_autoscale_and_fifty_per_region_cap(run_rule):
    ss = vmss("ss1", image=gallery_ref(), capacity=40)
    assert run_rule("REP002", *BASE, version(regions=(WE3,)), ss,
                    autoscale(ss, step=500, maximum=1000, enabled=False)).empty
    findings = run_rule("REP002", *BASE, version(regions=(WE3,)), ss,
                        autoscale(ss, step=5000, maximum=5000))
    assert "need 50:" in findings.iloc[0]["message"]


def test_rep002_one_replica_per_scale_set_scaling_out(run_rule):
    sets = [vmss(f"ss{i}", image=gallery_ref(), capacity=2) for i in range(5)]
    scaled = [autoscale(s, step=2, name=f"as{i}") for i, s in enumerate(sets)]
    findings = run_rule("REP002", *BASE, version(regions=(WE3,)), *sets, *scaled)
    assert "need 5:" in findings.iloc[0]["message"]
    assert "one per scale set creating VMs at once (5)" in findings.iloc[0]["message"]


def test_rep002_configured_peak(run_rule):
    findings = run_rule("REP002", *BASE, version(regions=(WE3,)), vm("a", image=gallery_ref()),
                        params={"peak_concurrent_creations": 100})
    assert findings.iloc[0]["message"].startswith(
        "base/1.0.0 has 3 replica(s) in westeurope, need 5: configured peak: 100 VMs created at "
        "once (peak_concurrent_creations)")
    assert run_rule("REP002", *BASE, version(regions=(WE3,)), vm("a", image=gallery_ref()),
                    params={"peak_concurrent_creations": 100, "machines_per_replica": 50}).empty


def test_rep002_never_asks_past_a_hundred_replicas_per_version(run_rule):
    regions = (("West Europe", 3, "Standard_ZRS"), ("North Europe", 50, "Standard_ZRS"),
               ("East US", 45, "Standard_ZRS"))
    ss = vmss("ss1", image=gallery_ref(), capacity=40)
    findings = run_rule("REP002", *BASE, version(regions=regions), ss,
                        autoscale(ss, step=1000, maximum=2000))
    assert "need 5:" in findings.iloc[0]["message"]  # 100 - 95 in its other regions


def test_rep002_judges_only_used_regions_and_latest(run_rule):
    regions = (("West Europe", 1, "Standard_ZRS"), ("East US", 1, "Standard_ZRS"))
    findings = run_rule("REP002", *BASE, version("1.0.0", regions=regions),
                        version("1.1.0", regions=regions),
                        vm("a", image=gallery_ref("base", "1.0.0")))
    got = sorted(zip(findings["resource_name"], findings["region"], strict=True))
    # 1.0.0 is used in westeurope only; 1.1.0 is what latest gives in both regions
    assert got == [("base/1.0.0", "westeurope"), ("base/1.1.0", "eastus"),
                   ("base/1.1.0", "westeurope")]
    assert "it is what `latest` gives there" in findings.iloc[-1]["message"]


def test_rep002_a_shallow_version_is_left_to_rep004(run_rule):
    shallow = azure_fixture("gallery_image_version_shallow")
    ss = vmss("ss1", image=gallery_ref("base", "1.3.0"), capacity=40)
    assert run_rule("REP002", *BASE, shallow, ss, autoscale(ss, step=100)).empty


def test_rep002_a_missing_replica_count_is_the_api_default_one(run_rule):
    findings = run_rule("REP002", *BASE, azure_fixture("gallery_image_version_2022_03_03"),
                        vm("a", image=gallery_ref(), location="northeurope"))
    assert findings.iloc[0]["message"].startswith(
        "base/1.0.0 has 1 replica(s) in northeurope, need 3")


def test_rep004_triggers_on_shallow_version_in_production(run_rule):
    findings = run_rule("REP004", *BASE, version(replicationMode="Shallow"),
                        vmss("s", image=gallery_ref(), capacity=5))
    assert "Shallow replication and 5 production machine(s)" in findings.iloc[0]["message"]


def test_rep004_triggers_on_the_shallow_fixture_whatever_its_replicas(run_rule):
    shallow = azure_fixture("gallery_image_version_shallow")
    findings = run_rule("REP004", *BASE, shallow, vm("a", image=gallery_ref("base", "1.3.0")))
    assert findings.iloc[0]["message"] == (
        "base/1.3.0 was published with Shallow replication and 1 production machine(s) use it; "
        "Shallow replication makes no copies and is meant for quick test builds.")


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
                    version(regions=(WE3, EUS3)),
                    vm("a", image=gallery_ref()), vm("b", image=gallery_ref(), location="eastus")).empty


def test_rep005_only_in_regions_with_availability_zones(run_rule):
    # West Central US has no availability zones: ZRS cannot be had there.
    lrs = (("West Europe", 3, "Standard_ZRS"), ("West Central US", 3, "Standard_LRS"))
    machines = [vm("a", image=gallery_ref()), vm("b", image=gallery_ref(), location="westcentralus")]
    assert run_rule("REP005", *BASE, version(regions=lrs), *machines).empty
    findings = run_rule("REP005", *BASE, version(regions=lrs), *machines,
                        params={"zone_regions": ["West Central US"]})
    assert list(findings["region"]) == ["westcentralus"]


def test_rep005_prefer_standard_zrs_strategy_is_zone_redundant(run_rule):
    # API 2025-03-03: no storage type in the profile or the regions, PreferStandard_ZRS.
    strategy = azure_fixture("gallery_image_version_2025_03_03_storage_account_strategy")
    machines = [vm("a", image=gallery_ref("base", "1.2.0")),
                vm("b", image=gallery_ref("base", "1.2.0"), location="westcentralus")]
    assert run_rule("REP005", *BASE, strategy, *machines).empty
    strategy["properties"]["publishingProfile"]["storageAccountStrategy"] = "DefaultStandard_LRS"
    findings = run_rule("REP005", *BASE, strategy, *machines)
    assert list(findings["region"]) == ["westeurope"]
    assert "is stored as Standard_LRS in westeurope" in findings.iloc[0]["message"]


def test_rep005_premium_has_no_zone_redundant_replica_type(run_rule):
    findings = run_rule("REP005", *BASE, version(regions=(("West Europe", 3, "Premium_LRS"),)),
                        vm("a", image=gallery_ref()))
    assert len(findings) == 1


def test_rep006_triggers_on_allow_deletion_and_unblocked_in_use(run_rule):
    findings = run_rule("REP006", *BASE, protected(version("1.0.0"), allow=True),
                        protected(version("1.1.0"), block=False), vm("a", image=gallery_ref("base", "1.1.0")))
    messages = dict(zip(findings["resource_name"], findings["message"], strict=True))
    assert messages["base/1.0.0"] == "base/1.0.0 allows deletion of replicated locations."
    assert "is in use but does not block deletion" in messages["base/1.1.0"]


def test_rep006_block_is_asked_only_before_an_end_of_life(run_rule):
    unblocked = [protected(version("1.0.0", end_of_life=None), block=False),
                 protected(version("1.1.0", end_of_life="2026-01-01T00:00:00Z"), block=False),
                 vm("a", image=gallery_ref("base", "1.0.0")),
                 vm("b", image=gallery_ref("base", "1.1.0"))]
    assert run_rule("REP006", *BASE, *unblocked).empty
    findings = run_rule("REP006", *BASE, *unblocked,
                        protected(version("1.2.0", end_of_life="2027-06-01T00:00:00Z"), block=False),
                        vm("c", image=gallery_ref("base", "1.2.0")))
    assert list(findings["resource_name"]) == ["base/1.2.0"]
    assert '"end_of_life_date":"2027-06-01' in findings.iloc[0]["evidence"]


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


def test_rep003_unknown_past_stuck_hours_is_stuck(rep003):
    findings = rep003(replicated(replica_status("West Europe", "Unknown", 0),
                                 replica_status("East US", "Completed")))
    assert list(findings["region"]) == ["westeurope"]
    assert findings.iloc[0]["message"] == (
        "1.0.0 has replication state Unknown more than 6 hours after it was published in "
        "westeurope.")


def test_rep003_recent_unknown_is_not_stuck(rep003):
    assert rep003(replicated(replica_status("West Europe", "Unknown", 0),
                             published="2026-11-14T23:00:00Z")).empty


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


# --- REP008 ----------------------------------------------------------------------------------

def test_rep008_triggers_on_single_region_version_and_lonely_gallery(run_rule):
    findings = run_rule("REP008", *BASE, version(regions=(WE3,)), vm("a", image=gallery_ref()))
    by_type = findings.set_index("resource_type")
    assert by_type.loc["Microsoft.Compute/galleries/images/versions", "message"] == (
        "base/1.0.0 is used by 1 production machine(s) but has replicas in westeurope only: a "
        "regional outage leaves nothing to deploy or scale out from.")
    assert by_type.loc["Microsoft.Compute/galleries", "message"].startswith(
        "gal holds image definitions production machines use (base) with no counterpart")


def test_rep008_pass_two_regions_and_a_counterpart_gallery(run_rule):
    dr = gallery("gal-dr", location="northeurope")
    assert run_rule("REP008", *BASE, dr, definition(gallery_name="gal-dr"),
                    version(regions=(WE3, EUS3)), vm("a", image=gallery_ref())).empty
    # The counterpart may be named otherwise when its identifier is the same.
    renamed = definition("base-dr", gallery_name="gal-dr")
    renamed["properties"]["identifier"]["sku"] = "base"
    assert run_rule("REP008", *BASE, dr, renamed, version(regions=(WE3, EUS3)),
                    vm("a", image=gallery_ref())).empty


def test_rep008_pass_not_production_or_not_in_snapshot(run_rule):
    assert run_rule("REP008", *BASE, version(regions=(WE3,)),
                    vm("a", image=gallery_ref(), tags={"environment": "test"})).empty
    assert run_rule("REP008", gallery(), vm("a", image=gallery_ref())).empty
