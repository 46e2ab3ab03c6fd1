"""Retention checks: image versions and managed images nobody uses any more, and empty
galleries and definitions. The evidence carries sizes and replica counts so that a cost
step can price each finding."""

from __future__ import annotations

import fnmatch

import pandas as pd

from auditor.checks.tag import resources
from auditor.errors import AuditError
from auditor.estate import lowered

# Provisioning states in which a version may be deleted: no operation is running on it.
# Creating, Updating (a region being added: replication), Migrating and Deleting are
# operations in flight (REST spec enum, GalleryImageVersionProperties.provisioningState).
# Failed is the end of an operation that did not complete; the version is judged like any other.
SETTLED_STATES = ("succeeded", "failed")
RBAC_SCOPES = ("gallery", "resource_group", "subscription")
# Built-in roles named in reasons; any role counts (most built-in roles grant */read).
BUILT_IN_ROLES = {"acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
                  "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
                  "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner"}


def _is_retained(estate, table: str, tag_name: str) -> pd.Series:
    return lowered(estate.tag(table, tag_name)).str.strip() == "true"


def _listed(values: pd.Series, limit: int = 3) -> str:
    values = sorted(set(values.astype(str)))
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def _setting(params, name: str, default) -> list[str]:
    value = params.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuditError(f"RET001 params.{name}: expected a list of text, got {value!r}")
    return [v.strip().lower() for v in value]


def shared_beyond_audit(estate, params) -> pd.Series:
    """Per gallery id, who outside the audited scope may deploy its versions, in words (a
    gallery not listed: no one known). A version such a gallery holds is never advised for deletion: the
    machines that deploy or scale out from it are not in the snapshot.

    - Community: every Azure customer.
    - Groups (direct sharing): each subscription not read by this audit, each tenant; groups
      that could not be read (no `$expand=sharingProfile/Groups` answer) count as unknown.
    - RBAC: a role assignment at the gallery scope or below (a definition, a version), and at
      its resource group or subscription when `rbac_scopes` says so, to a principal not in
      `principals_in_scope`, whatever its role (most built-in roles grant read of everything,
      and a custom role's actions are not collected).
    - Coverage: the gallery's subscription is in the scope table as not read (COV001), so
      neither were its role assignments.
    Galleries matching `consumers_in_scope` (id globs) are the config's word that every
    consumer is audited: nothing is held for them."""
    galleries = estate.galleries
    ids = galleries["id"]
    scopes = _setting(params, "rbac_scopes", ["gallery"])
    for scope in scopes:
        if scope not in RBAC_SCOPES:
            raise AuditError(f"RET001 params.rbac_scopes: unknown scope {scope!r} "
                             f"(one of {', '.join(RBAC_SCOPES)})")
    principals = set(_setting(params, "principals_in_scope", []))
    read = lowered(estate.scope["status"]) == "ok"
    audited = set(lowered(estate.scope.loc[read, "subscription_id"]))
    unread = set(lowered(estate.scope.loc[~read, "subscription_id"]))
    reasons = pd.DataFrame({"gallery_id": pd.Series(dtype="object"),
                            "reason": pd.Series(dtype="object")})
    parts = [reasons]

    def held(mask: pd.Series, text) -> None:
        text = text if isinstance(text, pd.Series) else pd.Series(text, index=galleries.index)
        parts.append(pd.DataFrame({"gallery_id": ids[mask], "reason": text[mask]}))

    permissions = lowered(galleries["sharing_permissions"])
    held(permissions == "community", "shared to every Azure customer (community gallery)")
    held((permissions == "groups") & ~galleries["sharing_groups_read"].fillna(False).astype(bool),
         "shared directly to groups this audit could not read")
    shares = estate.gallery_shares
    kind = lowered(shares["type"])
    outside = shares[(kind != "subscriptions") | ~lowered(shares["target"]).isin(audited)]
    outside = outside.assign(label=kind[outside.index].map(
        {"subscriptions": "subscription ", "aadtenants": "tenant "}).fillna("group ")
        + outside["target"].astype(str))
    by_gallery = outside.groupby("gallery_id")["label"].agg(_listed)
    direct = ids.isin(by_gallery.index) & (permissions == "groups")
    held(direct, "shared directly to " + ids.map(by_gallery).astype("object").fillna("")
         + " outside the audit")

    assignments = estate.role_assignments
    assignments = assignments[~lowered(assignments["principal_id"]).isin(principals)]
    scope = lowered(assignments["scope"])
    guid = assignments["role_definition_id"].astype(str).str.rsplit("/", n=1).str[-1].str.lower()
    assignments = assignments.assign(scope=scope, label=guid.map(BUILT_IN_ROLES).fillna(
        "role " + guid) + " to " + assignments["principal_type"].fillna("principal").astype(str)
        + " " + assignments["principal_id"].astype(str))
    owner = scope.str.extract(r"^(/subscriptions/[^/]+/resourcegroups/[^/]+/providers/"
                              r"microsoft\.compute/galleries/[^/]+)(?:/.*)?$")[0]
    rbac = [assignments.assign(gallery_id=owner).dropna(subset=["gallery_id"])]
    group_scope = "/subscriptions/" + galleries["subscription_id"].astype(str) \
        + "/resourcegroups/" + lowered(galleries["resource_group"])
    for name, gallery_scope in (("resource_group", group_scope),
                                ("subscription", "/subscriptions/" + galleries["subscription_id"])):
        if name in scopes:
            keyed = pd.DataFrame({"gallery_id": ids, "scope": gallery_scope})
            rbac.append(keyed.merge(assignments.drop(columns="gallery_id", errors="ignore"),
                                    on="scope"))
    granted = pd.concat(rbac, ignore_index=True).groupby("gallery_id")["label"].agg(_listed)
    held(ids.isin(granted.index),
         "readable through RBAC by " + ids.map(granted).astype("object").fillna(""))
    held(lowered(galleries["subscription_id"]).isin(unread),
         "its subscription was not fully read (COV001): who it is shared with is unknown")

    reasons = pd.concat(parts, ignore_index=True)
    patterns = _setting(params, "consumers_in_scope", [])
    waived = reasons["gallery_id"].map(
        lambda gallery: any(fnmatch.fnmatchcase(gallery, p) for p in patterns))
    return reasons[~waived.astype(bool)].groupby("gallery_id")["reason"].agg("; ".join)


def version_holds(estate, params) -> pd.Series:
    """`_version_holds`, computed once per estate and sharing settings (RET001, RET002 and
    REP010 read it)."""
    key = repr([params.get(name) for name in ("consumers_in_scope", "principals_in_scope",
                                              "rbac_scopes")])
    return estate.shared(f"version_holds:{key}", lambda e: _version_holds(e, params))


def _version_holds(estate, params) -> pd.Series:
    """Per version (by the image_versions index), why it must not be deleted whatever the
    rest says ('' where nothing holds it): an operation in flight (its provisioning state,
    or a region still replicating), or a gallery shared beyond the audited scope
    (`shared_beyond_audit`)."""
    versions = estate.image_versions
    state = lowered(versions["provisioning_state"])
    reason = pd.Series("", index=versions.index, dtype="object")
    busy = ~state.isin(SETTLED_STATES) & (state != "")
    reason[busy] = ("provisioning state " + versions.loc[busy, "provisioning_state"].astype(str)
                    + ": an operation (creation, replication to a region, deletion) is in flight")
    reason[state == ""] = "provisioning state not recorded: an operation may be in flight"
    # With `collect --deep`: a region still replicating, whatever the provisioning state says.
    replication = estate.version_replication
    replicating = replication[lowered(replication["state"]) == "replicating"]
    regions = replicating.groupby("version_id")["region"].agg(_listed)
    copying = versions["id"].map(regions)
    has = copying.notna()
    reason[has] = reason[has].where(reason[has] == "", reason[has] + "; ") \
        + "still replicating to " + copying[has].astype(str)
    shared = versions["gallery_id"].map(shared_beyond_audit(estate, params))
    has = shared.notna()
    reason[has] = reason[has].where(reason[has] == "", reason[has] + "; ") + shared[has]
    unknown = versions["definition_id"].map(unrecorded_runners(estate))
    has = unknown.notna()
    reason[has] = reason[has].where(reason[has] == "", reason[has] + "; ") + unknown[has]
    return reason


def unrecorded_runners(estate) -> pd.Series:
    """Per definition id, the machines that reference it without a version and record no
    version they run (no OS disk in the snapshot: an ephemeral OS disk, a Uniform scale set's
    instances, a disk not collected), in words. What they run is whatever `latest` was when
    each instance was created or, for an ephemeral OS disk, last reimaged: any version of the
    definition may be it, so none is advised for deletion."""
    usage = estate.usage
    # A Flexible set whose members are in the snapshot counts 0: its members say what runs.
    guessed = usage[(usage["resolved_from"] == "latest") & usage["definition_id"].notna()
                    & (usage["capacity"].fillna(1) > 0)]
    names = guessed.groupby("definition_id", observed=True)["name"].agg(_listed)
    return ("used by " + names + " through `latest` with no recorded version: any version "
            "of the definition may be the one they run")


def versions_beyond_retention(estate, params) -> pd.DataFrame:
    """Versions beyond the newest `keep_versions` provisioned ones of a definition that no
    machine uses, that are older than `min_age_days`, not tagged to retain and that nothing
    holds (`version_holds`: in flight, or in a gallery shared beyond the audit)."""
    flagged = _beyond_retention(estate, params)
    return flagged[flagged["held_by"] == ""].drop(columns="held_by")


def withheld_versions(estate, params) -> pd.DataFrame:
    """The versions RET001 would flag but for what holds them: id and reason (for the
    cleanup plan's blocked list)."""
    flagged = _beyond_retention(estate, params)
    held = flagged[flagged["held_by"] != ""]
    return pd.DataFrame({"id": held["id"], "reason": held["held_by"]}).reset_index(drop=True)


def _beyond_retention(estate, params) -> pd.DataFrame:
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
        return resources(estate, ["image_versions"]).iloc[0:0].assign(held_by="")
    held_by = version_holds(estate, params)[candidate]
    regions = estate.version_regions.groupby("version_id").agg(
        replica_regions=("region", "size"), replicas=("regional_replica_count", "sum"))
    sizes = flagged["os_disk_size_gb"].fillna(0) + flagged["data_disk_size_gb"].fillna(0)
    flagged = flagged.assign(
        size_gb=sizes, version_count=counts[candidate], held_by=held_by,
        age_days=(estate.as_of - flagged["published_date"]).dt.days,
    ).join(regions, on="id")
    flagged["replicas"] = flagged["replicas"].fillna(0).astype("int64")
    flagged["replica_regions"] = flagged["replica_regions"].fillna(0).astype("int64")
    columns = ["id", "size_gb", "replicas", "replica_regions", "version_count", "age_days",
               "published_date", "storage_account_type", "provisioning_state", "held_by"]
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
