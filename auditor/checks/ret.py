"""Retention checks: image versions and managed images nobody uses any more, and empty
galleries and definitions. The evidence carries sizes and replica counts so that a cost
step can price each finding."""

from __future__ import annotations

import pandas as pd

from auditor.checks.tag import resources
from auditor.estate import lowered


def _is_retained(estate, table: str, tag_name: str) -> pd.Series:
    return lowered(estate.tag(table, tag_name)).str.strip() == "true"


def versions_beyond_retention(estate, params) -> pd.DataFrame:
    """Versions beyond the newest `keep_versions` provisioned ones of a definition that no
    machine uses, that are older than `min_age_days` and not tagged to retain."""
    keep = int(params["keep_versions"])
    versions = estate.image_versions
    state = lowered(versions["provisioning_state"])
    ordered = versions.assign(_ok=state == "succeeded").sort_values(
        ["definition_id", "major", "minor", "patch", "published_date"],
        ascending=[True, False, False, False, False], na_position="last", kind="stable")
    ordered["_rank"] = ordered[ordered["_ok"]].groupby("definition_id").cumcount()
    kept = ordered["_rank"].notna() & (ordered["_rank"] < keep)
    counts = versions.groupby("definition_id")["id"].transform("size")
    cutoff = estate.as_of - pd.Timedelta(days=float(params["min_age_days"]))
    candidate = (
        (counts > keep) & ~kept.reindex(versions.index)
        & ~versions["id"].isin(estate.used_version_ids)
        & (versions["published_date"] < cutoff).fillna(False)
        & ~_is_retained(estate, "image_versions", params["retain_tag"]))
    flagged = versions[candidate]
    if flagged.empty:
        return resources(estate, ["image_versions"]).iloc[0:0]
    regions = estate.version_regions.groupby("version_id").agg(
        replica_regions=("region", "size"), replicas=("regional_replica_count", "sum"))
    sizes = flagged["os_disk_size_gb"].fillna(0) + flagged["data_disk_size_gb"].fillna(0)
    flagged = flagged.assign(
        size_gb=sizes, version_count=counts[candidate],
        age_days=(estate.as_of - flagged["published_date"]).dt.days,
    ).join(regions, on="id")
    flagged["replicas"] = flagged["replicas"].fillna(0).astype("int64")
    flagged["replica_regions"] = flagged["replica_regions"].fillna(0).astype("int64")
    columns = ["id", "size_gb", "replicas", "replica_regions", "version_count", "age_days",
               "published_date", "storage_account_type", "provisioning_state"]
    return resources(estate, ["image_versions"]).merge(flagged[columns], on="id")


def managed_image_unused(estate, params) -> pd.DataFrame:
    """Managed images no machine boots from and no gallery version was built from."""
    images = estate.managed_images
    used = estate.usage["managed_image_id"].unique()
    sources = estate.image_versions["source_id"]
    unused = images[~images["id"].isin(used) & ~images["id"].isin(sources)]
    return resources(estate, ["managed_images"]).merge(
        unused[["id", "os_disk_size_gb", "data_disk_size_gb", "storage_account_type"]].assign(
            size_gb=unused["os_disk_size_gb"].fillna(0) + unused["data_disk_size_gb"].fillna(0)),
        on="id")


def empty_gallery_or_definition(estate, params) -> pd.DataFrame:
    """Definitions with no versions and galleries with no definitions."""
    definitions = estate.image_definitions
    empty_definitions = definitions.loc[
        ~definitions["id"].isin(estate.image_versions["definition_id"]), "id"]
    empty_galleries = estate.galleries.loc[
        ~estate.galleries["id"].isin(definitions["gallery_id"]), "id"]
    out = resources(estate, ["image_definitions", "galleries"])
    out = out[out["id"].isin(empty_definitions) | out["id"].isin(empty_galleries)]
    return out.assign(empty=out["id"].isin(empty_galleries).map(
        {True: "a gallery with no image definitions", False: "an image definition with no versions"}))
