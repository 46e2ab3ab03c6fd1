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
    kind = machines["image_kind"].astype("object")
    marketplace_id = (machines["image_publisher"].astype("object") + ":"
                      + machines["image_offer"].astype("object") + ":"
                      + machines["image_sku"].astype("object"))
    path = lowered(machines["image_definition_id"]).str.extract(_GALLERY_PATH)
    gallery_name, definition_name = path[0], path[1]
    identifiers = estate.image_definitions.set_index("id")
    definition_sku = lookup(machines["image_definition_id"], identifiers["publisher"] + ":"
                            + identifiers["offer"] + ":" + identifiers["sku"])
    image_name = last_segment(machines["image_id"])
    is_gallery = kind.isin(["gallery", "shared", "community"])
    ok = np.select(
        [kind == "marketplace", is_gallery, kind == "managed"],
        [_matches(marketplace_id, match["marketplace"]),
         _matches(gallery_name, match["galleries"])
         | _matches(gallery_name + "/" + definition_name, match["definitions"])
         | _matches(definition_sku, match["marketplace"]),
         _matches(image_name, match["managed_images"])], default=False)
    image = pd.Series(np.select(
        [kind == "marketplace", is_gallery, kind == "managed", kind == "vhd"],
        ["Marketplace image " + marketplace_id.fillna("?"),
         kind + " gallery image " + gallery_name.fillna("?") + "/" + definition_name.fillna("?"),
         "managed image " + image_name.fillna("?"), "an unmanaged VHD"],
        default="an image of unknown origin"), index=machines.index)
    bad = ~pd.Series(ok, index=machines.index, dtype=bool)
    return pd.DataFrame({"id": machines.loc[bad, "id"], "name": machines.loc[bad, "name"],
                         "kind": machines.loc[bad, "kind"], "image": image[bad],
                         "image_kind": kind[bad], "image_id": machines.loc[bad, "image_id"]})
