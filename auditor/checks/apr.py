"""Approved images: machines run only images on the configured approved list."""

from __future__ import annotations

import fnmatch
import re

import numpy as np
import pandas as pd

from auditor.errors import AuditError
from auditor.estate import last_segment, lookup, lowered

APPROVED_KEYS = ("marketplace", "galleries", "definitions", "managed_images")
_GALLERY_PATH = r"/(?:shared|community)?galleries/([^/]+)/images/([^/]+)$"


def _matcher(patterns) -> re.Pattern | None:
    """One case-insensitive regex for a list of shell-style globs (None when empty)."""
    patterns = [str(p).lower() for p in patterns or []]
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _matches(values: pd.Series, matcher: re.Pattern | None) -> pd.Series:
    if matcher is None:
        return pd.Series(False, index=values.index)
    return lowered(values).str.match(matcher).astype(bool)


def not_approved(estate, params) -> pd.DataFrame:
    """Machines whose image matches none of the approved patterns. Gallery images match by
    gallery name, `gallery/definition`, or the definition's publisher:offer:sku."""
    approved = params["approved"]
    unknown = set(approved) - set(APPROVED_KEYS)
    if unknown:
        raise AuditError(f"APR001: params.approved: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(APPROVED_KEYS)})")
    if not any(approved.get(key) for key in APPROVED_KEYS):
        raise AuditError("APR001 is enabled but params.approved lists nothing; set "
                         "rules.APR001.params.approved in the config")
    match = {key: _matcher(approved.get(key)) for key in APPROVED_KEYS}
    machines = estate.machines
    # Judge each distinct image once: an estate has many machines but few images.
    images = machines[IMAGE_COLUMNS].drop_duplicates()
    judged = _judge(images.reset_index(drop=True), match, estate)
    rows = machines[["id", "name", "kind"] + IMAGE_COLUMNS].merge(
        judged, how="left", on=IMAGE_COLUMNS)
    rows = rows[~rows["approved"].fillna(False).astype(bool)]
    return rows[["id", "name", "kind", "image", "image_kind", "image_id"]]


IMAGE_COLUMNS = ["image_kind", "image_publisher", "image_offer", "image_sku",
                 "image_definition_id", "image_id"]


def _judge(images: pd.DataFrame, match: dict, estate) -> pd.DataFrame:
    """For each distinct image: approved or not, and how to name it in a message."""
    kind = images["image_kind"].astype("object")
    marketplace_id = (images["image_publisher"].astype("object") + ":"
                      + images["image_offer"].astype("object") + ":"
                      + images["image_sku"].astype("object"))
    path = lowered(images["image_definition_id"]).str.extract(_GALLERY_PATH)
    gallery_name, definition_name = path[0], path[1]
    identifiers = estate.image_definitions.set_index("id")
    definition_sku = lookup(images["image_definition_id"], identifiers["publisher"] + ":"
                            + identifiers["offer"] + ":" + identifiers["sku"])
    image_name = last_segment(images["image_id"])
    is_gallery = kind.isin(["gallery", "shared", "community"])
    ok = np.select(
        [kind == "marketplace", is_gallery, kind == "managed"],
        [_matches(marketplace_id, match["marketplace"]),
         _matches(gallery_name, match["galleries"])
         | _matches(gallery_name + "/" + definition_name, match["definitions"])
         | _matches(definition_sku, match["marketplace"]),
         _matches(image_name, match["managed_images"])], default=False)
    image = np.select(
        [kind == "marketplace", is_gallery, kind == "managed", kind == "vhd"],
        ["Marketplace image " + marketplace_id.fillna("?"),
         kind + " gallery image " + gallery_name.fillna("?") + "/" + definition_name.fillna("?"),
         "managed image " + image_name.fillna("?"), "an unmanaged VHD"],
        default="an image of unknown origin")
    return images.assign(approved=np.asarray(ok, dtype=bool), image=image)
