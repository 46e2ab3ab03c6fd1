"""Build the bundled sample estate: a fictional tenant (Northwind Traders) in raw Azure shape.

Deterministic: the same script always writes the same file, and a test checks that the
committed auditor/data/sample_estate.json matches it. Resources built to break a rule carry
the rule in a tag `sample-case` so tests (and readers) can tell violations from clean ones.

    python tools/build_sample.py            # rewrite auditor/data/sample_estate.json
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "auditor" / "data" / "sample_estate.json"
COLLECTED_AT = datetime(2026, 11, 15, 6, 0, tzinfo=timezone.utc)

SUBS = {
    "platform": "6f1c2a9e-3b7d-4c51-9a0e-1d2f3a4b5c61",
    "apps": "8a2d4e6f-1c3b-4d5e-8f90-2a3b4c5d6e72",
    "data": "b3c4d5e6-7f80-4912-a3b4-c5d6e7f80913",
}
REGION_NAMES = {"westeurope": "West Europe", "northeurope": "North Europe", "eastus": "East US"}


def arm(sub: str, rg: str, *path: str) -> str:
    return f"/subscriptions/{SUBS[sub]}/resourceGroups/{rg}/providers/Microsoft.Compute/" + \
        "/".join(path)


def iso(when: datetime, fraction7: bool = False) -> str:
    if fraction7:  # Azure often sends 7 fractional digits and an offset
        return when.strftime("%Y-%m-%dT%H:%M:%S") + ".1234567+00:00"
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def tags(env="production", team="platform", created="2025-01-10", **extra):
    out = {"environment": env, "team": team, "created": created}
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


# --- galleries, definitions, versions --------------------------------------------------------

GALLERIES = [
    # (sub, rg, gallery name, location, tags)
    ("platform", "rg-images-prod", "gal_platform_prod", "westeurope", tags()),
    ("apps", "rg-images-apps", "gal_apps_shared", "eastus",
     tags(team=None, **{"sample-case": "TAG001"})),
    ("platform", "rg-images-sandbox", "gal_sandbox", "westeurope",
     tags(env="dev", **{"sample-case": "RET003"})),
]

# (gallery index, definition, os type, os state, publisher/offer/sku, versions, env tag)
DEFINITIONS = [
    (0, "ubuntu-22-base", "Linux", "Generalized", ("northwind", "ubuntu", "22-base"), 8, "production"),
    (0, "win2022-base", "Windows", "Generalized", ("northwind", "windows", "2022-base"), 7, "production"),
    (0, "rhel9-hardened", "Linux", "Generalized", ("northwind", "rhel", "9-hardened"), 6, "production"),
    (1, "app-web-ubuntu", "Linux", "Generalized", ("northwind", "web", "ubuntu"), 8, "production"),
    (1, "app-sql-win", "Windows", "Generalized", ("northwind", "sql", "win2022"), 6, "Prod"),
    (1, "batch-worker", "Linux", "Generalized", ("northwind", "batch", "worker"), 6, "dev"),
    # Built for single rules; the clean machines above never use them.
    (1, "sql-migrated", "Windows", "Specialized", ("northwind", "sql", "migrated"), 2, "production"),
    (0, "centos7-legacy", "Linux", "Generalized", ("northwind", "centos", "7"), 2, "production"),
    (1, "win2019-base", "Windows", "Generalized", ("northwind", "windows", "2019-base"), 0,
     "production"),
]
CLEAN_DEFINITIONS = 6
SQL_MIGRATED, CENTOS, WIN2019 = 6, 7, 8
DEFINITION_CASES = {SQL_MIGRATED: "GEN001", CENTOS: "STL002", WIN2019: "RET003"}
TARGETS = [("westeurope", "Standard_ZRS"), ("northeurope", "Standard_ZRS"), ("eastus", "Standard_ZRS")]
# Sizing guidance: at least 3 replicas where a version is used; old versions keep 1.
KEEP_VERSIONS = 5
# Definitions a scale set deploys through `latest` with no record of what its instances run
# (vmss-web-autoupgrade, vmss-batch): any of their versions may be running, so RET001 holds
# them all (the cleanup plan lists them as blocked).
HELD_BY_LATEST = (3, 5)


def gallery(index: int) -> dict:
    sub, rg, name, location, gallery_tags = GALLERIES[index]
    return {
        "id": arm(sub, rg, "galleries", name), "name": name,
        "type": "Microsoft.Compute/galleries", "location": location,
        "subscriptionId": SUBS[sub], "resourceGroup": rg, "tags": gallery_tags,
        "properties": {"description": f"Northwind golden images ({name})",
                       "identifier": {"uniqueName": f"{SUBS[sub]}-{name.upper()}"},
                       "provisioningState": "Succeeded"},
    }


def definition_id(index: int) -> str:
    g, name = DEFINITIONS[index][0], DEFINITIONS[index][1]
    sub, rg, gallery_name = GALLERIES[g][:3]
    return arm(sub, rg, "galleries", gallery_name, "images", name)


def definition(index: int) -> dict:
    g, name, os_type, os_state, (pub, offer, sku), _, env = DEFINITIONS[index]
    sub, rg, _, location, _ = GALLERIES[g]
    item = {
        "id": definition_id(index), "name": name, "location": location,
        # Resource Graph gives types in lower case; ARM in mixed case. The sample has both.
        "type": "microsoft.compute/galleries/images" if index % 2 else
                "Microsoft.Compute/galleries/images",
        "tags": tags(env=env, team="platform" if g == 0 else "apps"),
        "properties": {
            "osType": os_type, "osState": os_state, "hyperVGeneration": "V2",
            "architecture": "x64",
            "identifier": {"publisher": pub, "offer": offer, "sku": sku},
            "recommended": {"vCPUs": {"min": 2, "max": 16}},
            "provisioningState": "Succeeded",
        },
    }
    if index % 3 == 0:  # ARM GET bodies carry no subscriptionId/resourceGroup fields
        item["subscriptionId"], item["resourceGroup"] = SUBS[sub], rg
    if index in DEFINITION_CASES:
        item["tags"]["sample-case"] = DEFINITION_CASES[index]
    return item


def version_name(index: int, n: int) -> str:
    return f"7.9.{n}" if index == CENTOS else f"1.{n}.0"


def newest(index: int) -> int:
    return DEFINITIONS[index][5] - 1


def version_cases(index: int, n: int) -> list[str]:
    """The rules a version is built to break (most versions: none)."""
    count = DEFINITIONS[index][5]
    cases = []
    if index < CLEAN_DEFINITIONS and n < count - KEEP_VERSIONS and (index, n) != (0, 0) \
            and index not in HELD_BY_LATEST:
        cases.append("RET001")  # old, unused, beyond the newest five; 1.0.0 of 0 is retained
    cases += {(1, count - 1): ["REP004"], (3, count - 1): ["REP002"],
              (2, count - 1): ["REP005"], (4, count - 1): ["REP006"], (3, 0): ["REP006"],
              (SQL_MIGRATED, 0): ["STL005"], (2, count - 2): ["REP003"]}.get((index, n), [])
    return cases


def version(index: int, n: int) -> dict:
    count = DEFINITIONS[index][5]
    g = DEFINITIONS[index][0]
    location = GALLERIES[g][3]
    cases = version_cases(index, n)
    published = COLLECTED_AT - timedelta(days=30 * (count - n) + 5)
    end_of_life = published + timedelta(days=365)
    if index == CENTOS:  # end of life passed (7.9.0) or due within the warning (7.9.1)
        published = datetime(2024, 3, 1, tzinfo=timezone.utc) + timedelta(days=90 * n)
        end_of_life = [datetime(2026, 6, 30, tzinfo=timezone.utc),
                       COLLECTED_AT + timedelta(days=10)][n]
    in_use = n >= count - 2
    targets = [{"name": REGION_NAMES[r], "regionalReplicaCount": 3 if in_use else 1,
                "storageAccountType": st, "excludeFromLatest": False} for r, st in TARGETS]
    if "REP005" in cases:
        targets[2]["storageAccountType"] = "Standard_LRS"
    version_tags = tags(team="platform" if g == 0 else "apps",
                        created=published.date().isoformat())
    if (index, n) == (1, count - 1):  # a version's publishedDate is its creation date (TAG001)
        version_tags.pop("created")
    if (index, n) == (0, 0):
        version_tags["retain"] = "true"
    if cases:
        version_tags["sample-case"] = ",".join(cases)
    publishing = {
        "targetRegions": targets, "replicaCount": 1,
        "publishedDate": iso(published, fraction7=n % 2 == 0),
        "endOfLifeDate": iso(end_of_life),
        "storageAccountType": "Standard_LRS", "excludeFromLatest": False,
        "replicationMode": "Shallow" if "REP004" in cases else "Full",
    }
    if "STL005" in cases:
        del publishing["endOfLifeDate"]
    body = version_body(index, version_name(index, n), location, version_tags, publishing, {
        "allowDeletionOfReplicatedLocations": (index, n) == (3, 0),
        "blockDeletionBeforeEndOfLife": (index, n) != (4, count - 1)}, "Succeeded")
    # As `collect --deep` reads it: per-region replication state.
    summary = [{"region": t["name"], "state": "Completed", "details": "", "progress": 100}
               for t in targets]
    if "REP003" in cases:
        summary[-1].update(state="Failed", progress=35,
                           details="The disk encryption set is not available in the region.")
    body["properties"]["replicationStatus"] = {
        "aggregatedState": "Failed" if "REP003" in cases else "Completed", "summary": summary}
    return body


def failed_build() -> dict:
    """A build that failed three days ago: it must neither win `latest` nor push a good
    version out of retention."""
    index, published = 0, COLLECTED_AT - timedelta(days=3)
    return version_body(index, "1.8.0", GALLERIES[0][3],
                        tags(created=published.date().isoformat()), {
                            "targetRegions": [{"name": "West Europe", "regionalReplicaCount": 1,
                                               "storageAccountType": "Standard_ZRS",
                                               "excludeFromLatest": False}],
                            "replicaCount": 1,
                            "publishedDate": iso(published),
                            "endOfLifeDate": iso(published + timedelta(days=365)),
                            "storageAccountType": "Standard_ZRS", "excludeFromLatest": False,
                            "replicationMode": "Full"},
                        {"allowDeletionOfReplicatedLocations": False}, "Failed")


def version_body(index, name, location, version_tags, publishing, safety, state) -> dict:
    return {
        "id": definition_id(index) + f"/versions/{name}",
        "name": name, "location": location,
        "type": "Microsoft.Compute/galleries/images/versions",
        "tags": version_tags,
        "properties": {
            "publishingProfile": publishing,
            "storageProfile": {
                "source": {"id": arm("platform", "rg-build", "images",
                                     f"{DEFINITIONS[index][1]}-{name}")},
                "osDiskImage": {"sizeInGB": 30 if DEFINITIONS[index][2] == "Linux" else 127,
                                "hostCaching": "ReadWrite"},
                "dataDiskImages": [{"lun": 0, "sizeInGB": 64, "hostCaching": "None"}]
                if DEFINITIONS[index][1] == "app-sql-win" else [],
            },
            "safetyProfile": safety,
            "provisioningState": state,
        },
    }


# --- managed images ----------------------------------------------------------------------------

def managed_image(name, os_type="Linux", state="Generalized", size=30, env="production",
                  blob=None, case=None, sub="apps", rg="rg-legacy-images", location="westeurope"):
    os_disk = {"osType": os_type, "osState": state, "diskSizeGB": size,
               "storageAccountType": "Standard_LRS", "caching": "ReadWrite"}
    if blob:
        os_disk["blobUri"] = blob
    else:
        os_disk["managedDisk"] = {"id": arm(sub, rg, "disks", f"{name}-osdisk")}
    image_tags = tags(env=env, team="apps", created="2024-03-02")
    if case:
        image_tags["sample-case"] = case
    return {
        "id": arm(sub, rg, "images", name), "name": name, "type": "microsoft.compute/images",
        "location": location, "subscriptionId": SUBS[sub], "resourceGroup": rg, "tags": image_tags,
        "properties": {"storageProfile": {"osDisk": os_disk, "dataDisks": [],
                                          "zoneResilient": False},
                       "hyperVGeneration": "V2", "provisioningState": "Succeeded",
                       "sourceVirtualMachine": {"id": arm(sub, rg, "virtualMachines",
                                                          f"{name}-src")}},
    }


MANAGED_IMAGES = [
    managed_image("img-jumpbox-1.4.0"),
    managed_image("img-legacy-erp-2.1", os_type="Windows", size=127),
    managed_image("img-web-legacy-1.0.2"),
    managed_image("img-build-agent-3.2", env="dev"),
    managed_image("img-reporting-1.1.0", sub="data", rg="rg-data-images", location="northeurope",
                  blob="https://nwlegacyimages.blob.core.windows.net/vhds/reporting.vhd"
                       "?sv=2022-11-02&ss=b&sig=SAMPLEsignatureNOTREAL%3D"),
    managed_image("img-analytics-2.0.1", sub="data", rg="rg-data-images", location="northeurope",
                  case="RET002"),
    managed_image("img-devbox-snap-1.0.0", state="Specialized", case="GEN002,GEN003"),
    managed_image("app-server-image-final-v2-really-final", case="VER001"),
]
REPORTING, DEVBOX, APP_SERVER = 4, 6, 7


# --- machines ------------------------------------------------------------------------------------

MARKETPLACE = {
    "ubuntu": ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "22.04.202410020"),
    "windows": ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition",
                "20348.2762.241009"),
    "sql": ("MicrosoftSQLServer", "sql2022-ws2022", "standard-gen2", "16.0.241008"),
}
PLANS = {"sql": None}


def vm(name, sub, rg, location, ref, env="production", team="apps", case=None, power="running",
       os_disk=None, plan=None, lower_type=False):
    vm_tags = {"environment": env, "team": team}
    if case:
        vm_tags["sample-case"] = case
    storage = {"imageReference": ref, "osDisk": os_disk or {
        "osType": "Linux", "createOption": "FromImage",
        "managedDisk": {"storageAccountType": "Premium_LRS"}}}
    item = {
        "id": f"/subscriptions/{SUBS[sub]}/resourceGroups/{rg}/providers/Microsoft.Compute/"
              f"virtualMachines/{name}",
        "name": name, "location": location,
        "type": "microsoft.compute/virtualmachines" if lower_type else
                "Microsoft.Compute/virtualMachines",
        "subscriptionId": SUBS[sub], "resourceGroup": rg, "tags": vm_tags,
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
            "storageProfile": storage,
            "osProfile": {"computerName": name[:15], "adminUsername": "azureuser",
                          "linuxConfiguration": {"disablePasswordAuthentication": True}},
            "extended": {"instanceView": {"powerState": {"code": f"PowerState/{power}"}}},
            "provisioningState": "Succeeded",
        },
    }
    if plan:
        item["plan"] = plan
    return item


def marketplace(kind, version=None):
    publisher, offer, sku, exact = MARKETPLACE[kind]
    ref = {"publisher": publisher, "offer": offer, "sku": sku, "version": version or exact}
    if (version or "").lower() == "latest":
        ref["exactVersion"] = exact
    return ref


def gallery_version_ref(index, n, recase=False):
    ref = definition_id(index) + f"/versions/{version_name(index, n)}"
    if recase:  # Azure echoes ids in whatever casing they were written with
        ref = ref.replace("/galleries/", "/Galleries/").replace("/images/", "/Images/") \
                 .replace("/versions/", "/Versions/")
    return {"id": ref}


def vmss(name, sub, rg, location, ref, capacity, env="production", team="apps", case=None):
    item = vm(name, sub, rg, location, ref, env=env, team=team, case=case)
    item["id"] = item["id"].replace("/virtualMachines/", "/virtualMachineScaleSets/")
    item["type"] = "Microsoft.Compute/virtualMachineScaleSets"
    props = item["properties"]
    props.pop("extended")
    props["virtualMachineProfile"] = {
        "storageProfile": props.pop("storageProfile"), "osProfile": props.pop("osProfile")}
    props.pop("hardwareProfile")
    props["upgradePolicy"] = {"mode": "Rolling"}
    item["sku"] = {"name": "Standard_D4s_v5", "tier": "Standard", "capacity": capacity}
    return item


def machines() -> list[dict]:
    out = []
    regions = ["westeurope", "northeurope", "eastus"]
    # 150 clean Marketplace machines, pinned.
    for i in range(150):
        kind = ["ubuntu", "windows", "ubuntu"][i % 3]
        out.append(vm(f"vm-app-{i:03d}", ["apps", "data", "platform"][i % 3],
                      f"rg-app-{i % 5}", regions[i % 3], marketplace(kind),
                      env=["production", "staging", "dev"][i % 3], lower_type=i % 4 == 0,
                      power="deallocated" if i % 17 == 0 else "running"))
    # 20 Marketplace machines on `latest` (PIN001).
    for i in range(20):
        out.append(vm(f"vm-latest-{i:02d}", "apps", "rg-web", regions[i % 3],
                      marketplace("ubuntu" if i % 2 else "windows", "latest" if i % 3 else "Latest"),
                      case="PIN001"))
    # 100 machines pinned to a gallery version, some with re-cased ids.
    for i in range(100):
        index = i % CLEAN_DEFINITIONS
        out.append(vm(f"vm-gal-{i:03d}", ["platform", "apps"][i % 2], "rg-services",
                      regions[i % 3], gallery_version_ref(index, newest(index) - i % 2,
                                                          recase=i % 5 == 0),
                      env=["production", "staging"][i % 2]))
    # Gallery, shared and community references without a version (PIN002).
    for i in range(12):
        index = i % 3
        ref = {"id": definition_id(index)} if i % 2 else \
            {"id": definition_id(index) + "/versions/latest"}
        out.append(vm(f"vm-gal-unpinned-{i:02d}", "platform", "rg-services", regions[i % 3], ref,
                      case="PIN002"))
    # Partner images (shared and community galleries) are not on the approved list (APR001).
    for i in range(4):
        out.append(vm(f"vm-shared-{i}", "data", "rg-partner", "westeurope",
                      {"sharedGalleryImageId": "/SharedGalleries/a1b2c3d4-partner-GALLERY/Images/"
                                               "partner-base" + ("/Versions/latest" if i % 2 else "")},
                      case="PIN002,APR001"))
    out.append(vm("vm-community-pinned", "data", "rg-partner", "westeurope",
                  {"communityGalleryImageId": "/CommunityGalleries/nwcommunity-1f2e3d/Images/"
                                              "hardened-ubuntu/Versions/2.3.1"}, case="APR001"))
    out.append(vm("vm-community-unpinned", "data", "rg-partner", "westeurope",
                  {"communityGalleryImageId": "/CommunityGalleries/nwcommunity-1f2e3d/Images/"
                                              "hardened-ubuntu"}, case="PIN002,APR001"))
    # Managed images and unmanaged VHDs; vm-legacy-3 is production on a dev image (ENV001).
    for i in range(6):
        image = MANAGED_IMAGES[i % 4]
        out.append(vm(f"vm-legacy-{i}", "apps", "rg-legacy", "westeurope", {"id": image["id"]},
                      case="ENV001" if i == 3 else None))
    # On a managed disk from an image captured from a blob: not at risk (no LEG001).
    out.append(vm("vm-report-01", "data", "rg-reporting", "northeurope",
                  {"id": MANAGED_IMAGES[REPORTING]["id"]}))
    for i in range(2):
        out.append(vm(f"vm-devbox-{i:02d}", "apps", "rg-dev", "westeurope",
                      {"id": MANAGED_IMAGES[DEVBOX]["id"]}))
    out.append(vm("vm-app-server-01", "apps", "rg-legacy", "westeurope",
                  {"id": MANAGED_IMAGES[APP_SERVER]["id"]}, case="APR001"))
    # Single-rule gallery cases: no replica in the machine's region, a specialized definition,
    # versions past or near their end of life.
    out.append(vm("vm-uk-01", "platform", "rg-services", "uksouth",
                  gallery_version_ref(2, newest(2)), case="REP001"))
    out.append(vm("vm-sqlmig-01", "apps", "rg-sql", "westeurope",
                  gallery_version_ref(SQL_MIGRATED, newest(SQL_MIGRATED))))
    out.append(vm("vm-centos-01", "platform", "rg-legacy", "westeurope",
                  gallery_version_ref(CENTOS, 0), case="STL001,STL003"))
    out.append(vm("vm-centos-02", "platform", "rg-legacy", "westeurope",
                  gallery_version_ref(CENTOS, 1), case="STL004,STL003"))
    out.append(vm("vm-vhd-erp", "apps", "rg-legacy", "westeurope", {}, case="LEG001,APR001", os_disk={
        "osType": "Windows", "createOption": "FromImage",
        "image": {"uri": "https://nwlegacy.blob.core.windows.net/vhds/erp-gold.vhd"},
        "vhd": {"uri": "https://nwlegacy.blob.core.windows.net/vhds/vm-vhd-erp-os.vhd"
                       "?sv=2021-08-06&sig=NOTAREALSIGNATURE%3D"}}))
    # First-party SQL Server pay-as-you-go images carry no plan; one claims Hybrid Benefit.
    for i in range(3):
        item = vm(f"vm-sql-{i}", "data", "rg-sql", "northeurope", marketplace("sql"))
        if i == 0:
            item["properties"]["licenseType"] = "Windows_Server"
        out.append(item)
    # Machines tagged with an environment outside the allowed set (TAG002).
    out.append(vm("vm-tools-01", "platform", "rg-tools", "westeurope", marketplace("ubuntu"),
                  env="Prd", case="TAG002"))
    # Fill to 300 VMs with clean pinned Marketplace machines.
    i = 0
    while len(out) < 300:
        out.append(vm(f"vm-batch-{i:03d}", "data", "rg-batch", regions[i % 3],
                      marketplace("ubuntu"), env="dev", team="data"))
        i += 1
    # Scale sets.
    out += [
        vmss("vmss-web-prod", "apps", "rg-web", "westeurope", gallery_version_ref(3, 7), 12),
        vmss("vmss-web-staging", "apps", "rg-web", "northeurope", gallery_version_ref(3, 6), 3,
             env="staging"),
        vmss("vmss-batch", "data", "rg-batch", "eastus", {"id": definition_id(5)}, 20, env="dev",
             case="PIN002"),
        # `latest` with automatic OS image upgrade, a supported image and a health probe: compliant.
        automatic_upgrade(vmss("vmss-api-latest", "apps", "rg-api", "westeurope",
                               marketplace("ubuntu", "latest"), 6)),
        vmss("vmss-sql", "data", "rg-sql", "northeurope", marketplace("windows"), 2),
        vmss("vmss-empty", "platform", "rg-services", "westeurope", gallery_version_ref(0, 7), 0),
        # 90 steady instances, no autoscale: nothing created at once, so the 3 replicas of
        # 1.7.0 in westeurope are enough (REP002 is on app-web-ubuntu/1.7.0, scaled out by
        # vmss-web-prod's autoscale setting).
        vmss("vmss-render-farm", "apps", "rg-render", "westeurope", gallery_version_ref(0, 7), 90),
    ]
    return out


def os_disks(machine_list: list[dict]) -> list[dict]:
    """OS disks of machines that reference a definition: the only record of what they got."""
    out = []
    for item in machine_list:
        ref = item["properties"].get("storageProfile", {}).get("imageReference", {})
        ref_id = ref.get("id", "")
        if "/galleries/" not in ref_id or "/versions/" in ref_id.replace("/versions/latest", ""):
            continue
        definition = ref_id.replace("/versions/latest", "")
        index = next(i for i in range(len(DEFINITIONS)) if definition_id(i) == definition)
        got = definition + "/versions/" + version_name(index, newest(index))
        out.append({
            "id": item["id"].replace("/virtualMachines/", "/disks/") + "_OsDisk_1",
            "name": item["name"] + "_OsDisk_1", "type": "microsoft.compute/disks",
            "location": item["location"], "managedBy": item["id"],
            "properties": {"creationData": {"createOption": "FromImage",
                                            "galleryImageReference": {"id": got}}},
        })
    return out


def autoscale_settings() -> list[dict]:
    """vmss-web-prod scales out by 68 VMs at once when its trading-hours profile starts (its
    minimum rises from 12 to 80): REP002 asks for 4 replicas there. vmss-render-farm (90
    steady instances, no autoscale) creates nothing at once and is not asked for more.
    Shape: Microsoft.Insights/autoscaleSettings GET (capacity and values are strings)."""
    target = f"/subscriptions/{SUBS['apps']}/resourceGroups/rg-web/providers/" \
             "Microsoft.Compute/virtualMachineScaleSets/vmss-web-prod"

    def rule(direction, kind, value, threshold, operator, cooldown):
        return {"metricTrigger": {
                    "metricName": "Percentage CPU",
                    "metricNamespace": "microsoft.compute/virtualmachinescalesets",
                    "metricResourceUri": target, "timeGrain": "PT1M", "statistic": "Average",
                    "timeWindow": "PT10M", "timeAggregation": "Average", "operator": operator,
                    "threshold": threshold, "dimensions": [], "dividePerInstance": False},
                "scaleAction": {"direction": direction, "type": kind, "value": value,
                                "cooldown": cooldown}}

    scale_in = rule("Decrease", "ChangeCount", "2", 25, "LessThan", "PT10M")
    return [{
        "id": f"/subscriptions/{SUBS['apps']}/resourceGroups/rg-web/providers/"
              "microsoft.insights/autoscalesettings/vmss-web-prod-autoscale",
        "name": "vmss-web-prod-autoscale", "type": "microsoft.insights/autoscalesettings",
        "location": "westeurope", "subscriptionId": SUBS["apps"], "resourceGroup": "rg-web",
        "tags": {"sample-case": "REP002"},
        "properties": {"enabled": True, "targetResourceUri": target, "profiles": [
            {"name": "default", "capacity": {"minimum": "12", "maximum": "120", "default": "12"},
             "rules": [rule("Increase", "ChangeCount", "10", 70, "GreaterThan", "PT5M"),
                       scale_in]},
            {"name": "trading-hours",
             "capacity": {"minimum": "80", "maximum": "120", "default": "80"},
             "rules": [rule("Increase", "PercentChangeCount", "20", 70, "GreaterThan", "PT5M"),
                       scale_in],
             "recurrence": {"frequency": "Week", "schedule": {
                 "timeZone": "W. Europe Standard Time",
                 "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
                 "hours": [8], "minutes": [0]}}}]}}]


# The subscriptions the collector tried: one it could not read (COV001).
SCOPE = [{"subscription_id": sub, "display_name": f"Northwind {name}", "status": "ok",
          "detail": ""} for name, sub in SUBS.items()] + [
    {"subscription_id": "c4d5e6f7-8091-4a23-b4c5-d6e7f8091a24",
     "display_name": "Northwind Contractors", "status": "denied",
     "detail": "AuthorizationFailed: no Reader role for the auditing identity"}]


def others() -> list[dict]:
    """Resources of other types, as a broad `az graph query` export would contain (and the
    autoscale settings the collector reads)."""
    return [{"id": f"/subscriptions/{SUBS['apps']}/resourceGroups/rg-web/providers/"
                   "Microsoft.Storage/storageAccounts/nwwebdiag", "name": "nwwebdiag",
             "type": "microsoft.storage/storageaccounts", "location": "westeurope"},
            *autoscale_settings()]


# --- retention: versions nobody in the snapshot uses, that still must not be deleted ----------

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"  # the built-in Reader role


def retention_cases() -> list[dict]:
    """A community gallery and one a partner team reads through RBAC, whose oldest versions
    RET001 would flag but must not (their consumers are outside the snapshot); a version
    being replicated to a new region (Updating); and a version in API 2018-06-01's shape,
    whose source managed image must not look unused (RET002)."""
    out = []
    shared = [("platform", "rg-images-community", "gal_community", "ubuntu-hardened", {
                  "permissions": "Community", "communityGalleryInfo": {
                      "publisherUri": "https://northwind.example", "publisherContact":
                      "images@northwind.example", "eula": "https://northwind.example/eula",
                      "publicNamePrefix": "northwind", "communityGalleryEnabled": True,
                      "publicNames": ["northwind-6f1c2a9e-3b7d-4c51-9a0e-1d2f3a4b5c61"]}}),
              ("apps", "rg-images-partner", "gal_partner", "partner-web", None),
              ("platform", "rg-images-prod", "gal_platform_prod", "ubuntu-24-base", None)]
    for sub, rg, name, image, sharing in shared:
        gallery_id = arm(sub, rg, "galleries", name)
        if name != "gal_platform_prod":
            properties = {"description": f"Northwind images ({name})",
                          "identifier": {"uniqueName": f"{SUBS[sub]}-{name.upper()}"},
                          "provisioningState": "Succeeded"}
            if sharing:
                properties["sharingProfile"] = sharing
            out.append({"id": gallery_id, "name": name, "type": "microsoft.compute/galleries",
                        "location": "westeurope", "subscriptionId": SUBS[sub], "resourceGroup": rg,
                        "tags": tags(), "properties": properties})
        definition_id = gallery_id + "/images/" + image
        out.append({"id": definition_id, "name": image, "type": "microsoft.compute/galleries/images",
                    "location": "westeurope", "subscriptionId": SUBS[sub], "resourceGroup": rg,
                    "tags": tags(), "properties": {
                        "osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
                        "architecture": "x64",
                        "identifier": {"publisher": "northwind", "offer": image, "sku": "1"},
                        "provisioningState": "Succeeded"}})
        for n in range(6):
            published = COLLECTED_AT - timedelta(days=30 * (6 - n) + 5)
            targets = [{"name": REGION_NAMES[r], "regionalReplicaCount": 3 if n == 5 else 1,
                        "storageAccountType": st, "excludeFromLatest": False} for r, st in TARGETS]
            state = "Succeeded"
            if image == "ubuntu-24-base" and n == 0:  # replicas being added: replication runs
                targets[0]["regionalReplicaCount"] = 2
                state = "Updating"
            out.append({
                "id": f"{definition_id}/versions/1.{n}.0", "name": f"1.{n}.0",
                "type": "microsoft.compute/galleries/images/versions", "location": "westeurope",
                "subscriptionId": SUBS[sub], "resourceGroup": rg,
                "tags": tags(created=published.date().isoformat()),
                "properties": {
                    "publishingProfile": {
                        "targetRegions": targets, "replicaCount": 1,
                        "publishedDate": iso(published),
                        "endOfLifeDate": iso(published + timedelta(days=365)),
                        "storageAccountType": "Standard_ZRS", "excludeFromLatest": False,
                        "replicationMode": "Full"},
                    "storageProfile": {
                        "source": {"id": arm(sub, "rg-build", "images", f"{image}-1.{n}.0")},
                        "osDiskImage": {"sizeInGB": 30, "hostCaching": "ReadWrite"},
                        "dataDiskImages": []},
                    "safetyProfile": {"allowDeletionOfReplicatedLocations": False,
                                      "blockDeletionBeforeEndOfLife": True},
                    "provisioningState": state}})
        if name == "gal_partner":  # the partner team's group reads the gallery (RBAC sharing)
            assignment = "3e0c6a52-8f4d-4b1e-9c7a-5d2f1e0b9a41"
            out.append({
                "id": f"{gallery_id}/providers/Microsoft.Authorization/roleAssignments/{assignment}",
                "name": assignment, "type": "microsoft.authorization/roleassignments",
                "subscriptionId": SUBS[sub], "resourceGroup": rg, "location": "",
                "properties": {
                    "scope": gallery_id, "principalId": "9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e",
                    "principalType": "Group",
                    "roleDefinitionId": f"/subscriptions/{SUBS[sub]}/providers/"
                                        f"Microsoft.Authorization/roleDefinitions/{READER}",
                    "createdOn": "2025-02-03T09:15:00.1234567Z"}})
    # API 2018-06-01: the source in publishingProfile, no storage type (Standard_LRS), no
    # safety profile. Old and unused (RET001); its managed image is its source, not unused.
    image = managed_image("img-ubuntu-24-base-0.9.0", sub="platform", rg="rg-build")
    definition_id = arm("platform", "rg-images-prod", "galleries", "gal_platform_prod", "images",
                        "ubuntu-24-base")
    out += [image, {
        "id": f"{definition_id}/versions/0.9.0", "name": "0.9.0",
        "type": "Microsoft.Compute/galleries/images/versions", "location": "West Europe",
        "tags": tags(created="2018-09-03", **{"sample-case": "RET001"}),
        "properties": {
            "publishingProfile": {
                "targetRegions": [{"name": "West Europe", "regionalReplicaCount": 1}],
                "source": {"managedImage": {"id": image["id"]}},
                "replicaCount": 1, "publishedDate": "2018-09-03T10:00:00Z",
                "endOfLifeDate": "2027-09-03T00:00:00Z"},
            "storageProfile": {"osDiskImage": {"sizeInGB": 30, "hostCaching": "ReadOnly"}},
            "provisioningState": "Succeeded"}}]
    return out
def legacy_and_licensing() -> list[dict]:
    """Machines on unmanaged OS disks, as API 2017-12-01 returned them (LEG001): a VM deployed
    from a Marketplace image onto a VHD and a scale set whose OS disks live in storage
    containers; a VM from a third-party Marketplace image, which carries a plan (LIC001); and
    a VM restored onto an attached OS disk (COV002)."""
    web = vm("vm-classic-web-01", "apps", "rg-classic", "westeurope",
             marketplace("ubuntu"), case="LEG001", power="running", os_disk={
                 "osType": "Linux", "name": "vm-classic-web-01-osdisk", "createOption": "FromImage",
                 "vhd": {"uri": "https://nwclassicdisks.blob.core.windows.net/vhds/"
                                "vm-classic-web-01-osdisk.vhd"},
                 "caching": "ReadWrite", "diskSizeGB": 30})
    batch = vmss("vmss-classic-batch", "data", "rg-classic", "northeurope",
                 marketplace("ubuntu"), 4, case="LEG001")
    batch["properties"]["virtualMachineProfile"]["storageProfile"]["osDisk"] = {
        "vhdContainers": ["https://nwclassicbatch0.blob.core.windows.net/vhds",
                          "https://nwclassicbatch1.blob.core.windows.net/vhds"],
        "name": "vmss-classic-batch-osdisk", "createOption": "FromImage", "caching": "ReadWrite"}
    firewall = vm("vm-fw-edge-01", "platform", "rg-network", "westeurope", {
        "publisher": "fortinet", "offer": "fortinet_fortigate-vm_v5",
        "sku": "fortinet_fg-vm_payg_2023", "version": "7.4.3"}, case="LIC001")
    firewall["plan"] = {"name": "fortinet_fg-vm_payg_2023", "publisher": "fortinet",
                        "product": "fortinet_fortigate-vm_v5"}
    return [web, batch, firewall, restored_machine()] + labelled_as_marketplace()


def restored_machine() -> dict:
    """A VM made by attaching an existing OS disk, as an Azure Backup restore or a Site
    Recovery failover leaves it (COV002): `createOption` Attach, no imageReference and no
    osProfile, so its image lineage is unknown and no image rule can judge it (APR001 calls
    it of unknown origin)."""
    item = vm("vm-erp-restored-01", "apps", "rg-erp-dr", "northeurope", {},
              case="COV002,APR001")
    properties = item["properties"]
    del properties["osProfile"]
    properties["storageProfile"] = {"osDisk": {
        "osType": "Linux", "name": "vm-erp-restored-01-osdisk", "createOption": "Attach",
        "caching": "ReadWrite", "diskSizeGB": 64, "managedDisk": {
            "storageAccountType": "Premium_LRS",
            "id": item["id"].replace("/virtualMachines/", "/disks/") + "-osdisk"}},
        "dataDisks": []}
    return item


def labelled_as_marketplace() -> list[dict]:
    """A team's own gallery whose definition copies Canonical's publisher/offer/sku: the
    identifier is free text, so it approves nothing (APR001 approves galleries by id)."""
    sub, rg, name, location = "apps", "rg-team-sandbox", "gal_team_sandbox", "westeurope"
    gallery_id = arm(sub, rg, "galleries", name)
    definition_id = gallery_id + "/images/ubuntu-22_04-lts"
    published = COLLECTED_AT - timedelta(days=20)
    targets = [{"name": REGION_NAMES[location], "regionalReplicaCount": 3,
                "storageAccountType": "Standard_ZRS", "excludeFromLatest": False}]
    return [
        {"id": gallery_id, "name": name, "type": "Microsoft.Compute/galleries",
         "location": location, "subscriptionId": SUBS[sub], "resourceGroup": rg,
         "tags": tags(env="dev", team="apps"),
         "properties": {"description": "Team sandbox images",
                        "identifier": {"uniqueName": f"{SUBS[sub]}-{name.upper()}"},
                        "provisioningState": "Succeeded"}},
        {"id": definition_id, "name": "ubuntu-22_04-lts", "location": location,
         "type": "Microsoft.Compute/galleries/images", "tags": tags(env="dev", team="apps"),
         "properties": {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
                        "architecture": "x64",
                        "identifier": {"publisher": "Canonical",
                                       "offer": "0001-com-ubuntu-server-jammy",
                                       "sku": "22_04-lts-gen2"},
                        "provisioningState": "Succeeded"}},
        {"id": definition_id + "/versions/1.0.0", "name": "1.0.0", "location": location,
         "type": "Microsoft.Compute/galleries/images/versions",
         "tags": tags(env="dev", team="apps", created=published.date().isoformat()),
         "properties": {
             "publishingProfile": {"targetRegions": targets, "replicaCount": 1,
                                   "publishedDate": iso(published),
                                   "endOfLifeDate": iso(published + timedelta(days=365)),
                                   "storageAccountType": "Standard_LRS",
                                   "excludeFromLatest": False, "replicationMode": "Full"},
             "storageProfile": {"osDiskImage": {"sizeInGB": 30, "hostCaching": "ReadWrite"},
                                "dataDiskImages": []},
             "safetyProfile": {"allowDeletionOfReplicatedLocations": False,
                               "blockDeletionBeforeEndOfLife": True},
             "replicationStatus": {"aggregatedState": "Completed", "summary": [
                 {"region": REGION_NAMES[location], "state": "Completed", "details": "",
                  "progress": 100}]},
             "provisioningState": "Succeeded"}},
        vm("vm-team-dev-01", sub, "rg-team-dev", location,
           {"id": definition_id + "/versions/1.0.0"}, env="dev", case="APR001"),
    ]


def automatic_upgrade(item: dict, probe: bool = True) -> dict:
    """A scale set with automatic OS image upgrade (API 2024-03-01 shape), with or without a
    load balancer health probe."""
    props = item["properties"]
    props["upgradePolicy"] = {"mode": "Rolling", "automaticOSUpgradePolicy": {
        "enableAutomaticOSUpgrade": True, "disableAutomaticRollback": False}}
    if probe:
        sub, rg = item["subscriptionId"], item["resourceGroup"]
        props["virtualMachineProfile"]["networkProfile"] = {"healthProbe": {"id": (
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/"
            f"loadBalancers/lb-{item['name']}/probes/http")}}
    return item


def usage_cases() -> list[dict]:
    """Which version a machine runs, and what automatic OS image upgrade needs: a scale set
    with it on but no health signal (PIN003); a Flexible scale set whose member VMs are the
    machines (counted once); a scale set in a region where no version serves `latest`
    (REP007); a VM pinned to a version since deleted (REP012); an AKS node pool, which
    its platform patches (left out of PIN/APR/TAG/GEN)."""
    out = [automatic_upgrade(vmss("vmss-web-autoupgrade", "apps", "rg-web", "westeurope",
                                  {"id": definition_id(3)}, 4, case="PIN003"), probe=False)]
    flex = vmss("vmss-flex-workers", "platform", "rg-workers", "westeurope",
                {"id": definition_id(0)}, 2, case="PIN002")
    flex["properties"]["orchestrationMode"] = "Flexible"
    flex["properties"]["upgradePolicy"] = {"mode": "Manual"}
    flex["properties"]["virtualMachineProfile"]["extensionProfile"] = {"extensions": [{
        "name": "HealthExtension", "properties": {
            "publisher": "Microsoft.ManagedServices", "type": "ApplicationHealthLinux",
            "typeHandlerVersion": "2.0", "settings": {"protocol": "http", "port": 80}}}]}
    out.append(flex)
    members = []
    for i in range(2):
        member = vm(f"vmss-flex-workers_{i:08x}", "platform", "rg-workers", "westeurope",
                    {"id": definition_id(0), "exactVersion": version_name(0, newest(0))})
        member["properties"]["virtualMachineScaleSet"] = {"id": flex["id"]}
        members.append(member)
    out += members + os_disks(members)
    out.append(automatic_upgrade(vmss("vmss-apac", "platform", "rg-apac", "southeastasia",
                                      {"id": definition_id(0)}, 2, case="REP007")))
    out.append(vm("vm-deleted-version", "platform", "rg-services", "westeurope",
                  {"id": definition_id(0) + "/versions/0.9.0"}, case="REP012"))
    aks_rg = "MC_rg-aks_aks-prod_westeurope"
    aks = vmss("aks-nodepool1-12345678-vmss", "apps", aks_rg, "westeurope", {
        "id": "/subscriptions/109a5e88-712a-48ae-9078-9ca8b3c81345/resourceGroups/AKS-Ubuntu/"
              "providers/Microsoft.Compute/galleries/AKSUbuntu/images/2204gen2containerd/"
              "versions/202410.09.0"}, 3)
    aks["tags"] = {"aks-managed-poolName": "nodepool1",
                   "aks-managed-orchestrator": "Kubernetes:1.30.5",
                   "aks-managed-createOperationID": "5f1d3c2e-8a7b-4c6d-9e0f-1a2b3c4d5e6f"}
    aks["properties"]["orchestrationMode"] = "Uniform"
    aks["properties"]["upgradePolicy"] = {"mode": "Manual"}
    out.append(aks)
    return out


# --- sharing, disaster recovery and purchase plan lineage (SHR, REP008, LIC002) ----------------

FOREIGN_TENANT = "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6"  # a partner's tenant (fictional)


def sharing_and_lineage_cases() -> list[dict]:
    """A gallery of network appliance images shared directly to an audited subscription and
    to a partner's tenant (SHR002), in one region with no counterpart (REP008); its
    definition lacks the Marketplace plan of the firewall VM its version was built from, and
    the production VM deployed from it carries that plan (LIC002)."""
    sub, rg, location = "platform", "rg-images-network", "westeurope"
    gallery_id = arm(sub, rg, "galleries", "gal_network_appliances")
    published = COLLECTED_AT - timedelta(days=20)
    gallery_item = {
        "id": gallery_id, "name": "gal_network_appliances",
        "type": "Microsoft.Compute/galleries", "location": location,
        "subscriptionId": SUBS[sub], "resourceGroup": rg,
        "tags": tags(**{"sample-case": "SHR002,REP008"}),
        "properties": {
            "description": "Northwind network appliance images",
            "identifier": {"uniqueName": f"{SUBS[sub]}-GAL_NETWORK_APPLIANCES"},
            "sharingProfile": {"permissions": "Groups", "groups": [
                {"type": "Subscriptions", "ids": [SUBS["apps"]]},
                {"type": "AADTenants", "ids": [FOREIGN_TENANT]}]},
            "provisioningState": "Succeeded"}}
    definition_item = {
        "id": gallery_id + "/images/fortigate-hardened", "name": "fortigate-hardened",
        "type": "Microsoft.Compute/galleries/images", "location": location,
        "subscriptionId": SUBS[sub], "resourceGroup": rg,
        "tags": tags(**{"sample-case": "LIC002"}),
        "properties": {
            "osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
            "architecture": "x64",
            "identifier": {"publisher": "northwind", "offer": "fortigate", "sku": "hardened"},
            "provisioningState": "Succeeded"}}
    firewall = arm("platform", "rg-network", "virtualMachines", "vm-fw-edge-01")
    version_item = {
        "id": definition_item["id"] + "/versions/1.0.0", "name": "1.0.0",
        "type": "Microsoft.Compute/galleries/images/versions", "location": location,
        "tags": tags(created=published.date().isoformat(), **{"sample-case": "REP008"}),
        "properties": {
            "publishingProfile": {
                "targetRegions": [{"name": "West Europe", "regionalReplicaCount": 3,
                                   "storageAccountType": "Standard_ZRS",
                                   "excludeFromLatest": False}],
                "replicaCount": 1, "publishedDate": iso(published),
                "endOfLifeDate": iso(published + timedelta(days=365)),
                "storageAccountType": "Standard_ZRS", "excludeFromLatest": False,
                "replicationMode": "Full"},
            "storageProfile": {"source": {"id": firewall},
                               "osDiskImage": {"sizeInGB": 2, "hostCaching": "ReadWrite"},
                               "dataDiskImages": []},
            "safetyProfile": {"allowDeletionOfReplicatedLocations": False,
                              "blockDeletionBeforeEndOfLife": True},
            "replicationStatus": {"aggregatedState": "Completed", "summary": [
                {"region": "West Europe", "state": "Completed", "details": "", "progress": 100}]},
            "provisioningState": "Succeeded"}}
    machine = vm("vm-fw-gallery-01", "platform", "rg-network", location,
                 {"id": version_item["id"]}, team="network", case="APR001,LIC001,LIC002")
    machine["plan"] = {"name": "fortinet_fg-vm_payg_2023", "publisher": "fortinet",
                       "product": "fortinet_fortigate-vm_v5"}
    return [gallery_item, definition_item, version_item, machine]


def scale_set_instances() -> list[dict]:
    """A Uniform scale set pinned to the newest version of its definition, with its instances
    as Resource Graph's `computeresources` table holds them: one still on the version before
    and not on the latest model (STL007), one whose model view records no image."""
    pinned = definition_id(0) + "/versions/" + version_name(0, newest(0))
    scale_set = vmss("vmss-batch-uniform", "apps", "rg-batch", "westeurope", {"id": pinned}, 3,
                     case="STL007")
    scale_set["properties"]["orchestrationMode"] = "Uniform"
    scale_set["properties"]["upgradePolicy"] = {"mode": "Manual"}
    out = [scale_set]
    runs = [newest(0), newest(0), newest(0) - 1, None]
    for number, n in enumerate(runs):
        properties = {"latestModelApplied": n != newest(0) - 1, "provisioningState": "Succeeded",
                      "storageProfile": {"osDisk": {"osType": "Linux", "createOption": "FromImage"}},
                      "extended": {"instanceView": {"powerState": {"code": "PowerState/running"}}}}
        if n is not None:
            properties["storageProfile"]["imageReference"] = {
                "id": definition_id(0), "exactVersion": version_name(0, n)}
        else:
            del properties["latestModelApplied"]
        out.append({"id": f"{scale_set['id']}/virtualMachines/{number}",
                    "name": f"vmss-batch-uniform_{number}",
                    "type": "microsoft.compute/virtualmachinescalesets/virtualmachines",
                    "location": "westeurope", "subscriptionId": SUBS["apps"],
                    "resourceGroup": "rg-batch", "tags": {}, "properties": properties})
    return out


def build() -> list[dict]:
    resources = [gallery(i) for i in range(len(GALLERIES))]
    resources += [definition(i) for i in range(len(DEFINITIONS))]
    resources += [version(i, n) for i in range(len(DEFINITIONS)) for n in range(DEFINITIONS[i][5])]
    resources.append(failed_build())
    resources += MANAGED_IMAGES
    machine_list = machines()
    resources += machine_list + os_disks(machine_list) + others()
    resources += retention_cases()
    resources += legacy_and_licensing()
    resources += usage_cases()
    resources += security_cases()
    resources += sharing_and_lineage_cases()
    resources += deprecation_and_lock_cases()
    resources += scale_set_instances()
    return resources


# --- security and legacy images (STL006, SEC001-SEC003, IMG001, IMG002) ------------------------

def _security_definition(name: str, features: list[dict] | None, generation: str = "V2",
                         case: str | None = None) -> dict:
    sub, rg, gallery_name, location, _ = GALLERIES[0]
    properties = {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": generation,
                  "architecture": "x64",
                  "identifier": {"publisher": "northwind", "offer": "secure", "sku": name},
                  "provisioningState": "Succeeded"}
    if features is not None:
        properties["features"] = features
    item_tags = tags()
    if case:
        item_tags["sample-case"] = case
    return {"id": arm(sub, rg, "galleries", gallery_name, "images", name), "name": name,
            "type": "Microsoft.Compute/galleries/images", "location": location,
            "tags": item_tags, "properties": properties}


def _security_version(definition: dict, name: str, published: datetime, end_of_life: datetime,
                      safety: dict | None = None, encryption: dict | None = None,
                      case: str | None = None) -> dict:
    """A version in West Europe only (3 ZRS replicas), in the API 2024-03-03 shape."""
    target = {"name": "West Europe", "regionalReplicaCount": 3,
              "storageAccountType": "Standard_ZRS", "excludeFromLatest": False}
    if encryption:
        target["encryption"] = encryption
    version_tags = tags(created=published.date().isoformat())
    if case:
        version_tags["sample-case"] = case
    return {"id": definition["id"] + f"/versions/{name}", "name": name,
            "type": "Microsoft.Compute/galleries/images/versions", "location": "westeurope",
            "tags": version_tags, "properties": {
                "publishingProfile": {
                    "targetRegions": [target], "replicaCount": 3,
                    "publishedDate": iso(published), "endOfLifeDate": iso(end_of_life),
                    "storageAccountType": "Standard_ZRS", "excludeFromLatest": False,
                    "replicationMode": "Full"},
                "storageProfile": {"source": {"id": arm("platform", "rg-build", "images",
                                                        f"{definition['name']}-{name}")},
                                   "osDiskImage": {"sizeInGB": 30, "hostCaching": "ReadWrite"}},
                "safetyProfile": {"allowDeletionOfReplicatedLocations": False,
                                  "blockDeletionBeforeEndOfLife": True, **(safety or {})},
                "provisioningState": "Succeeded"}}


def security_cases() -> list[dict]:
    """A definition whose only version is past its end of life, so `latest` gives it to every
    new deployment (STL006); a TrustedLaunchSupported definition whose production VM runs
    Standard (SEC002) and whose older version Azure reported for a policy violation (SEC001);
    a Generation 1 definition and its production VM (SEC002); a confidential VM image whose
    version names no confidential encryption (SEC003, enabled by the sample config); a scale
    set on a managed image whose autoscale maximum passes 600 (IMG002, and IMG001)."""
    recent = COLLECTED_AT - timedelta(days=40)
    eol = _security_definition("ubuntu-24-short-lived", [
        {"name": "SecurityType", "value": "TrustedLaunch"}], case="STL006")
    trusted = _security_definition("ubuntu-24-tl", [
        {"name": "SecurityType", "value": "TrustedLaunchSupported"},
        {"name": "IsAcceleratedNetworkSupported", "value": "True"}])
    gen1 = _security_definition("win2016-gen1", None, generation="V1", case="SEC002")
    confidential = _security_definition("ubuntu-22-cvm", [
        {"name": "SecurityType", "value": "ConfidentialVM"}])
    out = [eol, trusted, gen1, confidential,
           _security_version(eol, "1.0.0", recent, COLLECTED_AT - timedelta(days=5)),
           _security_version(trusted, "1.0.0", recent, recent + timedelta(days=365)),
           _security_version(trusted, "0.9.0", recent - timedelta(days=20),
                             recent + timedelta(days=345), safety={
                                 "reportedForPolicyViolation": True, "policyViolations": [
                                     {"category": "ImageFlaggedUnsafe",
                                      "details": "Malware found in the image during a scan."}]},
                             case="SEC001"),
           _security_version(gen1, "1.0.0", recent, recent + timedelta(days=365)),
           _security_version(confidential, "1.0.0", recent, recent + timedelta(days=365),
                             encryption={"osDiskImage": {"diskEncryptionSetId": arm(
                                 "platform", "rg-keys", "diskEncryptionSets", "des-weu")}},
                             case="SEC003")]
    standard = vm("vm-api-tl-standard", "apps", "rg-api", "westeurope",
                  {"id": trusted["id"] + "/versions/1.0.0"}, case="SEC002")
    standard["properties"]["securityProfile"] = {"securityType": "Standard"}
    trusted_vm = vm("vm-api-tl", "apps", "rg-api", "westeurope",
                    {"id": trusted["id"] + "/versions/1.0.0"})
    trusted_vm["properties"]["securityProfile"] = {
        "securityType": "TrustedLaunch", "uefiSettings": {"secureBootEnabled": True,
                                                          "vTpmEnabled": True}}
    old = vm("vm-erp-gen1", "apps", "rg-erp", "westeurope", {"id": gen1["id"] + "/versions/1.0.0"},
             case="SEC002")
    legacy = vmss("vmss-legacy-render", "apps", "rg-render", "westeurope",
                  {"id": arm("apps", "rg-legacy-images", "images", "img-jumpbox-1.4.0")}, 20,
                  case="IMG001,IMG002")
    target = legacy["id"]
    autoscale = {
        "id": f"/subscriptions/{SUBS['apps']}/resourceGroups/rg-render/providers/"
              "microsoft.insights/autoscalesettings/vmss-legacy-render-autoscale",
        "name": "vmss-legacy-render-autoscale", "type": "microsoft.insights/autoscalesettings",
        "location": "westeurope", "subscriptionId": SUBS["apps"], "resourceGroup": "rg-render",
        "tags": {}, "properties": {"enabled": True, "targetResourceUri": target, "profiles": [
            {"name": "default", "capacity": {"minimum": "20", "maximum": "800", "default": "20"},
             "rules": []}]}}
    return out + [standard, trusted_vm, old, legacy, autoscale]


# --- ARM reads: Marketplace deprecation status and management locks ---------------------------

def marketplace_body(sub, location, urn, status):
    """A Marketplace version as `collect --marketplace` saves its GET (status None: a 404)."""
    publisher, offer, sku, version = urn.split(":")
    path = (f"/Subscriptions/{SUBS[sub]}/Providers/Microsoft.Compute/Locations/{location}/"
            f"Publishers/{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/"
            f"Versions/{version}")
    if status is None:
        return {"id": path, "error": {"code": "NotFound",
                                      "message": "Artifact: VMImage was not found."}}
    return {"id": path, "location": location, "name": version,
            "properties": {"architecture": "x64", "hyperVGeneration": "V2",
                           "osDiskImage": {"operatingSystem": "Linux", "sizeInGb": 30},
                           "dataDiskImages": [], "imageDeprecationStatus": status}}


def lock(sub, scope, name, level="CanNotDelete"):
    return {"id": f"/subscriptions/{SUBS[sub]}{scope}/providers/Microsoft.Authorization/locks/"
                  f"{name}", "type": "Microsoft.Authorization/locks", "name": name,
            "properties": {"level": level, "notes": "Northwind golden images"}}


def deprecation_and_lock_cases() -> list[dict]:
    """Machines on deprecated or end-of-support Marketplace images (DEP001, DEP002) with the
    version GET bodies `collect --marketplace` saved; the lock lists `collect --locks` saved
    for two subscriptions (the third's stays unknown): the sandbox gallery has no delete lock
    (REP009); an old version kept in two regions on Premium storage (REP010, REP011)."""
    focal = "Canonical:0001-com-ubuntu-server-focal:20_04-lts-gen2:20.04.202301100"
    jammy_old = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:22.04.202301140"
    centos = "OpenLogic:CentOS:7_9-gen2:7.9.2022101800"
    jammy = ":".join(MARKETPLACE["ubuntu"])

    def ref(urn, latest=False):
        publisher, offer, sku, version = urn.split(":")
        out = {"publisher": publisher, "offer": offer, "sku": sku,
               "version": "latest" if latest else version}
        if latest:
            out["exactVersion"] = version
        return out

    out = [vm("vm-focal-deprecated", "apps", "rg-app-legacy", "westeurope", ref(focal),
              case="DEP001,DEP002"),
           vm("vm-jammy-scheduled", "data", "rg-app-legacy", "northeurope", ref(jammy_old),
              case="DEP001"),
           vmss("vmss-jammy-gone", "apps", "rg-app-legacy", "westeurope",
                ref(jammy_old, latest=True), 2, case="DEP001,PIN001"),
           vm("vm-centos7-marketplace", "data", "rg-app-legacy", "eastus", ref(centos),
              case="DEP002,APR001")]
    out += [marketplace_body("apps", "westeurope", focal, {
                "imageState": "Deprecated", "scheduledDeprecationTime": "2026-06-30T00:00:00+00:00",
                "alternativeOption": {"type": "Offer",
                                      "value": "Canonical:ubuntu-24_04-lts:server"}}),
            marketplace_body("data", "northeurope", jammy_old, {
                "imageState": "ScheduledForDeprecation",
                "scheduledDeprecationTime": "2027-01-15T00:00:00+00:00",
                "alternativeOption": {"type": "Offer",
                                      "value": "Canonical:ubuntu-24_04-lts:server"}}),
            marketplace_body("apps", "westeurope", jammy_old, None),
            marketplace_body("apps", "westeurope", jammy, {"imageState": "Active"}),
            marketplace_body("data", "eastus", centos, {"imageState": "Active"})]
    for sub, locks in (("platform", [lock("platform", "/resourceGroups/rg-images-prod", "keep-prod")]),
                       ("apps", [lock("apps", "/resourceGroups/rg-images-apps/providers/"
                                      "Microsoft.Compute/galleries/gal_apps_shared", "keep-gallery"),
                                 lock("apps", "/resourceGroups/rg-web", "web-readonly", "ReadOnly")])):
        out.append({"id": f"/subscriptions/{SUBS[sub]}/providers/Microsoft.Authorization/locks",
                    "value": locks})
    published = COLLECTED_AT - timedelta(days=400)
    out.append(version_body(0, "0.8.0", GALLERIES[0][3], tags(
        created=published.date().isoformat(), **{"sample-case": "REP010,REP011,RET001"}), {
            "targetRegions": [{"name": "West Europe", "regionalReplicaCount": 2,
                               "storageAccountType": "Premium_LRS", "excludeFromLatest": False},
                              {"name": "North Europe", "regionalReplicaCount": 1,
                               "storageAccountType": "Standard_ZRS", "excludeFromLatest": False}],
            "replicaCount": 1, "publishedDate": iso(published),
            "endOfLifeDate": iso(published + timedelta(days=730)),
            "storageAccountType": "Standard_ZRS", "excludeFromLatest": False,
            "replicationMode": "Full"},
        {"allowDeletionOfReplicatedLocations": False, "blockDeletionBeforeEndOfLife": True},
        "Succeeded"))
    return out


def render() -> str:
    document = {"collectedAt": iso(COLLECTED_AT), "tenant": "Northwind Traders (fictional)",
                "scope": SCOPE, "data": build()}
    return json.dumps(document, indent=1, sort_keys=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT} ({len(build())} resources)", file=sys.stderr)
