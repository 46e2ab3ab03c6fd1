"""Replication checks. They read `version_replication`, which only a `--deep` collection
fills (one row per version and region, as ARM's replicationStatus reports it); without it
there is nothing to judge and no finding."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
