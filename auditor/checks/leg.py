"""Legacy checks: machines whose OS disk is an unmanaged VHD page blob in a storage account."""

from __future__ import annotations

import numpy as np
import pandas as pd


def boots_from_vhd(estate, params) -> pd.DataFrame:
    """Machines whose OS disk is an unmanaged VHD (a VM's `vhd`/`image` URI, a scale set's
    `vhdContainers`), whatever image they were deployed from. A machine on a managed disk
    built from a managed image captured from a blob is not one: the retirement is of blobs
    attached as disks."""
    machines = estate.machines
    # A snapshot taken before `os_disk_unmanaged` was collected has it null: its `vhd_uri`
    # (the OS disk's or source image's VHD) says the same.
    unmanaged = machines["os_disk_unmanaged"].astype("boolean")
    hit = unmanaged.fillna(machines["vhd_uri"].notna()).to_numpy(dtype=bool)
    rows = machines.loc[hit, ["id", "name", "kind", "image_kind", "vhd_uri", "image_publisher",
                              "image_offer", "image_sku", "image_id"]]
    vmss = (rows["kind"] == "vmss").to_numpy(dtype=bool)
    uri = rows["vhd_uri"].astype(object).where(rows["vhd_uri"].fillna("") != "", "(uri unknown)")
    kind = rows["image_kind"].astype(object)
    marketplace = (rows["image_publisher"].astype(object).fillna("?") + ":"
                   + rows["image_offer"].astype(object).fillna("?") + ":"
                   + rows["image_sku"].astype(object).fillna("?"))
    image = np.select(
        [kind == "marketplace", kind == "vhd", rows["image_id"].notna()],
        ["deployed from Marketplace image " + marketplace,
         "deployed from a user image VHD",
         "deployed from " + kind + " image " + rows["image_id"].astype(object).fillna("")],
        default="deployed from an image of unknown origin")
    return rows[["id", "name", "kind", "image_kind", "vhd_uri"]].assign(
        os_disk=np.where(vmss, "unmanaged OS disks, page blobs under " + uri,
                         "an unmanaged OS disk " + uri),
        image=image)
