"""Approved images: machines run only images on the configured approved list.

Marketplace images are approved by `publisher:offer:sku` patterns. Gallery images are
approved by resource id (of the gallery, the definition or the version), never by the
definition's publisher/offer/sku: that identifier is free text whoever creates a definition
chooses, so anyone could label one `Canonical:...`. Shared and community gallery images
live outside the tenant and are approved only when listed by their full id.
"""

from __future__ import annotations

import fnmatch
import re

import numpy as np
import pandas as pd

from auditor.errors import AuditError, shown
from auditor.estate import last_segment, lowered

APPROVED_KEYS = ("marketplace", "gallery_ids", "shared_images", "managed_images")
# Keys of earlier versions of this rule, and what replaced them.
REPLACED_KEYS = {
    "galleries": "gallery_ids (resource id globs of galleries, like "
                 "/subscriptions/*/resourceGroups/RG/providers/Microsoft.Compute/galleries/NAME)",
    "definitions": "gallery_ids (resource id globs of image definitions, like "
                   ".../galleries/NAME/images/DEFINITION) or shared_images (full ids of shared "
                   "or community gallery images)",
}
_GALLERY_PATH = r"/(?:shared|community)?galleries/([^/]+)/images/([^/]+)$"
_EXTERNAL = re.compile(r"^/(?:shared|community)galleries/[^/*?\[\]]+/images/[^/*?\[\]]+"
                       r"(?:/versions/[^/*?\[\]]+)?$")


def renamed_param(params: dict) -> str | None:
    """A param of an earlier version of APR001, named with what replaced it: checked before
    the config's schema, so such a config fails with what to write instead."""
    approved = params.get("approved")
    for key in approved if isinstance(approved, dict) else ():
        if key in REPLACED_KEYS:
            return (f"params.approved.{key} is no longer read: gallery images are approved by "
                    f"resource id, not by name; use {REPLACED_KEYS[key]}")
    return None


def params_problem(params: dict) -> str | None:
    """Why APR001's params cannot be used (None when they can): checked when the config is
    read, so a config written for an earlier version of the rule fails at once."""
    approved = params.get("approved")
    if not isinstance(approved, dict):
        return "params.approved must be a mapping"
    renamed = renamed_param(params)
    if renamed:
        return renamed
    unknown = set(approved) - set(APPROVED_KEYS)
    if unknown:
        return (f"params.approved: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                f"(known: {', '.join(APPROVED_KEYS)})")
    for key in APPROVED_KEYS:
        if approved.get(key) is not None and not isinstance(approved.get(key), list):
            return f"params.approved.{key} must be a list"
    for entry in approved.get("shared_images") or []:
        if not _EXTERNAL.match(_lower_id(entry)):
            return (f"params.approved.shared_images: {shown(entry)} is not the full id of a shared or "
                    "community gallery image (/SharedGalleries/NAME/Images/DEFINITION or "
                    "/CommunityGalleries/NAME/Images/DEFINITION, optionally /Versions/X; no "
                    "wildcards: a gallery name is no identity)")
    return None


def _lower_id(value) -> str:
    return str(value).strip().lower().rstrip("/")


def _matcher(patterns) -> re.Pattern | None:
    """One case-insensitive regex for a list of shell-style globs (None when empty)."""
    patterns = [_lower_id(p) for p in patterns or []]
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _matches(values: pd.Series, matcher: re.Pattern | None) -> pd.Series:
    if matcher is None:
        return pd.Series(False, index=values.index)
    return lowered(values).str.match(matcher).astype(bool)


def not_approved(estate, params) -> pd.DataFrame:
    """Machines whose image is on none of the approved lists."""
    problem = params_problem(params)
    if problem:
        raise AuditError(f"APR001: {problem}")
    approved = params["approved"]
    if not any(approved.get(key) for key in APPROVED_KEYS):
        raise AuditError("APR001 is enabled but params.approved lists nothing; set "
                         "rules.APR001.params.approved in the config")
    machines = estate.machines
    # Judge each distinct image once: an estate has many machines but few images.
    images = machines[IMAGE_COLUMNS].drop_duplicates()
    judged = _judge(images.reset_index(drop=True), approved)
    rows = machines[["id", "name", "kind"] + IMAGE_COLUMNS].merge(
        judged, how="left", on=IMAGE_COLUMNS)
    rows = rows[~rows["approved"].fillna(False).astype(bool)]
    return rows[["id", "name", "kind", "image", "image_kind", "image_id"]]


IMAGE_COLUMNS = ["image_kind", "image_publisher", "image_offer", "image_sku",
                 "image_definition_id", "image_id"]


def _judge(images: pd.DataFrame, approved: dict) -> pd.DataFrame:
    """For each distinct image: approved or not, and how to name it in a message."""
    kind = images["image_kind"].astype("object")
    marketplace_id = (images["image_publisher"].astype("object") + ":"
                      + images["image_offer"].astype("object") + ":"
                      + images["image_sku"].astype("object"))
    definition_id = lowered(images["image_definition_id"])
    image_id = lowered(images["image_id"])
    gallery_id = definition_id.str.replace(r"/images/[^/]+$", "", regex=True)
    path = definition_id.str.extract(_GALLERY_PATH)
    gallery_name, definition_name = path[0], path[1]
    by_id = _matcher(approved.get("gallery_ids"))
    listed = {_lower_id(entry) for entry in approved.get("shared_images") or []}
    image_name = last_segment(images["image_id"])
    managed = _matcher(approved.get("managed_images"))  # names, or ids (which say where)
    ok = np.select(
        [kind == "marketplace", kind == "gallery", kind.isin(["shared", "community"]),
         kind == "managed"],
        [_matches(marketplace_id, _matcher(approved.get("marketplace"))),
         _matches(gallery_id, by_id) | _matches(definition_id, by_id) | _matches(image_id, by_id),
         definition_id.isin(listed) | image_id.isin(listed),
         _matches(image_name, managed) | _matches(image_id, managed)], default=False)
    gallery_path = gallery_name.fillna("?") + "/" + definition_name.fillna("?")
    image = np.select(
        [kind == "marketplace", kind == "gallery", kind.isin(["shared", "community"]),
         kind == "managed", kind == "vhd"],
        ["Marketplace image " + marketplace_id.fillna("?"), "gallery image " + gallery_path,
         kind + " gallery image " + gallery_path, "managed image " + image_name.fillna("?"),
         "an unmanaged VHD"],
        default="an image of unknown origin")
    return images.assign(approved=np.asarray(ok, dtype=bool), image=image)
