"""Sharing checks: who outside the organisation can deploy a gallery's images, and which
production machines run images published outside it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.checks.ret import _listed
from auditor.checks.tag import resources
from auditor.estate import lowered

# `/SharedGalleries/<uniqueName>/Images/<definition>` and `/CommunityGalleries/<publicName>/...`
_EXTERNAL_IMAGE = r"^/(sharedgalleries|communitygalleries)/([^/]+)/images/([^/]+)"
# Azure names a directly shared gallery `<subscription id>-<GALLERY NAME>` (identifier.uniqueName).
_OWNER_SUBSCRIPTION = r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-"
_GROUP_LABEL = {"subscriptions": "subscription ", "aadtenants": "tenant "}


def _texts(values) -> set[str]:
    return {str(v).strip().lower() for v in values or []}


def _galleries(estate) -> pd.DataFrame:
    return resources(estate, ["galleries"])


def shared_with_community(estate, params) -> pd.DataFrame:
    """Galleries whose sharing profile is Community."""
    galleries = estate.galleries
    community = galleries[lowered(galleries["sharing_permissions"]) == "community"]
    names = community["community_names"].astype(object).str.replace(",", ", ")
    out = _galleries(estate).merge(pd.DataFrame({
        "id": community["id"], "sharing_permissions": community["sharing_permissions"],
        "public_names": names.fillna("(not recorded)")}), on="id")
    return out


def shared_outside_allow_list(estate, params) -> pd.DataFrame:
    """Galleries shared directly (permissions Groups) to a subscription or tenant outside the
    allow list, or whose groups could not be read (unknown is not allowed)."""
    allowed_subscriptions = _texts(params["allowed_subscriptions"])
    allowed_tenants = _texts(params["allowed_tenants"])
    if params["allow_audited_subscriptions"]:
        scope = estate.scope
        allowed_subscriptions |= set(lowered(scope.loc[lowered(scope["status"]) == "ok",
                                                       "subscription_id"]))
    galleries = estate.galleries
    direct = galleries[lowered(galleries["sharing_permissions"]) == "groups"]
    shares = estate.gallery_shares
    kind = lowered(shares["type"])
    target = lowered(shares["target"])
    allowed = ((kind == "subscriptions") & target.isin(allowed_subscriptions)) \
        | ((kind == "aadtenants") & target.isin(allowed_tenants))
    outside = shares[~allowed & shares["gallery_id"].isin(direct["id"])]
    outside = outside.assign(label=kind[outside.index].map(_GROUP_LABEL).fillna("group ")
                             + outside["target"].astype(str))
    listed = outside.groupby("gallery_id")["label"].agg(lambda v: _listed(v, limit=5))
    unread = direct[~direct["sharing_groups_read"].fillna(False).astype(bool)]["id"]
    reasons = pd.concat([
        "is shared directly to " + listed + ", outside the allow list",
        pd.Series("is shared directly, but its groups could not be read (no "
                  "$expand=sharingProfile/Groups answer): who can deploy its images is unknown",
                  index=unread.to_numpy(dtype=object), dtype=object)])
    reasons = reasons[~reasons.index.duplicated()]
    out = _galleries(estate)
    out = out[out["id"].isin(reasons.index)]
    return out.assign(problem=reasons.reindex(out["id"].to_numpy()).to_numpy(dtype=object),
                      outside=listed.reindex(out["id"].to_numpy()).fillna("(unknown)")
                      .to_numpy(dtype=object))


def production_on_external_image(estate, params) -> pd.DataFrame:
    """Production machines on a community or directly shared image whose gallery is not the
    organisation's: not in the snapshot, not named in `own_galleries`, and (for a directly
    shared gallery) not in an own or audited subscription."""
    machines = estate.machines
    production = estate.is_production("machines", params["production_values"]).to_numpy(bool)
    external = machines["image_kind"].isin(["shared", "community"]).fillna(False) \
        .to_numpy(dtype=bool) & production
    rows = machines[external]
    # Few distinct images among many machines: each is judged once.
    code, images = pd.factorize(rows["image_id"].astype(object))
    images = pd.Series(images, dtype=object)
    parts = lowered(images).str.extract(_EXTERNAL_IMAGE)
    owner = parts[1].str.extract(_OWNER_SUBSCRIPTION)[0]
    scope = estate.scope
    own_subscriptions = _texts(params["own_subscriptions"]) | set(
        lowered(scope.loc[lowered(scope["status"]) == "ok", "subscription_id"]))
    own = estate.local_gallery_ids(images).notna().to_numpy(dtype=bool) \
        | parts[1].isin(_texts(params["own_galleries"])).to_numpy(dtype=bool) \
        | ((parts[0] == "sharedgalleries") & owner.isin(own_subscriptions)).to_numpy(dtype=bool)
    foreign = ~np.append(own, True)[code]  # code -1 (no image id): nothing to judge
    rows = rows[foreign]
    at = code[foreign]
    shared = (parts[0] == "sharedgalleries").to_numpy(dtype=bool)[at]
    return pd.DataFrame({
        "id": rows["id"], "name": rows["name"], "kind": rows["kind"],
        "image_kind": rows["image_kind"],
        "sharing": np.where(shared, "directly shared", "community"),
        "gallery": parts[1].fillna("(unrecognised id)").to_numpy(dtype=object)[at],
        "image": parts[2].fillna("?").to_numpy(dtype=object)[at],
        "image_id": rows["image_id"]})
