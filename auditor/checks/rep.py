"""Replication checks: where a version's replicas are, how many, and how they are stored,
judged against where the machines that use it run (`estate.usage`)."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files as resources_files

import numpy as np
import pandas as pd
import yaml

from auditor.checks.tag import resources
from auditor.estate import definition_of_versions, lookup, lowered, version_label

# Gallery replicas are stored as Standard_LRS, Standard_ZRS or Premium_LRS (PremiumV2_LRS
# for additional replica sets): Standard_ZRS is the zone-redundant one.
ZONE_REDUNDANT = {"standard_zrs"}


def _versions(estate) -> pd.DataFrame:
    """Identity of image versions, named `definition/version`."""
    return resources(estate, ["image_versions"])


def version_not_replicated_where_used(estate, params) -> pd.DataFrame:
    """One row per machine whose region has no replica of the version it uses."""
    usage = estate.usage
    missing = usage[usage["has_replica"].eq(False).fillna(False).astype(bool)]
    regions = estate.version_regions.sort_values("region").groupby("version_id")["region"] \
        .agg(", ".join)
    return pd.DataFrame({
        "id": missing["machine_id"], "name": missing["name"], "kind": missing["kind"],
        "location": missing["region"], "version": version_label(
            estate.arm_ids("image_versions", missing["version_id"])),
        "resolved_from": missing["resolved_from"],
        "replica_regions": lookup(missing["version_id"], regions).fillna("(none)"),
    })


def too_few_replicas(estate, params) -> pd.DataFrame:
    """One row per (version, region) that machines use or that `latest` gives there, with
    fewer replicas than the concurrent creations it serves call for (see REP002's text)."""
    pairs = _judged_pairs(estate)
    if pairs.empty:
        return _no_rows(estate)
    load = _creations(estate, params)
    rows = pairs.merge(load, how="left", on=["version_id", "region"])
    for column in ["machines", "creations", "scale_sets"]:
        rows[column] = rows[column].fillna(0).astype("int64")
    rows["estimate"] = rows["estimate"].fillna("no scale-out expected")
    per_replica = max(int(params["machines_per_replica"]), 1)
    production = _production_pairs(estate, rows, params["production_values"])
    minimum = np.where(production, int(params["min_replicas"]), 1)
    by_load = -(-rows["creations"] // per_replica)
    need = np.maximum(np.maximum(by_load, rows["scale_sets"]), minimum)
    need = np.minimum(need, int(params["max_replicas_per_region"]))
    rows["have"] = rows["regional_replica_count"].fillna(1).astype("int64")  # API default 1
    others = rows["version_id"].map(
        estate.version_regions.assign(n=estate.version_regions["regional_replica_count"]
                                      .fillna(1)).groupby("version_id")["n"].sum()) - rows["have"]
    rows["need"] = np.minimum(need, np.maximum(VERSION_REPLICA_LIMIT - others, rows["have"])) \
        .astype("int64")
    rows["production"] = production
    rows = rows[rows["have"] < rows["need"]]
    if rows.empty:
        return _no_rows(estate)
    load_text = np.where(rows["creations"] > 0, "; one replica per " + str(per_replica)
                         + " VMs created at once", "")
    sets_text = np.where(rows["scale_sets"] > 0, "; one per scale set creating VMs at once ("
                         + rows["scale_sets"].astype(str) + ")", "")
    floor_text = np.where(rows["production"], "; production image: at least "
                          + str(int(params["min_replicas"])), "")
    latest_text = np.where(rows["machines"] == 0, "; it is what `latest` gives there", "")
    rows["why"] = rows["estimate"] + load_text + sets_text + floor_text + latest_text
    out = rows.merge(_versions(estate), left_on="version_id", right_on="id")
    # What the fix costs in storage: each added replica is a snapshot of the whole version.
    versions = estate.image_versions.drop_duplicates("id").set_index("id")
    size = lookup(out["version_id"], versions["os_disk_size_gb"]).astype(float) \
        + lookup(out["version_id"], versions["data_disk_size_gb"]).astype(float).fillna(0.0)
    out["added_gb"] = (out["need"] - out["have"]) * size
    return out[["id", "arm_id", "name", "subscription_id", "resource_group", "location",
                "region", "have", "need", "machines", "creations", "estimate", "why",
                "storage_account_type", "added_gb"]]


VERSION_REPLICA_LIMIT = 100  # Azure's limit of replicas per image version


def _no_rows(estate) -> pd.DataFrame:
    return _versions(estate).iloc[0:0].assign(region=None, have=0, need=0, why="")


def _pairs_used(usage: pd.DataFrame) -> pd.DataFrame:
    """(version_id, region, machines) per distinct pair, grouped on the categorical codes
    (a million machines use a few thousand pairs), keys as plain text."""
    pairs = usage.groupby(["version_id", "region"], observed=True, as_index=False).agg(
        machines=("capacity", "sum"))
    return pairs.astype({"version_id": object, "region": object})


def _judged_pairs(estate) -> pd.DataFrame:
    """Target regions of Full-replicated versions where machines use the version or where
    it is what `latest` gives: a DR-only region or an old unused version is not judged.
    A Shallow version makes no copies to count; REP004 judges it."""
    used = _pairs_used(estate.known_usage)[["version_id", "region"]]
    latest = estate.latest_by_definition_region[["version_id", "region"]]
    pairs = pd.concat([used, latest], ignore_index=True).drop_duplicates()
    versions = estate.image_versions
    shallow = versions.loc[lowered(versions["replication_mode"]) == "shallow", "id"]
    pairs = pairs[~pairs["version_id"].isin(shallow)]
    return estate.version_regions.merge(pairs, on=["version_id", "region"])


def _creations(estate, params) -> pd.DataFrame:
    """`_load_estimate`, computed once per estate and settings (REP002 and REP011 read it)."""
    key = (int(params["peak_concurrent_creations"]),
           float(params.get("overprovisioned_per_requested", 1.0)))
    return estate.shared(f"creations:{key}", lambda e: _load_estimate(e, params))


def _load_estimate(estate, params) -> pd.DataFrame:
    """Per (version, region): machines there, VMs created at once and scale sets creating
    them, with the estimate worded. A scale set creates, at once, the larger of its largest
    autoscale scale-out step (plus the VMs overprovisioning adds to it) and a rolling-upgrade
    surge batch; the scale sets using the version in the region add up. A configured peak
    (`peak_concurrent_creations`) is used where it is larger. A steady scale set creates
    nothing at once, whatever its size."""
    usage = estate.known_usage
    load = _pairs_used(usage)
    sets = usage[(usage["kind"] == "vmss").to_numpy(dtype=bool)]
    sets = sets.assign(**_scale_set_creations(estate, sets, params))
    scaling = pd.DataFrame({"version_id": sets["version_id"].astype(object),
                            "region": sets["region"].astype(object),
                            "step": sets["creations"], "detail": sets["detail"],
                            "label": sets["label"]})
    scaling = scaling[scaling["step"] > 0].sort_values("step", ascending=False, kind="stable")
    grouped = scaling.groupby(["version_id", "region"], sort=False)
    by_pair = pd.DataFrame({"creations": grouped["step"].sum(),
                            "scale_sets": grouped.size(),
                            "top_label": grouped["label"].first(),
                            "top_detail": grouped["detail"].first()}).reset_index()
    load = load.merge(by_pair, how="left", on=["version_id", "region"])
    load["creations"] = load["creations"].fillna(0).astype("int64")
    load["scale_sets"] = load["scale_sets"].fillna(0).astype("int64")
    estimate = pd.Series(np.where(
        load["creations"] > 0,
        load["top_label"].astype(str) + ": up to " + load["creations"].astype(str)
        + " VMs created at once (largest " + load["top_detail"].astype(str) + ")",
        "no autoscale setting or surge upgrade creates VMs at once (" + load["machines"].astype(str)
        + " machine(s) run it there; running machines are not creations)"), index=load.index)
    peak = int(params["peak_concurrent_creations"])
    if peak > 0:
        larger = load["creations"] < peak
        load["creations"] = np.maximum(load["creations"], peak)
        estimate = estimate.where(~larger, "configured peak: " + str(peak)
                                  + " VMs created at once (peak_concurrent_creations)")
    load["estimate"] = estimate
    return load.drop(columns=["top_label", "top_detail"])


def _scale_set_creations(estate, sets: pd.DataFrame, params) -> dict[str, pd.Series]:
    """Per scale set in `usage`: VMs created at once (`creations`) and how, worded (`label`,
    `detail`). Scale-out: the largest step of its enabled autoscale settings; a Uniform set
    with overprovisioning on (`overprovision` absent means on) adds
    `overprovisioned_per_requested` extra VMs per VM asked for. Rolling upgrade with
    `maxSurge`: `maxBatchInstancePercent` (default 20) of its capacity, created as new VMs."""
    settings = estate.tables.get("autoscale_settings")
    if settings is not None and not settings.empty and len(sets):
        enabled = settings[settings["enabled"].fillna(False).astype(bool)]
        steps = enabled.groupby("target_id")["max_scale_out_step"].max()
        step = pd.to_numeric(lookup(sets["machine_id"].astype(object), steps),
                             errors="coerce").fillna(0).astype("int64")
    else:
        step = pd.Series(0, index=sets.index, dtype="int64")
    machines = estate.tables["machines"]

    def column(name: str) -> pd.Series:
        if name not in machines.columns:
            return pd.Series(pd.NA, index=sets.index, dtype=object)
        return machines[name].reindex(sets.index)

    uniform = ~lowered(column("orchestration_mode")).eq("flexible").to_numpy(dtype=bool)
    overprovision = column("overprovision").astype("boolean").fillna(True).to_numpy(dtype=bool)
    factor = max(float(params.get("overprovisioned_per_requested", 1.0)), 0.0)
    extra = np.where(uniform & overprovision, np.ceil(step.to_numpy() * factor), 0).astype("int64")
    scale_out = step.to_numpy() + extra
    capacity = pd.to_numeric(column("capacity"), errors="coerce").fillna(0).astype("int64")
    percent = pd.to_numeric(column("rolling_max_batch_percent"), errors="coerce") \
        .fillna(DEFAULT_BATCH_PERCENT).clip(0, 100).astype("int64")
    # Automatic OS image upgrades follow the rolling upgrade policy too.
    rolling = lowered(column("upgrade_mode")).eq("rolling").to_numpy(dtype=bool) \
        | column("automatic_os_upgrade").astype("boolean").fillna(False).to_numpy(dtype=bool)
    surging = rolling & column("rolling_max_surge").astype("boolean").fillna(False).to_numpy(dtype=bool)
    batch = np.where(surging, -(-capacity.to_numpy() * percent.to_numpy() // 100), 0)
    by_surge = batch > scale_out
    names = sets["name"].astype(object).astype(str)
    scale_out_text = "scale-out step: " + step.astype(str) + " in " + names + pd.Series(
        np.where(extra > 0, ", with " + pd.Series(extra, index=sets.index).astype(str)
                 + " overprovisioned", ""), index=sets.index)
    surge_text = "surge batch: " + pd.Series(batch, index=sets.index).astype(str) + " in " \
        + names + ", " + percent.astype(str) + "% of " + capacity.astype(str)
    return {"creations": pd.Series(np.maximum(scale_out, batch), index=sets.index),
            "label": pd.Series(np.where(by_surge, "rolling upgrade with surge", "autoscale"),
                               index=sets.index),
            "detail": surge_text.where(by_surge, scale_out_text)}


DEFAULT_BATCH_PERCENT = 20  # rollingUpgradePolicy.maxBatchInstancePercent when absent


def _production_pairs(estate, rows: pd.DataFrame, values) -> np.ndarray:
    """A production image: the version, its definition or its gallery carries a production
    environment tag, or a production machine uses it in that region."""
    ids = rows["version_id"].astype(object)
    definition = definition_of_versions(ids)
    gallery = definition.str.replace(r"/images/[^/]+$", "", regex=True)
    tagged = np.zeros(len(rows), dtype=bool)
    for column in (ids, definition, gallery):
        tagged |= estate.is_production(rows, values, ids=column).to_numpy(dtype=bool) \
            & estate.tag(rows, "environment", ids=column).notna().to_numpy(dtype=bool)
    usage = estate.known_usage
    production = estate.is_production("machines", values)
    served = _pairs_used(usage[production.reindex(usage.index).fillna(False).astype(bool)])
    served = pd.MultiIndex.from_frame(served[["version_id", "region"]])
    key = pd.MultiIndex.from_arrays([ids, rows["region"].astype(object)])
    return tagged | key.isin(served)


def replicas_not_zone_redundant(estate, params) -> pd.DataFrame:
    """One row per version and region with availability zones where a production machine
    uses it from replicas that are not zone-redundant. A version published with
    `storageAccountStrategy: PreferStandard_ZRS` (API 2025-03-03) and no storage type of its
    own in the region is stored as Standard_ZRS there."""
    usage = estate.known_usage
    production = estate.is_production("machines", params["production_values"])
    usage = usage[production.reindex(usage.index).fillna(False).astype(bool)]
    used = usage.groupby(["version_id", "region"], as_index=False, observed=True).agg(
        production_machines=("capacity", "sum"))
    used["version_id"] = used["version_id"].astype(object)
    used["region"] = used["region"].astype(object)
    rows = used.merge(estate.version_regions, on=["version_id", "region"])
    rows = rows[rows["region"].isin(zone_regions(params))]
    strategy = lookup(rows["version_id"], estate.image_versions.drop_duplicates("id")
                      .set_index("id")["storage_account_strategy"])
    storage = lowered(rows["storage_account_type"])
    by_strategy = storage.eq("") & lowered(strategy).eq("preferstandard_zrs")
    rows = rows[~storage.isin(ZONE_REDUNDANT) & ~by_strategy]
    out = rows.merge(_versions(estate), left_on="version_id", right_on="id")
    out["storage_account_type"] = out["storage_account_type"].fillna("(not recorded)")
    return out[["id", "arm_id", "name", "subscription_id", "resource_group", "location",
                "region", "storage_account_type", "production_machines"]]


def zone_regions(params) -> set[str]:
    """Regions with availability zones: the shipped list plus the rule's `zone_regions`."""
    extra = {str(r).replace(" ", "").lower() for r in params.get("zone_regions") or []}
    return _shipped_zone_regions() | extra


@lru_cache(maxsize=1)
def _shipped_zone_regions() -> frozenset[str]:
    text = resources_files("auditor.data").joinpath("zone_regions.yaml").read_text("utf-8")
    return frozenset(str(r).lower() for r in yaml.safe_load(text)["regions"])


def shallow_replication_in_production(estate, params) -> pd.DataFrame:
    """One row per Shallow-replicated version that production machines use."""
    usage = estate.known_usage
    production = estate.is_production("machines", params["production_values"])
    usage = usage[production.reindex(usage.index).fillna(False).astype(bool)]
    counts = usage.groupby("version_id")["capacity"].sum().rename("production_machines")
    versions = estate.image_versions
    shallow = versions[lowered(versions["replication_mode"]) == "shallow"]
    out = _versions(estate).join(counts, on="id", how="inner")
    return out[out["id"].isin(shallow["id"])].assign(replication_mode="Shallow")


def deletion_not_protected(estate, params) -> pd.DataFrame:
    """One row per version whose safety profile allows deleting replicated regions, or that
    is in use and does not block deletion before its end of life."""
    versions = estate.image_versions
    allows = versions["allow_deletion_of_replicated_locations"].fillna(False).astype(bool)
    in_use = versions["id"].isin(estate.used_version_ids)
    # The block holds only until the end-of-life date: without one (STL005) or past it,
    # setting it protects nothing.
    before_end = (versions["end_of_life_date"] > estate.as_of).fillna(False).astype(bool)
    unblocked = in_use & before_end \
        & ~versions["block_deletion_before_end_of_life"].fillna(False).astype(bool)
    problem = pd.Series(np.select(
        [allows & unblocked, allows, unblocked],
        ["allows deletion of replicated locations and, though in use, does not block deletion "
         "before its end of life",
         "allows deletion of replicated locations",
         "is in use but does not block deletion before its end of life"], default=""),
        index=versions.index)
    flagged = versions.loc[problem != "", ["id", "allow_deletion_of_replicated_locations",
                                           "block_deletion_before_end_of_life",
                                           "end_of_life_date"]]
    flagged = flagged.assign(problem=problem[problem != ""], in_use=in_use[problem != ""])
    return _versions(estate).merge(flagged, on="id")


def replication_failed_or_stuck(estate, params) -> pd.DataFrame:
    """One row per version and region whose replication failed, or is still replicating or
    reports state Unknown `stuck_hours` after the version was published."""
    versions = estate.tables["image_versions"]
    replication = estate.tables.get("version_replication")
    if replication is None or replication.empty or versions.empty:
        return versions.iloc[0:0]
    rows = replication.merge(versions, left_on="version_id", right_on="id", how="inner")
    state = rows["state"].astype("string").str.lower()
    deadline = rows["published_date"] + pd.Timedelta(hours=float(params["stuck_hours"]))
    failed = state.eq("failed").fillna(False)
    # `Unknown` that lasts is no better than a copy that never ends.
    late = (deadline < estate.as_of).fillna(False)
    stuck = (state.isin(["replicating", "unknown"]).fillna(False) & late)
    rows = rows[failed | stuck].copy()
    progress = rows["progress"].astype("string").fillna("?")
    hours = " more than " + str(params["stuck_hours"]) + " hours after it was published"
    rows["problem"] = np.select(
        [rows["state"].str.lower() == "failed", rows["state"].str.lower() == "unknown"],
        ["failed to replicate", "has replication state Unknown" + hours],
        "is still replicating (" + progress + "% done)" + hours)
    return rows.drop(columns=["version_id"])


def no_latest_in_region(estate, params) -> pd.DataFrame:
    """REP007: one row per machine whose definition (or `latest`) reference has no version
    that serves `latest` in its region, for definitions in the snapshot."""
    usage = estate.usage
    flagged = usage["unversioned"].to_numpy(dtype=bool) \
        & usage["definition_known"].to_numpy(dtype=bool) \
        & usage["latest_version_id"].isna().to_numpy(dtype=bool)
    rows = usage[flagged]
    reasons = _why_no_latest(estate, rows)
    return pd.DataFrame({
        "id": rows["machine_id"], "name": rows["name"], "kind": rows["kind"],
        "location": rows["region"], "definition": _definition_label(rows["definition_id"]),
        "resolved_from": rows["resolved_from"], "reason": reasons,
    }, index=rows.index)


def _why_no_latest(estate, rows: pd.DataFrame) -> pd.Series:
    """Why nothing serves, per distinct (definition, region): no version, none replicated
    to the region, or only versions that do not serve there."""
    pairs = rows[["definition_id", "region"]].astype(object).drop_duplicates()
    versions = estate.image_versions
    regions = estate.version_regions.merge(versions[["id", "definition_id"]],
                                           left_on="version_id", right_on="id")
    has_versions = pairs["definition_id"].isin(versions["definition_id"])
    replicated = pd.MultiIndex.from_frame(pairs).isin(
        pd.MultiIndex.from_frame(regions[["definition_id", "region"]].astype(object)))
    reason = np.select(
        [~has_versions.to_numpy(dtype=bool), ~replicated],
        ["the definition has no versions",
         "no version of it is replicated to " + pairs["region"].astype(str)],
        default="every version replicated there is excluded from latest there, not "
                "provisioned, or (with --deep) still replicating")
    found = pd.Series(reason, index=pd.MultiIndex.from_frame(pairs))
    keys = pd.MultiIndex.from_frame(rows[["definition_id", "region"]].astype(object))
    return pd.Series(found.reindex(keys).to_numpy(), index=rows.index, dtype=object)


def recorded_version_deleted(estate, params) -> pd.DataFrame:
    """REP012: one row per machine whose recorded version (its pinned reference, its OS
    disk's source, or its exactVersion) is missing from a definition in the snapshot."""
    usage = estate.usage
    recorded = usage["resolved_from"].isin(["pinned", "disk", "exact"]).to_numpy(dtype=bool)
    flagged = recorded & ~usage["version_known"].to_numpy(dtype=bool) \
        & usage["definition_known"].to_numpy(dtype=bool) & usage["version_id"].notna().to_numpy(bool)
    rows = usage[flagged]
    how = rows["resolved_from"].astype(object).map(
        {"pinned": "its image reference names it", "disk": "its OS disk was created from it",
         "exact": "its exactVersion names it"})
    return pd.DataFrame({
        "id": rows["machine_id"], "name": rows["name"], "kind": rows["kind"],
        "location": rows["region"], "version": version_label(rows["version_id"].astype(object)),
        "resolved_from": rows["resolved_from"], "how": how,
        "definition": _definition_label(rows["definition_id"]),
    }, index=rows.index)


def _definition_label(definition_ids: pd.Series) -> pd.Series:
    """`gallery/definition` for a definition id."""
    text = definition_ids.astype(object)
    parts = text.fillna("").astype(str).str.extract(r"/galleries/([^/]+)/images/([^/]+)$")
    return (parts[0] + "/" + parts[1]).where(parts[0].notna(), text)


# --- REP008: a second region for production images ----------------------------------------

def single_region_production_images(estate, params) -> pd.DataFrame:
    """Versions production machines use that are replicated to one region only, and galleries
    holding a definition production machines use with no counterpart definition (same
    publisher/offer/SKU identifier, or same name) in a gallery in another region."""
    usage = estate.usage
    production = estate.is_production("machines", params["production_values"]) \
        .to_numpy(dtype=bool)
    # Counted on the categorical codes: a million machines use a few thousand versions.
    version = usage["version_id"]
    used = production & usage["version_known"].to_numpy(dtype=bool)
    codes = version.cat.codes.to_numpy()[used]
    size = len(version.cat.categories)
    machines = pd.Series(np.bincount(codes, weights=usage["capacity"].to_numpy()[used],
                                     minlength=size).astype("int64"),
                         index=version.cat.categories.astype(object))
    machines = machines[np.bincount(codes, minlength=size) > 0]
    definition = usage["definition_id"]
    judged = production & usage["definition_known"].to_numpy(dtype=bool)
    definitions = definition.cat.categories.astype(object)[
        np.unique(definition.cat.codes.to_numpy()[judged])]
    return pd.concat([_single_region_versions(estate, machines),
                      _galleries_without_counterpart(estate, pd.Index(definitions))],
                     ignore_index=True)


def _single_region_versions(estate, machines: pd.Series) -> pd.DataFrame:
    """`machines`: production machines per version id."""
    regions = estate.version_regions.drop_duplicates(["version_id", "region"])
    regions = regions[regions["version_id"].isin(machines.index)]
    count = regions.groupby("version_id")["region"].agg(["count", "first"])
    single = count[count["count"] == 1]
    out = _versions(estate)
    out = out[out["id"].isin(single.index)]
    region = pd.Series(single["first"].reindex(out["id"].to_numpy()).to_numpy(dtype=object),
                       index=out.index)
    production_machines = pd.Series(machines.reindex(out["id"].to_numpy()).to_numpy(),
                                    index=out.index)
    return out.assign(
        replica_regions=region, production_machines=production_machines,
        problem="is used by " + production_machines.astype(str) + " production machine(s) "
        "but has replicas in " + region + " only: a regional outage leaves nothing to deploy "
        "or scale out from")


def _galleries_without_counterpart(estate, used_ids: pd.Index) -> pd.DataFrame:
    """`used_ids`: definitions production machines use."""
    definitions = estate.image_definitions.drop_duplicates("id")
    galleries = estate.galleries.drop_duplicates("id").set_index("id")["location"]
    known = definitions.assign(
        region=lookup(definitions["gallery_id"], galleries),
        identifier=lowered(definitions["publisher"]) + ":" + lowered(definitions["offer"])
        + ":" + lowered(definitions["sku"]),
        key_name=lowered(definitions["name"]))
    known = known[known["region"].notna()]
    judged = known[known["id"].isin(used_ids)]
    has_counterpart = np.zeros(len(judged), dtype=bool)
    for key in ("identifier", "key_name"):
        # Definitions with this key in galleries of two regions or more: each has a
        # counterpart in another region.
        regions = known.groupby(key)["region"].nunique()
        has_counterpart |= lookup(judged[key], regions).fillna(0).to_numpy() > 1
    lonely = judged[~has_counterpart]
    names = lonely.groupby("gallery_id")["name"].agg(lambda v: ", ".join(sorted(v)))
    out = resources(estate, ["galleries"])
    out = out[out["id"].isin(names.index)]
    listed = pd.Series(names.reindex(out["id"].to_numpy()).to_numpy(dtype=object),
                       index=out.index)
    return out.assign(
        definitions_without_counterpart=listed,
        problem="holds image definitions production machines use (" + listed + ") with no "
        "counterpart in a gallery in another region: the gallery is a single point of failure "
        "for publishing and replicating them")


# --- REP009-REP011: locks and the storage old or idle versions keep ------------------------
# Locks come from ARM (collect --locks, or saved lock lists): a gallery in a subscription
# whose lock list was not read is unknown, not reported. REP010 and REP011 state what their
# fix saves; auditor/cost.py prices it (Cost.fix_savings).

# Both levels refuse a delete: CanNotDelete, and ReadOnly (which also refuses updates).
DELETE_LOCKS = {"cannotdelete", "readonly"}


def gallery_without_delete_lock(estate, params) -> pd.DataFrame:
    """Galleries with no delete lock on themselves, their resource group or subscription,
    in subscriptions whose whole lock list was read."""
    galleries = estate.galleries
    read = set(lowered(estate.lock_reads["subscription_id"]))
    galleries = galleries[lowered(galleries["subscription_id"]).isin(read).to_numpy(dtype=bool)]
    locks = estate.locks
    locks = locks[lowered(locks["level"]).isin(DELETE_LOCKS).to_numpy(dtype=bool)]
    locked = set(lowered(locks["scope"]))
    ids = lowered(galleries["id"])
    group = ids.str.replace(r"/providers/.*$", "", regex=True)
    subscription = "/subscriptions/" + lowered(galleries["subscription_id"])
    covered = ids.isin(locked) | group.isin(locked) | subscription.isin(locked)
    out = galleries.loc[~covered.to_numpy(dtype=bool), ["id"]]
    others = locks.groupby(lowered(locks["subscription_id"]))["name"].agg(
        lambda names: ", ".join(sorted(map(str, names))))
    found = lookup(lowered(galleries.loc[out.index, "subscription_id"]), others)
    return out.assign(locks_in_subscription=found.fillna("none").to_numpy(dtype=object))


def _idle_versions(estate, params) -> pd.Series:
    """Versions neither used by a machine nor `latest` anywhere (for their definition or in
    any region), not Shallow (no copies of their own), and not held by an operation in
    flight or a sharing beyond the audit (RET001's holds): True per image_versions row."""
    from auditor.checks.ret import version_holds

    versions = estate.image_versions
    latest = set(estate.latest_by_definition["version_id"]) \
        | set(estate.latest_by_definition_region["version_id"])
    idle = ~versions["id"].isin(estate.used_version_ids) & ~versions["id"].isin(latest)
    idle &= lowered(versions["replication_mode"]) != "shallow"
    return idle & (version_holds(estate, params) == "")


def idle_version_over_replicated(estate, params) -> pd.DataFrame:
    """Idle versions (see `_idle_versions`) kept in more than one region or with more than
    one replica in a region: the fix keeps one replica in one region (its home region,
    where it is a target region, else the first by name)."""
    versions = estate.image_versions
    idle = versions.loc[_idle_versions(estate, params).to_numpy(dtype=bool), ["id", "location"]]
    regions = estate.version_regions.merge(idle, left_on="version_id", right_on="id")
    regions = regions.assign(replicas=regions["regional_replica_count"].fillna(1).astype("int64"))
    summary = regions.sort_values("region").groupby("version_id").agg(
        regions=("region", "size"), replicas=("replicas", "sum"),
        region_list=("region", ", ".join), first_region=("region", "first"))
    home = regions[regions["region"] == regions["location"]].drop_duplicates("version_id") \
        .set_index("version_id")["region"]
    summary = summary[summary["replicas"] > 1]
    summary["keep_region"] = lookup(summary.index.to_series(), home) \
        .fillna(summary["first_region"]).to_numpy(dtype=object)
    summary["excess_replicas"] = summary["replicas"] - 1
    out = _versions(estate).join(summary.drop(columns="first_region"), on="id", how="inner")
    return out


def premium_replicas_without_need(estate, params) -> pd.DataFrame:
    """Premium_LRS replicas of a version in a region where it is not both `latest` and used
    by a scale set that scales out there (autoscale or surge creations, REP002's estimate):
    Premium storage speeds up only the creation of many VMs at once."""
    regions = estate.version_regions
    premium = regions[lowered(regions["storage_account_type"]).eq("premium_lrs").to_numpy(dtype=bool)]
    latest = pd.MultiIndex.from_frame(estate.latest_by_definition_region[["version_id", "region"]])
    load = _creations(estate, dict(params, peak_concurrent_creations=0))
    fast = load[load["creations"] > 0]
    fast = pd.MultiIndex.from_frame(fast[["version_id", "region"]].astype(object))
    pairs = pd.MultiIndex.from_frame(premium[["version_id", "region"]].astype(object))
    is_latest, scales_out = pairs.isin(latest), pairs.isin(fast)
    flagged = premium[~(is_latest & scales_out)]
    reason = np.where(~is_latest[~(is_latest & scales_out)],
                      "not what `latest` gives there", "latest there, but no scale set "
                      "creates VMs at once from it there")
    rows = flagged.assign(why=reason, replicas=flagged["regional_replica_count"].fillna(1)
                          .astype("int64"))
    out = rows.merge(_versions(estate), left_on="version_id", right_on="id")
    return out[["id", "arm_id", "name", "subscription_id", "resource_group", "location",
                "region", "replicas", "storage_account_type", "why"]]
