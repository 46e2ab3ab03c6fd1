"""Coverage: subscriptions (or batches) the collector could not read, from the scope table,
and machines whose image lineage no image rule can judge."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.estate import lowered


def scope_not_read(estate, params) -> pd.DataFrame:
    """Every scope entry whose status is not `ok`: an audit that skipped them is partial."""
    scope = estate.scope
    bad = scope[lowered(scope["status"]) != "ok"]
    subscription = bad["subscription_id"].fillna("(unknown)").astype(str)
    # A management group the collector could not read is recorded by its own id, an
    # incomplete export file as `export:NAME`.
    kept = subscription.str.startswith("/") | subscription.str.startswith("export:")
    arm_id = subscription.where(kept, "/subscriptions/" + subscription)
    return pd.DataFrame({
        "id": arm_id.str.lower(), "arm_id": arm_id,
        "name": bad["display_name"].astype("object").fillna(subscription),
        "subscription_id": subscription.str.lower().where(~subscription.str.startswith("/")),
        "status": bad["status"].astype("object").fillna("(none)"),
        "detail": bad["detail"].astype("object").fillna("(no detail)"),
    })


def machine_without_lineage(estate, params) -> pd.DataFrame:
    """Machines of `image_kind` unknown: no imageReference the audit can place and no VHD
    image, as a VM made by attaching an existing OS disk has (restore, failover, a disk from
    a snapshot or an imported VHD). The image rules pass them by (APR001 can only call them
    of unknown origin); this one says so, so a clean image audit cannot hide them. A Flexible
    scale set that records no OS disk has no model of its own: it is not a machine here, each
    of its members is judged on its own."""
    machines = estate.machines
    option = machines["os_disk_create_option"].astype(object)
    recorded = option.notna() & (option.fillna("") != "")
    unknown = lowered(machines["image_kind"]).eq("unknown")
    empty_flexible_set = (lowered(machines["kind"]).eq("vmss")
                          & lowered(machines["orchestration_mode"]).eq("flexible") & ~recorded)
    hit = (unknown & ~empty_flexible_set).to_numpy(dtype=bool)
    rows = machines.loc[hit, ["id", "name", "kind", "image_id"]]
    option = option[hit]
    recorded = recorded[hit]
    image_id = rows["image_id"].astype(object)
    lineage = np.select(
        [lowered(option).eq("attach").to_numpy(dtype=bool),
         ~recorded.to_numpy(dtype=bool),
         image_id.notna().to_numpy(dtype=bool)],
        ["OS disk attached, createOption Attach",
         "OS disk create option not recorded",
         "createOption " + option.fillna("").astype(str) + ", image reference "
         + image_id.fillna("").astype(str) + " is of no kind the audit knows"],
        default="createOption " + option.fillna("").astype(str) + ", no image reference")
    return rows[["id", "name", "kind"]].assign(
        os_disk_create_option=option.where(recorded, None), lineage=lineage)
