"""Replication checks: where a version's replicas are, how many, and how they are stored,
judged against where the machines that use it run (`estate.usage`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.checks.tag import resources
from auditor.estate import lookup, lowered, version_label

ZONE_REDUNDANT = {"standard_zrs", "premium_zrs"}


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
    """One row per version and target region with fewer replicas than the sizing guidance:
    at least `min_replicas`, one per `machines_per_replica` machines there, at most 50."""
    usage = estate.known_usage
    machines = usage.groupby(["version_id", "region"], as_index=False)["capacity"].sum() \
        .rename(columns={"capacity": "machines"})
    judged = pd.Index(usage["version_id"].unique()).union(
        estate.latest_by_definition_region["version_id"].unique())
    regions = estate.version_regions
    regions = regions[regions["version_id"].isin(judged)]
    rows = regions.merge(machines, how="left", on=["version_id", "region"])
    rows["machines"] = rows["machines"].fillna(0).astype("int64")
    per_replica = max(int(params["machines_per_replica"]), 1)
    minimum = int(params["min_replicas"])
    by_load = -(-rows["machines"] // per_replica)
    rows["need"] = np.minimum(np.maximum(by_load, minimum), 50).astype("int64")
    rows["have"] = rows["regional_replica_count"].fillna(0).astype("int64")
    rows = rows[rows["have"] < rows["need"]]
    used = rows["version_id"].isin(usage["version_id"].dropna().unique())
    rows["why"] = (rows["machines"].astype(str) + " machines use it there (one per "
                   + str(per_replica) + ") and the minimum is " + str(minimum)
                   + np.where(used, "", "; it is what `latest` resolves to"))
    out = rows.merge(_versions(estate), left_on="version_id", right_on="id")
    return out[["id", "arm_id", "name", "subscription_id", "resource_group", "location",
                "region", "have", "need", "machines", "why", "storage_account_type"]]


def replicas_not_zone_redundant(estate, params) -> pd.DataFrame:
    """One row per version and region where a production machine uses it from replicas
    that are not zone-redundant."""
    usage = estate.known_usage
    production = estate.is_production("machines", params["production_values"])
    usage = usage[production.reindex(usage.index).fillna(False).astype(bool)]
    used = usage.groupby(["version_id", "region"], as_index=False).agg(
        production_machines=("capacity", "sum"))
    rows = used.merge(estate.version_regions, on=["version_id", "region"])
    storage = lowered(rows["storage_account_type"])
    rows = rows[~storage.isin(ZONE_REDUNDANT)]
    out = rows.merge(_versions(estate), left_on="version_id", right_on="id")
    out["storage_account_type"] = out["storage_account_type"].fillna("(unknown)")
    return out[["id", "arm_id", "name", "subscription_id", "resource_group", "location",
                "region", "storage_account_type", "production_machines"]]


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
    unblocked = in_use & ~versions["block_deletion_before_end_of_life"].fillna(False).astype(bool)
    problem = pd.Series(np.select(
        [allows & unblocked, allows, unblocked],
        ["allows deletion of replicated locations and, though in use, does not block deletion "
         "before its end of life",
         "allows deletion of replicated locations",
         "is in use but does not block deletion before its end of life"], default=""),
        index=versions.index)
    flagged = versions.loc[problem != "", ["id", "allow_deletion_of_replicated_locations",
                                           "block_deletion_before_end_of_life"]]
    flagged = flagged.assign(problem=problem[problem != ""], in_use=in_use[problem != ""])
    return _versions(estate).merge(flagged, on="id")


def replication_failed_or_stuck(estate, params) -> pd.DataFrame:
    """One row per version and region whose replication failed, or is still replicating
    `stuck_hours` after the version was published."""
    versions = estate.tables["image_versions"]
    replication = estate.tables.get("version_replication")
    if replication is None or replication.empty or versions.empty:
        return versions.iloc[0:0]
    rows = replication.merge(versions, left_on="version_id", right_on="id", how="inner")
    state = rows["state"].astype("string").str.lower()
    deadline = rows["published_date"] + pd.Timedelta(hours=float(params["stuck_hours"]))
    failed = state.eq("failed").fillna(False)
    stuck = (state.eq("replicating") & (deadline < estate.as_of)).fillna(False)
    rows = rows[failed | stuck].copy()
    progress = rows["progress"].astype("string").fillna("?")
    rows["problem"] = np.where(
        rows["state"].str.lower() == "failed",
        "failed to replicate",
        "is still replicating ("
        + progress
        + "% done) more than "
        + str(params["stuck_hours"])
        + " hours after it was published",
    )
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
