"""Legacy checks: machines that boot from unmanaged VHDs in storage accounts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.estate import last_segment, lookup


def boots_from_vhd(estate, params) -> pd.DataFrame:
    """Machines whose OS disk image is an unmanaged VHD, or a managed image captured from
    a blob URI (itself an unmanaged VHD)."""
    machines = estate.machines
    images = estate.managed_images.set_index("id")["blob_uri"]
    image_blob = lookup(machines["image_id"], images).where(machines["image_kind"] == "managed")
    vhd = machines["image_kind"] == "vhd"
    hit = vhd | image_blob.notna()
    rows = machines.loc[hit, ["id", "name", "kind", "image_id", "vhd_uri"]]
    return rows.assign(
        source=np.where(vhd[hit], "an unmanaged VHD " + rows["vhd_uri"].fillna("(uri unknown)"),
                        "managed image " + last_segment(rows["image_id"])
                        + " captured from blob " + image_blob[hit].astype(str)),
        blob_uri=rows["vhd_uri"].where(vhd[hit], image_blob[hit]))
