"""`image-audit synth`: a deterministic synthetic tenant of any size, in raw Resource Graph
shape (JSON lines), for benchmarks and for trying the tool on an estate the size of a large
enterprise's. It goes through the normal import path like any export.

Proportions follow what large tenants look like: tens of subscriptions and regions, a few
galleries with hundreds of definitions, 5 to 40 versions per definition, mostly Marketplace
and gallery references, scale sets with capacities. The bulk is random (seeded) with the
untidiness real estates have; besides it, every rule of the pack gets a few resources built
to break it on purpose, tagged `synth-case` = rule id(s), so that even a small estate
triggers every rule.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from auditor.errors import AuditError
from auditor.report import atomic_write

COLLECTED_AT = datetime(2026, 11, 15, 6, 0, tzinfo=timezone.utc)
REGIONS = {
    "eastus": "East US", "eastus2": "East US 2", "westus2": "West US 2", "westus3": "West US 3",
    "centralus": "Central US", "northeurope": "North Europe", "westeurope": "West Europe",
    "uksouth": "UK South", "francecentral": "France Central",
    "germanywestcentral": "Germany West Central", "swedencentral": "Sweden Central",
    "japaneast": "Japan East", "southeastasia": "Southeast Asia",
    "australiaeast": "Australia East", "canadacentral": "Canada Central",
    "brazilsouth": "Brazil South",
}
ENVIRONMENTS = ["production", "production", "staging", "qa", "dev", "test"]
BAD_ENVIRONMENTS = ["Prod", "prd", "PRODUCTION ", "develop"]
TEAMS = ["platform", "payments", "web", "data", "ml", "erp", "identity", "search", "mobile"]
MARKETPLACE = [
    ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "22.04.202410020", "Linux"),
    ("Canonical", "ubuntu-24_04-lts", "server", "24.04.202409250", "Linux"),
    ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition",
     "20348.2762.241009", "Windows"),
    ("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter-gensecond", "17763.6414.241004",
     "Windows"),
    ("RedHat", "RHEL", "9-lvm-gen2", "9.4.2024081415", "Linux"),
    ("MicrosoftCBLMariner", "cbl-mariner", "cbl-mariner-2-gen2", "2.20241006.01", "Linux"),
]
PAID = ("MicrosoftSQLServer", "sql2022-ws2022", "standard-gen2", "16.0.241008", "Windows")
# Machines' securityProfile.securityType by number (None: not recorded, as before API 2025-11-01).
SECURITY_TYPES = ["TrustedLaunch", "Standard", None, "TrustedLaunch", None]
VM_SIZES = ["Standard_D2s_v5", "Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5",
            "Standard_B2ms", "Standard_F4s_v2"]


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S") + ".0000000+00:00"


class _Tenant:
    """The fixed parts of the estate (subscriptions, galleries, definitions, versions), which
    machines then reference."""

    def __init__(self, machines: int, rng: random.Random):
        self.rng = rng
        count = 10 + machines // 50_000
        self.subs = [f"{rng.getrandbits(128):032x}" for _ in range(min(count, 60))]
        self.subs = [f"{s[:8]}-{s[8:12]}-4{s[13:16]}-a{s[17:20]}-{s[20:32]}" for s in self.subs]
        self.regions = list(REGIONS)[:max(6, min(len(REGIONS), 6 + machines // 100_000))]
        galleries = max(2, len(self.subs) // 3)
        # The last gallery holds no definitions: an empty gallery left behind.
        self.galleries = [(self.subs[i % len(self.subs)], f"rg-images-{i:02d}", f"gal_{i:02d}",
                           self.regions[i % len(self.regions)]) for i in range(galleries + 1)]
        definitions = min(400, max(8, machines // 2500))
        self.definitions = []  # (gallery index, name, os type, os state, [(version, regions)])
        for d in range(definitions):
            os_type = "Windows" if d % 3 == 1 else "Linux"
            state = "Specialized" if d % 17 == 5 else "Generalized"
            home = self.galleries[d % galleries][3]
            stale = 200 if d % 6 == 4 else 0  # an image line nobody rebuilds any more
            versions = []
            for n in range(rng.randint(5, 40)):
                others = rng.sample([r for r in self.regions if r != home], rng.randint(0, 3))
                versions.append((f"1.{n}.{rng.randint(0, 3)}", [home] + others, stale))
            self.definitions.append((d % galleries, f"img-{d:03d}-{os_type.lower()}", os_type,
                                     state, versions))
        images = min(500, max(4, machines // 2000))
        self.managed_images = [self.arm(i % len(self.subs), f"rg-legacy-{i % 7}", "images",
                                        f"legacy-{i:03d}") for i in range(images)]

    def arm(self, sub: int, rg: str, *path: str) -> str:
        return (f"/subscriptions/{self.subs[sub]}/resourceGroups/{rg}/providers/"
                "Microsoft.Compute/" + "/".join(path))

    def definition_id(self, d: int) -> str:
        g = self.definitions[d][0]
        sub, rg, name, _ = self.galleries[g]
        return (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/"
                f"galleries/{name}/images/{self.definitions[d][1]}")

    def tags(self, complete: float = 0.9, case: str | None = None) -> dict:
        rng = self.rng
        tags = {"environment": rng.choice(ENVIRONMENTS), "team": rng.choice(TEAMS),
                "created": f"20{rng.randint(21, 26)}-{rng.randint(1, 12):02d}-01"}
        if rng.random() > complete:
            del tags[rng.choice(list(tags))]
        if case:
            tags["synth-case"] = case
        return tags


def _gallery(t: _Tenant, g: int) -> dict:
    sub, rg, name, location = t.galleries[g]
    return {"id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/"
                  f"galleries/{name}", "name": name, "type": "microsoft.compute/galleries",
            "location": location, "subscriptionId": sub, "resourceGroup": rg,
            "tags": t.tags(0.95), "properties": {"description": f"golden images {name}",
                                                 "provisioningState": "Succeeded"}}


def _definition(t: _Tenant, d: int) -> dict:
    g, name, os_type, state, _ = t.definitions[d]
    sub, rg, _, location = t.galleries[g]
    props = {"osType": os_type, "osState": state, "hyperVGeneration": "V2" if d % 5 else "V1",
             "architecture": "x64",
             "identifier": {"publisher": "contoso", "offer": name, "sku": f"sku-{d}"},
             "provisioningState": "Succeeded"}
    if d % 11 == 3:  # a retired image line
        props["endOfLifeDate"] = _iso(COLLECTED_AT - timedelta(days=30 + d))
    if d % 8 == 6:  # a confidential VM image line (SEC003 when enabled)
        props["features"] = [{"name": "SecurityType", "value": "ConfidentialVM"}]
    elif d % 5 and d % 3 == 0:  # Gen2 lines built for Trusted Launch (SEC002's machines)
        props["features"] = [{"name": "SecurityType", "value": "TrustedLaunchSupported"},
                             {"name": "IsAcceleratedNetworkSupported", "value": "True"}]
    return {"id": t.definition_id(d), "name": name, "type": "microsoft.compute/galleries/images",
            "location": location, "subscriptionId": sub, "resourceGroup": rg,
            "tags": t.tags(0.85), "properties": props}


def _version(t: _Tenant, d: int, n: int) -> dict:
    rng = t.rng
    g, _, os_type, _, versions = t.definitions[d]
    sub, rg, _, location = t.galleries[g]
    name, regions, stale = versions[n]
    age = 20 + stale + (len(versions) - 1 - n) * rng.randint(14, 45)
    published = COLLECTED_AT - timedelta(days=age, hours=rng.randint(0, 23))
    storage_type = "Standard_ZRS" if rng.random() < 0.3 else "Standard_LRS"
    if d % 9 == 7:  # an image line stored on Premium for fast scale-out, old versions too
        storage_type = "Premium_LRS"
    targets = [{"name": REGIONS[r], "regionalReplicaCount": rng.randint(1, 3),
                "storageAccountType": storage_type, "excludeFromLatest": False} for r in regions]
    profile = {"targetRegions": targets, "replicaCount": 1,
               "publishedDate": _iso(published), "storageAccountType": storage_type,
               "excludeFromLatest": rng.random() < 0.05,
               "replicationMode": "Shallow" if d % 4 == 0 and n >= len(versions) - 2 else "Full"}
    if rng.random() < 0.85:
        profile["endOfLifeDate"] = _iso(published + timedelta(days=365))
    if d % 23 == 7 and n >= len(versions) - 2:  # `latest` gives an end-of-life version (STL006)
        profile["endOfLifeDate"] = _iso(COLLECTED_AT - timedelta(days=3))
    if d % 2 == 0:  # customer-managed keys in every region (SEC003 when enabled)
        for target in targets:
            target["encryption"] = {"osDiskImage": {"diskEncryptionSetId": t.arm(
                0, "rg-keys", "diskEncryptionSets", f"des-{target['name'].replace(' ', '')}")}}
    data_disks = [{"lun": 0, "sizeInGB": 128, "hostCaching": "None"}] if d % 7 == 2 else []
    properties = {}
    if d % 5 == 1 and n == len(versions) - 1 and len(regions) > 1:
        # As a deep collection reads it: one region failed, the others done or still copying.
        states = ["Failed"] + ["Replicating" if d % 2 else "Completed"] * (len(regions) - 1)
        properties["replicationStatus"] = {"aggregatedState": "Failed", "summary": [
            {"region": REGIONS[r], "state": state, "progress": 100 if state == "Completed" else 40,
             "details": "Quota exceeded for the region" if state == "Failed" else ""}
            for r, state in zip(regions, states, strict=True)]}
    return {"id": t.definition_id(d) + f"/versions/{name}", "name": name,
            "type": "microsoft.compute/galleries/images/versions", "location": location,
            "subscriptionId": sub, "resourceGroup": rg, "tags": t.tags(0.9),
            "properties": {
                "publishingProfile": profile,
                "storageProfile": {
                    "source": {"id": t.arm(0, "rg-build", "images", f"build-{d}-{name}")},
                    "osDiskImage": {"sizeInGB": 127 if os_type == "Windows" else 30,
                                    "hostCaching": "ReadWrite"},
                    "dataDiskImages": data_disks},
                "safetyProfile": _safety_profile(d, n),
                "provisioningState": "Failed" if rng.random() < 0.01 else "Succeeded",
                **properties}}


def _safety_profile(d: int, n: int) -> dict:
    """API 2022-03-03 on: a few old versions Azure reported for a policy violation (SEC001)."""
    if d % 29 == 3 and n == 0:
        return {"allowDeletionOfReplicatedLocations": False, "reportedForPolicyViolation": True,
                "policyViolations": [{"category": "ImageFlaggedUnsafe",
                                      "details": "Malware found in the image during a scan."}]}
    return {"allowDeletionOfReplicatedLocations": False}


def _managed_image(t: _Tenant, i: int) -> dict:
    image_id = t.managed_images[i]
    os_disk = {"osType": "Windows" if i % 3 == 1 else "Linux",
               "osState": "Specialized" if i % 9 == 2 else "Generalized",
               "diskSizeGB": 127 if i % 3 == 1 else 30, "storageAccountType": "Standard_LRS"}
    if i % 10 == 7:
        os_disk["blobUri"] = f"https://legacyvhds{i}.blob.core.windows.net/vhds/legacy-{i}.vhd"
    else:
        os_disk["managedDisk"] = {"id": image_id.replace("/images/", "/disks/") + "-osdisk"}
    return {"id": image_id, "name": image_id.rsplit("/", 1)[1], "type": "microsoft.compute/images",
            "location": t.regions[i % len(t.regions)], "tags": t.tags(0.8),
            "properties": {"storageProfile": {"osDisk": os_disk, "dataDisks": []},
                           "hyperVGeneration": "V2", "provisioningState": "Succeeded",
                           "sourceVirtualMachine": {"id": image_id.replace(
                               "/images/", "/virtualMachines/") + "-src"}}}


def _image_reference(t: _Tenant, roll: float) -> tuple[dict, str, str | None, list[str]]:
    """An imageReference, the OS type, (for a definition reference) the version the OS disk
    was really created from, and the regions where the referenced gallery image is replicated
    (empty for other references)."""
    rng = t.rng
    if roll < 0.50 or roll >= 0.985:
        pub, offer, sku, version, os_type = PAID if roll >= 0.985 else rng.choice(MARKETPLACE)
        return {"publisher": pub, "offer": offer, "sku": sku, "version": version}, os_type, None, []
    if roll < 0.57:
        pub, offer, sku, version, os_type = rng.choice(MARKETPLACE)
        return ({"publisher": pub, "offer": offer, "sku": sku,
                 "version": "latest" if roll < 0.565 else "Latest", "exactVersion": version},
                os_type, None, [])
    d = rng.randrange(len(t.definitions))
    _, _, os_type, _, versions = t.definitions[d]
    if roll < 0.85:
        # Mostly recent versions.
        n = max(0, len(versions) - 1 - int(rng.expovariate(0.4)))
        return ({"id": t.definition_id(d) + f"/versions/{versions[n][0]}"}, os_type, None,
                versions[n][1])
    if roll < 0.90:
        ref = t.definition_id(d) + ("/versions/latest" if roll < 0.87 else "")
        got = rng.randrange(len(versions))
        return ({"id": ref}, os_type, t.definition_id(d) + f"/versions/{versions[got][0]}",
                versions[got][1])
    if roll < 0.92:
        kind = "sharedGalleryImageId" if roll < 0.91 else "communityGalleryImageId"
        prefix = "/SharedGalleries/partner-GAL" if roll < 0.91 else "/CommunityGalleries/pub-1f2e"
        version = "/Versions/2.3.1" if rng.random() < 0.7 else ""
        return {kind: f"{prefix}/Images/hardened-base{version}"}, "Linux", None, []
    if roll < 0.975:
        # The last managed image is never used: one left behind after a migration.
        return {"id": rng.choice(t.managed_images[:-1])}, "Linux", None, []
    return {}, "Windows", None, []


def _machine(t: _Tenant, i: int, cases: dict) -> Iterator[dict]:
    rng = t.rng
    sub = rng.randrange(len(t.subs))
    rg = f"rg-{rng.choice(TEAMS)}-{rng.randrange(40):02d}"
    is_vmss = rng.random() < 0.12 or "upgrade" in cases
    ref, os_type, got, replicated = _image_reference(t, rng.random())
    # Teams deploy where their image is replicated; a few machines land where it is not.
    region = rng.choice(replicated) if replicated and rng.random() < 0.95 \
        else rng.choice(t.regions)
    region = cases.get("region") or region
    ref, os_type, got = cases.get("ref", (ref, os_type, got))
    name = f"{'vmss' if is_vmss else 'vm'}-{i:07d}"
    kind = "virtualMachineScaleSets" if is_vmss else "virtualMachines"
    machine_id = t.arm(sub, rg, kind, name)
    os_disk = {"osType": os_type, "createOption": "FromImage",
               "managedDisk": {"storageAccountType": "Premium_LRS"}}
    if not ref:
        os_disk["image"] = {"uri": f"https://legacyvhds.blob.core.windows.net/vhds/base-{i}.vhd"}
    elif ref.get("publisher") and i % 101 == 17:  # a Marketplace image on unmanaged disks
        del os_disk["managedDisk"]
        account = f"https://classicdisks{i % 7}.blob.core.windows.net/vhds"
        os_disk.update({"vhdContainers": [account]} if is_vmss
                       else {"vhd": {"uri": f"{account}/vm-{i:07d}-osdisk.vhd"}})
    storage = {"imageReference": ref, "osDisk": os_disk}
    # A few VMs were restored onto an attached OS disk (Azure Backup, Site Recovery): no
    # imageReference, no osProfile, createOption Attach, so no image lineage (COV002).
    # Chosen by number, so the random stream stays as it was.
    attached = not is_vmss and not cases and bool(ref) and i % 211 == 5
    if attached:
        storage = {"osDisk": {"osType": os_type, "createOption": "Attach", "managedDisk": {
            "storageAccountType": "Premium_LRS",
            "id": t.arm(sub, rg, "disks", f"{name}-osdisk")}}}
        got = None
    config = "windowsConfiguration" if os_type == "Windows" else "linuxConfiguration"
    os_profile = {"computerName": name[:15], "adminUsername": "azureuser", config: {}}
    roll = rng.random()
    tags = {} if roll < 0.04 else {"environment": rng.choice(
        BAD_ENVIRONMENTS if roll < 0.06 else ENVIRONMENTS), "team": rng.choice(TEAMS)}
    tags.update(cases.get("tags", {}))
    if attached:
        tags["synth-case"] = "COV002"
    item = {"id": machine_id, "name": name,
            "type": "microsoft.compute/virtualmachinescalesets" if is_vmss
            else "microsoft.compute/virtualmachines",
            "location": region, "subscriptionId": t.subs[sub], "resourceGroup": rg,
            "tags": tags}
    size = rng.choice(VM_SIZES)
    if is_vmss:
        item["sku"] = {"name": size, "tier": "Standard", "capacity": rng.choice(
            [0, 2, 3, 5, 10, 20, 50, 100])}
        item["properties"] = {"virtualMachineProfile": {"storageProfile": storage,
                                                        "osProfile": os_profile},
                              "upgradePolicy": {"mode": "Rolling"},
                              "provisioningState": "Succeeded"}
        _upgrade_policy(item, i, cases.get("upgrade"), ref)
        _rolling_policy(item["properties"], i)
    else:
        power = "running" if rng.random() < 0.85 else rng.choice(["deallocated", "stopped"])
        item["properties"] = {"hardwareProfile": {"vmSize": size}, "storageProfile": storage,
                              "osProfile": os_profile,
                              "extended": {"instanceView": {"powerState": {
                                  "code": f"PowerState/{power}"}}},
                              "provisioningState": "Succeeded"}
        if attached:
            del item["properties"]["osProfile"]
    security = SECURITY_TYPES[i % len(SECURITY_TYPES)]  # API 2025-11-01 always says
    if security:
        (item["properties"]["virtualMachineProfile"] if is_vmss
         else item["properties"])["securityProfile"] = {"securityType": security}
    if os_type == "Windows" and i % 7 == 3:  # Azure Hybrid Benefit
        (item["properties"]["virtualMachineProfile"] if is_vmss
         else item["properties"])["licenseType"] = "Windows_Server"
    if ref.get("publisher") == PAID[0] and not attached:
        item["plan"] = {"name": PAID[2], "publisher": PAID[0].lower(), "product": PAID[1]}
    yield item
    if is_vmss and item["properties"].get("orchestrationMode") != "Flexible":
        yield from _instances(item, ref, got, i)
    if got:
        owner = machine_id + ("/virtualMachines/0" if is_vmss else "")
        yield {"id": t.arm(sub, rg, "disks", f"{name}_OsDisk_1"), "name": f"{name}_OsDisk_1",
               "type": "microsoft.compute/disks", "location": region, "managedBy": owner,
               "properties": {"creationData": {"createOption": "FromImage",
                                               "galleryImageReference": {"id": got}}}}


def _instances(scale_set: dict, ref: dict, got: str | None, i: int) -> Iterator[dict]:
    """A Uniform set's first instances (up to three) as Resource Graph's `computeresources`
    holds them: their model view's imageReference with exactVersion (the version their disk
    came from, where known); in some sets one has not applied the latest model, in others the
    model view records no image. Chosen by number, so the random stream stays as it was."""
    exact = got.rsplit("/", 1)[-1] if got else ref.get("exactVersion") or ref.get("version")
    for number in range(min(3, scale_set["sku"]["capacity"])):
        properties = {"provisioningState": "Succeeded",
                      "storageProfile": {"osDisk": {"createOption": "FromImage"}},
                      "extended": {"instanceView": {"powerState": {"code": "PowerState/running"}}}}
        if i % 11:
            properties["latestModelApplied"] = not (i % 6 == 0 and number == 0)
            properties["storageProfile"]["imageReference"] = dict(ref, exactVersion=exact) \
                if exact else dict(ref)
        yield {"id": f"{scale_set['id']}/virtualMachines/{number}",
               "name": f"{scale_set['name']}_{number}",
               "type": "microsoft.compute/virtualmachinescalesets/virtualmachines",
               "location": scale_set["location"], "subscriptionId": scale_set["subscriptionId"],
               "resourceGroup": scale_set["resourceGroup"], "tags": {},
               "properties": properties}


def _rolling_policy(props: dict, i: int) -> None:
    """Some scale sets record `overprovision` (absent means on for a Uniform set) and a
    rolling upgrade policy, some with surge (API 2024-03-01 shape). Chosen by number."""
    if i % 3 == 0:
        props["overprovision"] = i % 2 == 0
    if i % 5 == 1:
        props["upgradePolicy"]["rollingUpgradePolicy"] = {
            "maxBatchInstancePercent": 20 if i % 4 == 1 else 50,
            "maxUnhealthyInstancePercent": 20, "maxUnhealthyUpgradedInstancePercent": 20,
            "pauseTimeBetweenBatches": "PT0S", "maxSurge": i % 10 == 1}


def _upgrade_policy(item: dict, i: int, case: str | None, ref: dict) -> None:
    """Some scale sets upgrade their OS image automatically (API 2024-03-01 shape, a few in
    the 2018-06-01 one), with a health probe or the Application Health extension; some are
    Flexible. Chosen by number, so the random stream stays as it was."""
    props = item["properties"]
    if i % 13 == 0:
        props["orchestrationMode"] = "Flexible"
    floating = (ref.get("version") or "").lower() == "latest" or "/galleries/" in ref.get(
        "id", "") and "/versions/" not in ref.get("id", "").replace("/versions/latest", "")
    if case is None and (i % 4 or not floating):  # automatic upgrade needs `latest`
        return
    if case == "legacy" or i % 20 == 0:
        props["upgradePolicy"] = {"mode": "Rolling", "automaticOSUpgrade": True}
    else:
        props["upgradePolicy"] = {"mode": "Rolling", "automaticOSUpgradePolicy": {
            "enableAutomaticOSUpgrade": True, "disableAutomaticRollback": False}}
    if case is not None:
        return  # built without a health signal (PIN003)
    profile = props["virtualMachineProfile"]
    if i % 8:
        profile["networkProfile"] = {"healthProbe": {"id": item["id"].split("/providers/")[0]
                                                     + "/providers/Microsoft.Network/"
                                                       "loadBalancers/lb/probes/http"}}
    else:
        profile["extensionProfile"] = {"extensions": [{"name": "health", "properties": {
            "publisher": "Microsoft.ManagedServices", "type": "ApplicationHealthLinux",
            "typeHandlerVersion": "2.0"}}]}


def _cases(t: _Tenant) -> list[dict]:
    """Machine variations built to break rules on purpose, whatever the random bulk holds."""
    pub, offer, sku, version, _ = MARKETPLACE[0]
    d = 0
    newest = t.definition_id(d) + f"/versions/{t.definitions[d][4][-1][0]}"
    oldest = t.definition_id(d) + f"/versions/{t.definitions[d][4][0][0]}"
    specialized = next(i for i, item in enumerate(t.definitions) if item[3] == "Specialized")
    return [
        {"ref": ({"publisher": pub, "offer": offer, "sku": sku, "version": "latest",
                  "exactVersion": version}, "Linux", None), "tags": {"synth-case": "PIN001"}},
        {"ref": ({"id": t.definition_id(d)}, "Linux", oldest), "tags": {"synth-case": "PIN002"}},
        {"ref": ({"id": newest}, "Linux", None), "tags": {"environment": "Prod"}},
        {"ref": ({"id": newest}, "Linux", None), "tags": {"synth-case": "REP001"},
         "region": next(r for r in t.regions if r not in t.definitions[d][4][-1][1])},
        {"ref": ({"id": t.definition_id(specialized) + "/versions/"
                  f"{t.definitions[specialized][4][-1][0]}"}, "Linux", None), "tags": {}},
        {"ref": ({"id": oldest}, "Linux", None), "tags": {}},
        {"ref": ({"id": t.definition_id(d)}, "Linux", None), "upgrade": "current",
         "tags": {"synth-case": "PIN003"}},
        {"ref": ({"id": t.definition_id(d)}, "Linux", None), "region": "southafricanorth",
         "tags": {"synth-case": "PIN002,REP007"}},
        {"ref": ({"id": t.definition_id(d) + "/versions/0.0.1"}, "Linux", None),
         "tags": {"synth-case": "REP012"}},
        {"ref": (dict(zip(("publisher", "offer", "sku", "version"), GONE[:4], strict=True)),
                 "Linux", None), "region": t.regions[0], "tags": {"synth-case": "DEP001"}},
        {"ref": (dict(zip(("publisher", "offer", "sku", "version"), CENTOS7[:4], strict=True)),
                 "Linux", None), "tags": {"synth-case": "DEP002"}},
    ]


# --- sharing, disaster recovery and purchase plan lineage (SHR001, SHR002, REP008, LIC002) ----

FOREIGN_TENANT = "f0e1d2c3-b4a5-4968-8776-655443322110"
APPLIANCE_PLAN = {"name": "fg-vm-payg", "publisher": "fortinet", "product": "fortinet_fortigate-vm"}


def _appliance_gallery(t: _Tenant) -> tuple[str, str, str, str]:
    return t.subs[0], "rg-images-appliances", "gal_appliances", t.regions[0]


def _appliance_version_id(t: _Tenant, definition: str, n: int) -> str:
    sub, rg, name, _ = _appliance_gallery(t)
    return (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/"
            f"galleries/{name}/images/{definition}/versions/1.{n}.0")


def _sharing_and_lineage(t: _Tenant) -> Iterator[dict]:
    """A gallery shared with the community (SHR001); a gallery shared directly to another
    tenant (SHR002), in one region, holding a definition with a Marketplace purchase plan and
    one without it whose versions were built from the first's (LIC002); their versions are
    replicated to their home region only (REP008). A case machine deploys the planned image
    without a plan (LIC002)."""
    sub, rg, name, location = _appliance_gallery(t)
    gallery_id = (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/"
                  f"galleries/{name}")
    community_id = gallery_id.replace(f"/{rg}/", "/rg-images-public/").replace(
        f"/galleries/{name}", "/galleries/gal_public")
    yield {"id": community_id, "name": "gal_public", "type": "microsoft.compute/galleries",
           "location": location, "subscriptionId": sub, "resourceGroup": "rg-images-public",
           "tags": t.tags(1.0, case="SHR001"), "properties": {
               "sharingProfile": {"permissions": "Community", "communityGalleryInfo": {
                   "publicNamePrefix": "contoso", "communityGalleryEnabled": True,
                   "publicNames": [f"contoso-{sub}"]}},
               "provisioningState": "Succeeded"}}
    yield {"id": gallery_id, "name": name, "type": "microsoft.compute/galleries",
           "location": location, "subscriptionId": sub, "resourceGroup": rg,
           "tags": t.tags(1.0, case="SHR002"), "properties": {
               "sharingProfile": {"permissions": "Groups", "groups": [
                   {"type": "AADTenants", "ids": [FOREIGN_TENANT]}]},
               "provisioningState": "Succeeded"}}
    for definition, plan, case in (("appliance-fw", APPLIANCE_PLAN, None),
                                   ("appliance-fw-hardened", None, "LIC002")):
        props = {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
                 "identifier": {"publisher": "contoso", "offer": definition, "sku": "1"},
                 "provisioningState": "Succeeded"}
        if plan:
            props["purchasePlan"] = plan
        yield {"id": f"{gallery_id}/images/{definition}", "name": definition,
               "type": "microsoft.compute/galleries/images", "location": location,
               "subscriptionId": sub, "resourceGroup": rg, "tags": t.tags(1.0, case=case),
               "properties": props}
        for n in range(5):
            published = COLLECTED_AT - timedelta(days=10 + 30 * (4 - n))
            source = _appliance_version_id(t, "appliance-fw", n) if case else \
                t.arm(0, "rg-build", "images", f"appliance-{n}")
            yield {"id": _appliance_version_id(t, definition, n), "name": f"1.{n}.0",
                   "type": "microsoft.compute/galleries/images/versions", "location": location,
                   "subscriptionId": sub, "resourceGroup": rg,
                   "tags": t.tags(1.0, case="REP008" if n == 4 and not case else None),
                   "properties": {
                       "publishingProfile": {
                           "targetRegions": [{"name": REGIONS[location],
                                              "regionalReplicaCount": 3,
                                              "storageAccountType": "Standard_ZRS"}],
                           "replicaCount": 1, "publishedDate": _iso(published),
                           "endOfLifeDate": _iso(published + timedelta(days=365)),
                           "storageAccountType": "Standard_ZRS"},
                       "storageProfile": {"source": {"id": source},
                                          "osDiskImage": {"sizeInGB": 2}},
                       "provisioningState": "Succeeded"}}


def _appliance_case(t: _Tenant) -> dict:
    """A production machine on the planned appliance image, carrying no plan (LIC002), on the
    version replicated to one region only (REP008)."""
    return {"ref": ({"id": _appliance_version_id(t, "appliance-fw", 4)}, "Linux", None),
            "tags": {"environment": "production", "synth-case": "LIC002"}}


# Read by ARM GETs (collect --marketplace / --locks), not Resource Graph: as saved bodies.
GONE = ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "22.04.202301140", "Linux")
CENTOS7 = ("OpenLogic", "CentOS", "7_9-gen2", "7.9.2022101800", "Linux")


def _arm_reads(t: _Tenant) -> Iterator[dict]:
    """What `collect --marketplace --locks` adds: a version GET body per Marketplace image
    and region (the SQL image scheduled for deprecation, one old Ubuntu version gone: DEP001),
    and the lock lists of half the subscriptions, the first gallery's group locked (the other
    galleries there: REP009). They come last (the reference normaliser reads these lines of
    their block; the rest of it is still taken by columns)."""
    for pub, offer, sku, version, _ in [*MARKETPLACE, PAID, GONE]:
        for region in t.regions:
            path = (f"/Subscriptions/{t.subs[0]}/Providers/Microsoft.Compute/Locations/{region}/"
                    f"Publishers/{pub}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/"
                    f"Versions/{version}")
            if version == GONE[3]:
                yield {"id": path, "error": {"code": "NotFound", "message": "Artifact: VMImage "
                                             "was not found."}}
                continue
            status = {"imageState": "Active"}
            if pub == PAID[0]:
                status = {"imageState": "ScheduledForDeprecation",
                          "scheduledDeprecationTime": _iso(COLLECTED_AT + timedelta(days=60)),
                          "alternativeOption": {"type": "Offer", "value": "sql2022-ws2025"}}
            yield {"id": path, "location": region, "name": version,
                   "properties": {"architecture": "x64", "imageDeprecationStatus": status}}
    sub, rg = t.galleries[0][:2]
    for subscription in t.subs[: len(t.subs) // 2]:
        locks = [] if subscription != sub else [{
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Authorization/"
                  "locks/keep-images", "type": "Microsoft.Authorization/locks",
            "name": "keep-images", "properties": {"level": "CanNotDelete"}}]
        yield {"id": f"/subscriptions/{subscription}/providers/Microsoft.Authorization/locks",
               "value": locks}


def resources(machines: int, seed: int = 0) -> Iterator[dict]:
    """Every raw resource of the synthetic tenant, generated lazily (never all in memory)."""
    if machines < 1:
        raise AuditError(f"--machines must be at least 1 (got {machines})")
    rng = random.Random(seed)
    t = _Tenant(machines, rng)
    for g in range(len(t.galleries)):
        yield _gallery(t, g)
    for d in range(len(t.definitions)):
        yield _definition(t, d)
        for n in range(len(t.definitions[d][4])):
            yield _version(t, d, n)
    for i in range(len(t.managed_images)):
        yield _managed_image(t, i)
    cases = _cases(t) + [_appliance_case(t)]
    legacy_set = None
    for i in range(machines):
        for item in _machine(t, i, cases[i] if i < len(cases) else {}):
            if legacy_set is None and _on_managed_image(item, "virtualmachinescalesets"):
                legacy_set = item
            yield item
    if legacy_set is not None:
        yield _autoscale_past_managed_image_cap(legacy_set)
    yield {"id": f"/subscriptions/{t.subs[0]}/resourceGroups/rg-net/providers/"
                 "Microsoft.Network/virtualNetworks/vnet-hub",
           "name": "vnet-hub", "type": "microsoft.network/virtualnetworks",
           "location": t.regions[0]}
    yield from _sharing_and_lineage(t)
    yield from _arm_reads(t)  # last: see _arm_reads


def _on_managed_image(item: dict, kind: str) -> bool:
    if not item["type"].lower().endswith(f"/{kind}"):
        return False
    profile = item["properties"].get("virtualMachineProfile", item["properties"])
    reference = ((profile.get("storageProfile") or {}).get("imageReference") or {}).get(
        "id", "").lower()
    return "/providers/microsoft.compute/images/" in reference


def _autoscale_past_managed_image_cap(scale_set: dict) -> dict:
    """An autoscale setting letting the first scale set on a managed image grow to 800,
    past the 600 such a set can hold (IMG002). Made from no random draw, so the estate
    around it stays as it was."""
    name = scale_set["name"] + "-autoscale"
    return {"id": scale_set["id"].split("/providers/")[0]
            + f"/providers/microsoft.insights/autoscalesettings/{name}",
            "name": name, "type": "microsoft.insights/autoscalesettings",
            "location": scale_set["location"], "subscriptionId": scale_set["subscriptionId"],
            "resourceGroup": scale_set["resourceGroup"],
            "properties": {"enabled": True, "targetResourceUri": scale_set["id"], "profiles": [
                {"name": "default", "capacity": {"minimum": "2", "maximum": "800",
                                                 "default": "2"}, "rules": []}]}}


def write_estate(path: Path, machines: int, seed: int = 0) -> int:
    """Write the estate as JSON lines (gzip-compressed when `path` ends in .gz); returns the
    number of resources written."""
    path = Path(path)
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    if not stem.endswith((".jsonl", ".ndjson")):
        raise AuditError(f"{path}: a synthetic estate is JSON lines: name it .jsonl or .jsonl.gz")
    count = 0

    def write(temporary: Path):
        nonlocal count
        with open(temporary, "wb") as raw:
            handle = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) \
                if path.name.endswith(".gz") else raw
            buffer = []
            for item in resources(machines, seed):
                buffer.append(orjson.dumps(item))
                if len(buffer) == 4096:
                    handle.write(b"\n".join(buffer) + b"\n")
                    count += len(buffer)
                    buffer.clear()
            if buffer:
                handle.write(b"\n".join(buffer) + b"\n")
                count += len(buffer)
            if handle is not raw:
                handle.close()
    atomic_write(path, write)
    return count
