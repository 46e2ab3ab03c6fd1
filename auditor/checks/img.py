"""Legacy managed images: scale sets built on one are capped at fewer instances than
gallery images allow."""

from __future__ import annotations

import pandas as pd

from auditor.estate import lookup


def managed_image_scale_set_over_cap(estate, params) -> pd.DataFrame:
    """Scale sets deployed from a managed image whose capacity, or the largest maximum an
    enabled autoscale setting gives them, exceeds `max_instances`."""
    machines = estate.machines
    limit = int(params["max_instances"])
    settings = estate.autoscale_settings
    settings = settings[settings["enabled"].fillna(True).astype(bool).to_numpy(dtype=bool)]
    autoscale_max = settings.groupby("target_id")["max_capacity"].max()
    on_image = (machines["kind"].astype(object).eq("vmss")
                & machines["image_kind"].astype(object).eq("managed")).to_numpy(dtype=bool)
    sets = machines[on_image]
    maximum = lookup(sets["id"].astype(object), autoscale_max).astype("Float64")
    over = (sets["capacity"].fillna(0) > limit).to_numpy(dtype=bool) \
        | (maximum > limit).fillna(False).to_numpy(dtype=bool)
    rows = sets[over]
    return pd.DataFrame({"id": rows["id"], "name": rows["name"], "kind": rows["kind"],
                         "image_id": rows["image_id"], "capacity": rows["capacity"],
                         "autoscale_max": maximum[over].astype("Int64").astype(object)
                         .where(maximum[over].notna(), "none")})
