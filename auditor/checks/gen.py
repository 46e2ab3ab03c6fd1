"""Generalisation checks that need usage: a specialized image cloned onto several machines."""

from __future__ import annotations

import pandas as pd

from auditor.checks.tag import resources
from auditor.estate import lowered


def _specialized(frame: pd.DataFrame) -> pd.Series:
    return lowered(frame["os_state"]) == "specialized"


def specialized_image_cloned(estate, params) -> pd.DataFrame:
    """Specialized definitions and managed images in use by more than one machine (a scale
    set counts as its capacity)."""
    definitions = estate.image_definitions
    images = estate.managed_images
    usage = estate.usage
    usage = usage[usage["definition_id"].isin(definitions.loc[_specialized(definitions), "id"])
                  | usage["managed_image_id"].isin(images.loc[_specialized(images), "id"])]
    by_definition = usage.groupby("definition_id").agg(
        machines=("capacity", "sum"), machine_names=("name", _first_names))
    by_image = usage.groupby("managed_image_id").agg(
        machines=("capacity", "sum"), machine_names=("name", _first_names))
    counts = pd.concat([by_definition, by_image])
    counts = counts[counts["machines"] > 1]
    return resources(estate, ["image_definitions", "managed_images"]).join(
        counts, on="id", how="inner")


def _first_names(names: pd.Series, shown: int = 3) -> str:
    names = sorted(names.astype(str))
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
