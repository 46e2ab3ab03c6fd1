"""Tagging checks: they read the long `resource_tags` table so that tag names compare
case-insensitively, as Azure's do, without parsing tags per resource."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditor.engine import RESOURCE_TYPES
from auditor.estate import distinct_pairs

IMAGE_TABLES = ["galleries", "image_definitions", "image_versions", "managed_images"]
_IDENTITY = ["id", "arm_id", "name", "subscription_id", "resource_group", "location"]


def _isin(column: pd.Series, values) -> np.ndarray:
    """`column.isin(values)` computed by Arrow: several times faster on string columns; a
    categorical column is tested once per category."""
    value_set = pa.array(pd.Series(values, dtype=object), type=pa.string())
    if isinstance(column.dtype, pd.CategoricalDtype):
        found = pc.is_in(pa.array(column.cat.categories.astype(object), type=pa.string()),
                         value_set=value_set)
        found = np.append(found.to_numpy(zero_copy_only=False), False)
        return found[column.cat.codes.to_numpy()]
    found = pc.is_in(pa.array(column), value_set=value_set)
    return found.fill_null(False).to_numpy(zero_copy_only=False)


def resources(estate, tables: list[str], ids: pd.Index | None = None) -> pd.DataFrame:
    """The identity columns of several tables stacked (only rows whose id is in `ids`, when
    given), with each row's resource type. A version is named `definition/version`: its own
    name (`1.2.0`) says too little."""
    frames = []
    for table in tables:
        frame = estate.tables[table][_IDENTITY]
        if ids is not None:
            frame = frame[_isin(frame["id"], ids)]
        frame = frame.assign(resource_type=RESOURCE_TYPES[table])
        if table == "image_versions":
            frame = frame.assign(name=frame["arm_id"].str.extract(r"(?i)/images/([^/]+)/versions/")[0]
                                 .fillna("?") + "/" + frame["name"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _listed(frame: pd.DataFrame, by: str, column: str) -> pd.Series:
    """`column` values joined per `by` group, in a stable order."""
    ordered = frame.sort_values(column)
    several = ordered.duplicated(by, keep=False)
    single = ordered.loc[~several].set_index(by)[column]
    if not several.any():
        return single
    joined = ordered.loc[several].groupby(by, sort=False)[column].agg(", ".join)
    return pd.concat([single, joined])


def missing_required_tags(estate, params) -> pd.DataFrame:
    """One row per image resource lacking any required tag (an empty value counts as missing)."""
    required = pd.Series(list(dict.fromkeys(t.lower() for t in params["required_tags"])),
                         name="key_lower", dtype="object")
    targets = resources(estate, IMAGE_TABLES)
    if targets.empty or required.empty:
        return targets.iloc[0:0]
    tags = estate.tables["resource_tags"]
    tags = tags[_isin(tags["key_lower"], required) & _isin(tags["resource_id"], targets["id"])]
    present = tags.loc[tags["value"].fillna("").str.strip() != "", ["resource_id", "key_lower"]]
    wanted = targets[["id"]].merge(required, how="cross")
    gaps = wanted.merge(present.drop_duplicates(), how="left", left_on=["id", "key_lower"],
                        right_on=["resource_id", "key_lower"], indicator=True)
    gaps = gaps[gaps["_merge"] == "left_only"]
    # A version records what some tags would repeat (its publishedDate is its creation date).
    not_on_versions = [str(t).lower() for t in params.get("not_required_on_versions") or []]
    if not_on_versions and not gaps.empty:
        versions = estate.tables["image_versions"]["id"]
        gaps = gaps[~(_isin(gaps["key_lower"], not_on_versions) & _isin(gaps["id"], versions))]
    missing = _listed(gaps, "id", "key_lower").rename("missing_tags")
    return targets.join(missing, on="id", how="inner")


def tag_value_not_allowed(estate, params) -> pd.DataFrame:
    """One row per resource with a tag whose value lies outside the allowed set for that tag."""
    allowed = pd.DataFrame(
        [(key.lower(), str(value).lower()) for key, values in params["allowed_values"].items()
         for value in values], columns=["key_lower", "value_lower"])
    tags = estate.tables["resource_tags"]
    candidate = np.flatnonzero(_isin(tags["key_lower"], allowed["key_lower"]))
    # Tag values repeat: each distinct (key, value) pair is judged once.
    keys = tags["key_lower"].take(candidate)
    values = tags["value"].take(candidate)
    first, pair = distinct_pairs(keys, values)
    pairs = pd.DataFrame({"key_lower": keys.iloc[first].to_numpy(dtype=object),
                          "value_lower": values.iloc[first].fillna("").str.lower()
                          .to_numpy(dtype=object)})
    checked = pairs.merge(allowed.drop_duplicates(), how="left", on=["key_lower", "value_lower"],
                          indicator=True)
    bad_pair = (checked["_merge"] == "left_only").to_numpy(dtype=bool)
    bad = tags.iloc[candidate[bad_pair[pair]]]
    if bad.empty:
        return resources(estate, IMAGE_TABLES).iloc[0:0]
    bad = bad.assign(bad_tags=bad["key"].astype(object) + "="
                     + bad["value"].astype(object).fillna("").map(repr))
    listed = _listed(bad, "resource_id", "bad_tags")
    targets = resources(estate, IMAGE_TABLES + ["machines"], ids=listed.index)
    rows = targets.join(listed, on="id", how="inner")
    allowed_text = "; ".join(f"{key}: {', '.join(map(str, values))}"
                             for key, values in params["allowed_values"].items())
    return rows.assign(allowed=allowed_text)
