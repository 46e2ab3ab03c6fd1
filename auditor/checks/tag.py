"""Tagging checks: they read the long `resource_tags` table so that tag names compare
case-insensitively, as Azure's do, without parsing tags per resource."""

from __future__ import annotations

import pandas as pd

from auditor.engine import RESOURCE_TYPES

IMAGE_TABLES = ["galleries", "image_definitions", "image_versions", "managed_images"]
_IDENTITY = ["id", "arm_id", "name", "subscription_id", "resource_group", "location"]


def resources(estate, tables: list[str]) -> pd.DataFrame:
    """The identity columns of several tables stacked, with each row's resource type.
    A version is named `definition/version`: its own name (`1.2.0`) says too little."""
    frames = []
    for table in tables:
        frame = estate.tables[table][_IDENTITY].assign(resource_type=RESOURCE_TYPES[table])
        if table == "image_versions":
            frame = frame.assign(name=frame["id"].str.extract(r"/images/([^/]+)/versions/")[0]
                                 .fillna("?") + "/" + frame["name"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _listed(frame: pd.DataFrame, by: str, column: str) -> pd.Series:
    """`column` values joined per `by` group, in a stable order."""
    return frame.sort_values(column).groupby(by, sort=False)[column].agg(", ".join)


def missing_required_tags(estate, params) -> pd.DataFrame:
    """One row per image resource lacking any required tag (an empty value counts as missing)."""
    required = pd.Series(list(dict.fromkeys(t.lower() for t in params["required_tags"])),
                         name="key_lower", dtype="object")
    targets = resources(estate, IMAGE_TABLES)
    if targets.empty or required.empty:
        return targets.iloc[0:0]
    tags = estate.tables["resource_tags"]
    present = tags.loc[tags["value"].fillna("").str.strip() != "", ["resource_id", "key_lower"]]
    wanted = targets[["id"]].merge(required, how="cross")
    gaps = wanted.merge(present.drop_duplicates(), how="left", left_on=["id", "key_lower"],
                        right_on=["resource_id", "key_lower"], indicator=True)
    gaps = gaps[gaps["_merge"] == "left_only"]
    missing = _listed(gaps, "id", "key_lower").rename("missing_tags")
    return targets.join(missing, on="id", how="inner")


def tag_value_not_allowed(estate, params) -> pd.DataFrame:
    """One row per resource with a tag whose value lies outside the allowed set for that tag."""
    allowed = pd.DataFrame(
        [(key.lower(), str(value).lower()) for key, values in params["allowed_values"].items()
         for value in values], columns=["key_lower", "value_lower"])
    tags = estate.tables["resource_tags"]
    tags = tags[tags["key_lower"].isin(allowed["key_lower"])].assign(
        value_lower=lambda t: t["value"].fillna("").str.lower())
    checked = tags.merge(allowed, how="left", on=["key_lower", "value_lower"], indicator=True)
    bad = checked[checked["_merge"] == "left_only"]
    if bad.empty:
        return resources(estate, IMAGE_TABLES).iloc[0:0]
    bad = bad.assign(bad_tags=bad["key"] + "=" + bad["value"].fillna("").map(repr))
    listed = _listed(bad, "resource_id", "bad_tags")
    targets = resources(estate, IMAGE_TABLES + ["machines"])
    rows = targets.join(listed, on="id", how="inner")
    allowed_text = "; ".join(f"{key}: {', '.join(map(str, values))}"
                             for key, values in params["allowed_values"].items())
    return rows.assign(allowed=allowed_text)
