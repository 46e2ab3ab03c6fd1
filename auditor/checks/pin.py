"""PIN checks: unpinned image references, judged by what each kind of machine does with
`latest`. A scale set with automatic OS image upgrade must name `latest` (Microsoft's
requirement), so it is judged by PIN003 (does the upgrade work?), never by PIN001/PIN002."""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from auditor.estate import distinct, distinct_rows, lowered

GALLERY_KINDS = ["gallery", "shared", "community"]


@cache
def supported_marketplace_images() -> frozenset[str]:
    """`publisher:offer:sku` (lower-cased) of the Marketplace images automatic OS image
    upgrade supports, as Microsoft lists them (auditor/data/automatic_os_upgrade_images.csv
    names the page and its date)."""
    path = resources.files("auditor.data").joinpath("automatic_os_upgrade_images.csv")
    with path.open(encoding="utf-8") as handle:
        return frozenset(f"{row['publisher']}:{row['offer']}:{row['sku']}".lower()
                         for row in csv.DictReader(handle))


def _column(machines: pd.DataFrame, name: str) -> pd.Series:
    """A column of the machines table (all missing in a snapshot made before it existed)."""
    if name in machines.columns:
        return machines[name]
    return pd.Series(None, index=machines.index, dtype=object)


def _upgrade_view(estate) -> pd.DataFrame:
    """Per machine: how it is judged (scale set or stand-alone VM), whether its reference
    floats (`latest` or a definition), and what automatic OS image upgrade lacks. What
    depends on the image reference is worked out once per distinct reference (a million
    machines use a few thousand) and taken by code."""
    machines = estate.machines
    reference = ["image_kind", "image_version", "image_publisher", "image_offer", "image_sku"]
    first, code = distinct_rows(*(machines[column] for column in reference))
    refs = machines[reference].iloc[first].reset_index(drop=True)
    kind, version = lowered(refs["image_kind"]), lowered(refs["image_version"])
    marketplace = kind.eq("marketplace") & version.eq("latest")
    gallery = kind.isin(GALLERY_KINDS)
    floating = marketplace | (gallery & version.isin(["", "latest"]))
    urn = (lowered(refs["image_publisher"]) + ":" + lowered(refs["image_offer"]) + ":"
           + lowered(refs["image_sku"]))
    listed = urn.isin(supported_marketplace_images())
    pinned = (kind.eq("marketplace") & ~version.eq("latest")) | (gallery & ~floating)
    shown = [refs[column].astype(object).fillna("?").astype(str) for column in reference[2:]]
    image = np.select(
        [kind.eq("marketplace") & ~listed, kind.eq("managed"), kind.isin(["vhd", "unknown"])],
        ["Marketplace image " + shown[0] + ":" + shown[1] + ":" + shown[2]
         + " is not one automatic upgrade supports",
         "a managed image is not supported (only gallery images and the listed "
         "Marketplace images are)",
         "its image is not one automatic upgrade supports"], default="")
    lacks = np.where(pinned, "its image version is pinned (automatic upgrade needs `latest`)",
                     "")
    lacks = np.where(lacks == "", image, np.where(image == "", lacks, lacks + "; " + image))
    # The health text joins per distinct (reference, health) pair too.
    health = (_column(machines, "health_probe_id").notna()
              | _column(machines, "health_extension").notna()).to_numpy(dtype=bool)
    pair_first, pair = distinct(code * 2 + health)
    lacking = lacks[code[pair_first]]
    missing = np.where(health[pair_first], lacking, np.where(
        lacking == "", NO_HEALTH, lacking + "; " + NO_HEALTH))
    members = estate.judged_through_set.notna().to_numpy(dtype=bool)
    scale_set = lowered(machines["kind"]).eq("vmss") | _column(machines, "scale_set_id").notna()
    automatic = scale_set & _column(machines, "automatic_os_upgrade").astype("boolean") \
        .fillna(False).astype(bool)
    return pd.DataFrame({
        "marketplace": marketplace.to_numpy(dtype=bool)[code],
        "gallery": (gallery & floating).to_numpy(dtype=bool)[code],
        "external": (kind.isin(["shared", "community"]) & floating).to_numpy(dtype=bool)[code],
        "member": members, "scale_set": scale_set.to_numpy(dtype=bool),
        "automatic": automatic.to_numpy(dtype=bool),
        "missing": pd.Series(missing.astype(object)[pair], index=machines.index),
    }, index=machines.index)


NO_HEALTH = ("it has neither a load balancer health probe nor the Application Health "
             "extension")


def _view(estate) -> pd.DataFrame:
    return estate.shared("pin_upgrade_view", _upgrade_view)


def _unpinned(estate, params, floating: str, severity: pd.Series) -> pd.DataFrame:
    """Machines whose reference floats and that automatic OS image upgrade does not excuse:
    scale sets without it (and Flexible members not judged through their set) at the
    scale-set severity, stand-alone VMs at `vm_severity`. A member whose set is in the
    snapshot is judged through its set, unless its image reference differs from the set's."""
    view = _view(estate)
    judged = view[floating] & ~view["member"] & ~view["automatic"]
    machines = estate.machines[judged.to_numpy(dtype=bool)]
    view = view[judged]
    scale_set = view["scale_set"].to_numpy(dtype=bool)
    vm_kind = lowered(machines["kind"]).eq("vm").to_numpy(dtype=bool)
    set_here = estate.flexible_members[judged].to_numpy(dtype=bool)
    machine_kind = np.select(
        [scale_set & vm_kind & set_here, scale_set & vm_kind, scale_set],
        ["member of a Flexible scale set, on an image other than its set's",
         "member of a Flexible scale set not in the snapshot",
         "scale set without automatic OS image upgrade"], default="stand-alone VM")
    effect = np.where(
        scale_set, "every scale-out and replaced instance gets whatever is newest then",
        "the VM keeps the version it got, but a rebuild from the same template gets another")
    exact = machines["exact_version"].astype(object)
    got = np.where(exact.notna(), "it got " + exact.fillna("").astype(str),
                   "the version it got is not recorded")
    return pd.DataFrame({
        "id": machines["id"], "name": machines["name"], "kind": machines["kind"],
        "image_kind": machines["image_kind"], "image_id": machines["image_id"],
        "image_publisher": machines["image_publisher"], "image_offer": machines["image_offer"],
        "image_sku": machines["image_sku"], "image_version": machines["image_version"],
        "exact_version": machines["exact_version"],
        "running_version_id": machines["running_version_id"],
        "machine_kind": machine_kind, "got": got, "effect": effect,
        "severity": np.where(scale_set, severity[judged].to_numpy(dtype=object),
                             params["vm_severity"]),
    }, index=machines.index)


def latest_marketplace_image(estate, params) -> pd.DataFrame:
    """PIN001: Marketplace references to `latest`, by machine kind."""
    view = _view(estate)
    severity = pd.Series(params["scale_set_severity"], index=view.index, dtype=object)
    return _unpinned(estate, params, "marketplace", severity)


def unversioned_gallery_image(estate, params) -> pd.DataFrame:
    """PIN002: gallery definition or `latest` references, by machine kind; a shared or
    community gallery's `latest` is its publisher's to change."""
    view = _view(estate)
    severity = pd.Series(np.where(view["external"], params["external_scale_set_severity"],
                                  params["scale_set_severity"]), index=view.index, dtype=object)
    return _unpinned(estate, params, "gallery", severity)


def automatic_upgrade_ineffective(estate, params) -> pd.DataFrame:
    """PIN003: scale sets with automatic OS image upgrade on that it cannot upgrade: the
    version is pinned, the image is not one it supports, or no health signal is there."""
    view = _view(estate)
    flagged = view["automatic"] & (view["missing"] != "") & lowered(estate.machines["kind"]).eq(
        "vmss").to_numpy(dtype=bool)
    machines = estate.machines[flagged.to_numpy(dtype=bool)]
    return pd.DataFrame({
        "id": machines["id"], "name": machines["name"], "kind": machines["kind"],
        "image_kind": machines["image_kind"], "image_id": machines["image_id"],
        "image_publisher": machines["image_publisher"], "image_offer": machines["image_offer"],
        "image_sku": machines["image_sku"], "image_version": machines["image_version"],
        "upgrade_mode": _column(machines, "upgrade_mode"),
        "health_probe_id": _column(machines, "health_probe_id"),
        "health_extension": _column(machines, "health_extension"),
        "missing": view.loc[flagged, "missing"],
    }, index=machines.index)
