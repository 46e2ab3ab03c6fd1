"""Small builders of raw Azure resources (ARM / Resource Graph shape) for tests.

Every builder defaults to a compliant resource; a test changes only what its case is about.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from auditor.estate import Estate
from auditor.snapshot import build_snapshot

SUB = "11111111-2222-3333-4444-555555555555"
RG = "rg-img"
AS_OF = datetime(2026, 11, 15, tzinfo=timezone.utc)
GOOD_TAGS = {"environment": "production", "team": "platform", "created": "2026-01-01"}


def rid(*path: str, sub: str = SUB, rg: str = RG) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/" + "/".join(path)


def gallery(name="gal", tags=None, **extra) -> dict:
    item = {"id": rid("galleries", name), "name": name, "type": "Microsoft.Compute/galleries",
            "location": "westeurope", "subscriptionId": SUB, "resourceGroup": RG,
            "tags": dict(GOOD_TAGS) if tags is None else tags, "properties": {}}
    item.update(extra)
    return item


def definition(name="base", gallery_name="gal", os_state="Generalized", tags=None,
               **props) -> dict:
    properties = {"osType": "Linux", "osState": os_state, "hyperVGeneration": "V2",
                  "identifier": {"publisher": "contoso", "offer": "base", "sku": name},
                  "provisioningState": "Succeeded"}
    properties.update(props)
    return {"id": rid("galleries", gallery_name, "images", name), "name": name,
            "type": "Microsoft.Compute/galleries/images", "location": "westeurope",
            "tags": dict(GOOD_TAGS) if tags is None else tags, "properties": properties}


def version(name="1.0.0", definition_name="base", gallery_name="gal",
            regions=(("West Europe", 1, "Standard_LRS"),), published="2026-11-01T00:00:00Z",
            end_of_life="2027-11-01T00:00:00Z", tags=None, exclude_from_latest=False,
            state="Succeeded", **publishing) -> dict:
    profile = {"targetRegions": [{"name": r, "regionalReplicaCount": n, "storageAccountType": s}
                                 for r, n, s in regions],
               "replicaCount": 1, "publishedDate": published, "endOfLifeDate": end_of_life,
               "storageAccountType": "Standard_LRS", "excludeFromLatest": exclude_from_latest}
    profile.update(publishing)
    if end_of_life is None:
        profile.pop("endOfLifeDate")
    return {"id": rid("galleries", gallery_name, "images", definition_name, "versions", name),
            "name": name, "type": "Microsoft.Compute/galleries/images/versions",
            "location": "westeurope", "tags": dict(GOOD_TAGS) if tags is None else tags,
            "properties": {"publishingProfile": profile,
                           "storageProfile": {"osDiskImage": {"sizeInGB": 30}},
                           "safetyProfile": {"allowDeletionOfReplicatedLocations": False},
                           "provisioningState": state}}


def managed_image(name="img-1.0.0", os_state="Generalized", tags=None, blob_uri=None) -> dict:
    os_disk = {"osType": "Linux", "osState": os_state, "diskSizeGB": 30,
               "storageAccountType": "Standard_LRS"}
    if blob_uri:
        os_disk["blobUri"] = blob_uri
    return {"id": rid("images", name), "name": name, "type": "Microsoft.Compute/images",
            "location": "westeurope", "tags": dict(GOOD_TAGS) if tags is None else tags,
            "properties": {"storageProfile": {"osDisk": os_disk, "dataDisks": []},
                           "provisioningState": "Succeeded"}}


def marketplace(version="22.04.202410020", **extra) -> dict:
    ref = {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy",
           "sku": "22_04-lts-gen2", "version": version}
    ref.update(extra)
    return ref


def gallery_ref(definition_name="base", version_name="1.0.0", gallery_name="gal") -> dict:
    path = ["galleries", gallery_name, "images", definition_name]
    if version_name:
        path += ["versions", version_name]
    return {"id": rid(*path)}


def vm(name="vm1", image=None, location="westeurope", tags=None, os_disk=None, plan=None,
       power=None, type_="Microsoft.Compute/virtualMachines") -> dict:
    storage = {"imageReference": marketplace() if image is None else image}
    if os_disk is not None:
        storage["osDisk"] = os_disk
    props = {"hardwareProfile": {"vmSize": "Standard_D2s_v5"}, "storageProfile": storage}
    if power:
        props["extended"] = {"instanceView": {"powerState": {"code": f"PowerState/{power}"}}}
    item = {"id": rid("virtualMachines", name), "name": name, "type": type_,
            "location": location, "subscriptionId": SUB, "resourceGroup": RG,
            "tags": {"environment": "production", "team": "apps"} if tags is None else tags,
            "properties": props}
    if plan:
        item["plan"] = plan
    return item


def vmss(name="ss1", image=None, capacity=3, location="westeurope", tags=None) -> dict:
    return {"id": rid("virtualMachineScaleSets", name), "name": name,
            "type": "Microsoft.Compute/virtualMachineScaleSets", "location": location,
            "sku": {"name": "Standard_D2s_v5", "capacity": capacity},
            "tags": {"environment": "production", "team": "apps"} if tags is None else tags,
            "properties": {"virtualMachineProfile": {"storageProfile": {
                "imageReference": marketplace() if image is None else image}}}}


def disk(machine: dict, version_id: str) -> dict:
    return {"id": machine["id"].replace("/virtualMachines/", "/disks/") + "_os",
            "type": "microsoft.compute/disks", "location": machine["location"],
            "managedBy": machine["id"],
            "properties": {"creationData": {"galleryImageReference": {"id": version_id}}}}


def azure_fixture(name: str, **changes) -> dict:
    """`azure_shape` of tests/fixtures/azure/<name>.json with `changes` applied at the top
    level (a test renames or retargets a body without editing the shared file)."""
    return azure_shape(f"{name}.json") | changes


def snapshot_of(*resources, scope=None):
    return build_snapshot(list(resources), collected_at=AS_OF, scope=scope)


def estate_of(*resources, as_of=None, scope=None) -> Estate:
    return Estate(snapshot_of(*resources, scope=scope), pd.Timestamp(as_of or AS_OF))


def compliant_estate_resources() -> list[dict]:
    """A tiny estate that no rule should flag (used as the 'does not trigger' base)."""
    return [gallery(), definition(), version(regions=(("West Europe", 3, "Standard_ZRS"),)), vm()]


def azure_shape(name: str) -> dict:
    """A fresh copy of a recorded Azure shape from tests/fixtures/azure (its `_source` says
    which API version and document it follows)."""
    import json
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "azure" / name
    return json.loads(path.read_text(encoding="utf-8"))["body"]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`image-audit ARGS` in this process: its exit code, stdout and stderr."""
    import pytest

    from auditor.cli import main
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def one_line(err: str, *fragments: str) -> str:
    """The one line an error prints, holding each of `fragments` (and no traceback)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
