"""The Estate: a loaded snapshot as pandas DataFrames, plus the as-of date rules judge by.

Derived views that several rules share (tag lookups, usage resolution) live here, computed
once per audit and cached, so no rule recomputes a join another rule already made.
"""

from __future__ import annotations

import json
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditor.snapshot import Snapshot

# Snapshot tables with one row per resource id (the import drops a repeated id).
UNIQUE_IDS = {"galleries", "image_definitions", "image_versions", "managed_images", "machines"}


class _KeyTags:
    """The rows of `resource_tags` with one lower-cased key: their resource ids (Arrow) and
    their values as codes into the distinct values, so lookups move integers, not text."""

    def __init__(self, tags: pd.DataFrame, key: str):
        self._mask = (tags["key_lower"] == key).to_numpy(dtype=bool)
        self._resource_ids = tags["resource_id"]  # filtered when asked: it is the big column
        self._key_ids: pa.Array | None = None
        value_code, values = codes_of(tags["value"])
        self.value_code = value_code[self._mask]
        self.values = np.append(np.asarray(values, dtype=object), np.nan)  # code -1: NaN

    def codes_for(self, ids: pd.Series, own_ids: bool) -> np.ndarray:
        """For each id, the code of its value (-1 where it has no such tag). A resource
        holding the key twice in different casings gets the first (Azure tag names are
        case-insensitive). `own_ids`: the ids are a table's id column, distinct already.
        The ids are looked up in the key's rows (sorted by resource id, as resource_tags is
        written): the cost follows the ids asked about, not the million tag rows."""
        if own_ids:
            codes, distinct = np.arange(len(ids)), ids
        else:
            codes, distinct = pd.factorize(ids)
        if self._key_ids is None:
            self._key_ids = arrow_strings(self._resource_ids).filter(pa.array(self._mask))
        at = _positions_in(arrow_strings(distinct), self._key_ids)  # the first row, if any
        value_of_distinct = np.full(len(distinct) + 1, -1, dtype=np.int64)
        found = at >= 0
        value_of_distinct[:-1][found] = self.value_code[at[found]]
        return value_of_distinct[codes]


class Estate:
    def __init__(self, snapshot: Snapshot, as_of: pd.Timestamp | None = None):
        self.snapshot = snapshot
        self.tables: dict[str, pd.DataFrame] = snapshot.tables
        self.manifest = snapshot.manifest
        as_of = pd.Timestamp(as_of) if as_of is not None else snapshot.collected_at
        self.as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")

    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)

    def _key_tags(self, key: str) -> _KeyTags | None:
        cache = self.__dict__.setdefault("_key_tags_cache", {})
        if key not in cache:
            tags = self.tables["resource_tags"]
            present = not tags.empty and bool((tags["key_lower"] == key).any())
            cache[key] = _KeyTags(tags, key) if present else None
        return cache[key]

    def _tag_codes(self, table: str | pd.DataFrame, key: str, ids) -> tuple[_KeyTags, np.ndarray]:
        """Codes of tag `key`'s values for each row (cached for a snapshot table's own ids)."""
        key_tags = self._key_tags(key.lower())
        if key_tags is None:
            return None, None
        cacheable = isinstance(table, str) and ids is None
        cache = self.__dict__.setdefault("_tag_code_cache", {})
        if cacheable and (table, key.lower()) in cache:
            return key_tags, cache[(table, key.lower())]
        frame = self.tables[table] if isinstance(table, str) else table
        own = ids is None and isinstance(table, str) and table in UNIQUE_IDS
        codes = key_tags.codes_for(frame["id"] if ids is None else ids, own)
        if cacheable:
            cache[(table, key.lower())] = codes
        return key_tags, codes

    def tag(self, table: str | pd.DataFrame, key: str, ids: pd.Series | None = None) -> pd.Series:
        """The value of tag `key` (any casing) for each row of `table` (NaN where absent),
        or of the resources `ids` names."""
        frame = self.tables[table] if isinstance(table, str) else table
        key_tags, codes = self._tag_codes(table, key, ids)
        if key_tags is None:
            return pd.Series(pd.NA, index=frame.index, dtype="object")
        return pd.Series(key_tags.values[codes], index=frame.index, dtype="object")

    # --- environment ---------------------------------------------------------------------

    def is_production(self, table: str | pd.DataFrame, production_values, ids=None) -> pd.Series:
        """True where the row's `environment` tag is a production value (any casing and
        surrounding spaces). Each distinct tag value is judged once."""
        values = [str(v).strip().lower() for v in production_values]
        frame = self.tables[table] if isinstance(table, str) else table
        key_tags, codes = self._tag_codes(table, "environment", ids)
        if key_tags is None:
            return pd.Series("" in values, index=frame.index, dtype=bool)
        judged = lowered(pd.Series(key_tags.values[:-1], dtype=object)).str.strip().isin(values)
        production = np.append(judged.to_numpy(dtype=bool), "" in values)
        return pd.Series(production[codes], index=frame.index, dtype=bool)

    # --- usage resolution ----------------------------------------------------------------

    def identity(self, table: str, columns: list[str]) -> pd.DataFrame:
        """`columns` of `table`'s first row per id (cached: rules look rows up by id)."""
        cache = self.__dict__.setdefault("_first_rows", {})
        if table not in cache:
            frame = self.tables[table]
            first = frame.drop_duplicates("id") if frame["id"].duplicated().any() else frame
            cache[table] = (first, pd.Index(first["id"]))
        return cache[table][0][columns]

    def row_positions(self, table: str, ids: pd.Series) -> np.ndarray:
        """Where each id is in `identity(table, ...)` (-1 where absent)."""
        self.identity(table, ["id"])
        return _positions(ids, self.__dict__["_first_rows"][table][1])

    def arm_ids(self, table: str, ids: pd.Series) -> pd.Series:
        """`ids` as Azure spells them (the table's `arm_id`), so names shown in messages keep
        their casing while joins use the lower-cased ids; an id not in the table stays as
        it is. Each distinct id is looked up once."""
        codes, uniques = codes_of(ids)
        distinct = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
        at = self.row_positions(table, distinct)
        arm = self.identity(table, ["arm_id"])["arm_id"].astype(object).to_numpy()
        spelled = np.where(at >= 0, arm[np.maximum(at, 0)] if len(arm) else None, distinct)
        return pd.Series(np.append(spelled.astype(object), None)[codes], index=ids.index,
                         dtype=object)

    @cached_property
    def _latest_eligible(self) -> pd.DataFrame:
        """Versions that can win `latest` somewhere: named MAJOR.MINOR.PATCH, and provisioned
        (Succeeded, state unknown, or Updating). A version is Updating while it is changed,
        for example replicated to an added region; Azure keeps serving it where it is already
        replicated ("Azure Compute Gallery ... replication": a region serves a version once
        its replication there is complete), so Updating does not take it out of `latest`
        everywhere. Creating and Failed versions serve nowhere."""
        versions = self.tables["image_versions"]
        state = lowered(versions["provisioning_state"])
        eligible = state.isin(["", "succeeded", "updating"]) & versions["major"].notna() \
            & versions["minor"].notna() & versions["patch"].notna()
        return versions.loc[eligible, ["id", "definition_id", "name", "major", "minor", "patch",
                                       "exclude_from_latest"]]

    @cached_property
    def latest_candidates(self) -> pd.DataFrame:
        """Versions that can win `latest`: provisioned (see `_latest_eligible`), named
        MAJOR.MINOR.PATCH, and not excluded from latest for the whole version."""
        eligible = self._latest_eligible
        excluded = eligible["exclude_from_latest"].fillna(False).astype(bool)
        return eligible.loc[~excluded, ["id", "definition_id", "name", "major", "minor", "patch"]]

    @cached_property
    def latest_by_definition_region(self) -> pd.DataFrame:
        """What `latest` resolves to per definition and region: the highest version (compared
        as numbers) that serves there. A region's own excludeFromLatest takes precedence over
        the version's (Microsoft: "regional settings take precedence"); where the region does
        not say, the version's flag applies. With `--deep` (replication status collected for
        a version), a region whose replication is not Completed does not serve it yet."""
        regions = self.tables["version_regions"][["version_id", "region", "exclude_from_latest"]]
        ranked = regions.rename(columns={"exclude_from_latest": "regional"}).merge(
            self._latest_eligible, left_on="version_id", right_on="id")
        regional = ranked["regional"].astype("boolean")
        excluded = regional.fillna(ranked["exclude_from_latest"].astype("boolean")).fillna(False)
        ranked = ranked[~excluded.to_numpy(dtype=bool)]
        replication = self.tables.get("version_replication")
        if replication is not None and not replication.empty:
            reported = ranked["version_id"].isin(replication["version_id"].unique())
            done = replication[lowered(replication["state"]) == "completed"]
            complete = pd.MultiIndex.from_frame(done[["version_id", "region"]])
            pairs = pd.MultiIndex.from_frame(ranked[["version_id", "region"]])
            ranked = ranked[~reported.to_numpy(dtype=bool) | pairs.isin(complete)]
        ranked = ranked.sort_values(["definition_id", "region", "major", "minor", "patch"],
                                    ascending=[True, True, False, False, False], kind="stable")
        latest = ranked.drop_duplicates(["definition_id", "region"])
        return latest[["definition_id", "region", "version_id", "name"]].rename(
            columns={"name": "version_name"}).reset_index(drop=True)

    @cached_property
    def latest_by_definition(self) -> pd.DataFrame:
        """The highest eligible version of each definition, whatever its regions."""
        ranked = self.latest_candidates.sort_values(
            ["definition_id", "major", "minor", "patch"], ascending=[True, False, False, False],
            kind="stable").drop_duplicates("definition_id")
        return ranked[["definition_id", "id", "name", "major", "minor", "patch"]].rename(
            columns={"id": "version_id", "name": "version_name"}).reset_index(drop=True)

    @cached_property
    def known_definition_ids(self) -> pd.Index:
        """Definitions the snapshot holds (as a resource, or as the parent of a version)."""
        return pd.Index(pd.concat([
            self.tables["image_definitions"]["id"].astype(object),
            self.tables["image_versions"]["definition_id"].astype(object)]).dropna().unique())

    @cached_property
    def _gallery_names(self) -> pd.Series:
        """Gallery id by the names other tenants use: `sharedgalleries/<uniqueName>` and
        `communitygalleries/<publicName>` (lower-cased)."""
        galleries = self.tables["galleries"]
        pairs = []
        if "unique_name" in galleries.columns:
            shared = galleries[galleries["unique_name"].notna()]
            pairs.append(pd.Series(shared["id"].to_numpy(dtype=object),
                                   index="/sharedgalleries/" + shared["unique_name"].astype(object)))
        if "community_names" in galleries.columns:
            community = galleries[galleries["community_names"].notna()]
            names = community["community_names"].astype(object).str.split(",")
            exploded = pd.Series(community["id"].to_numpy(dtype=object), index=names.index) \
                .repeat(names.str.len())
            pairs.append(pd.Series(exploded.to_numpy(dtype=object),
                                   index="/communitygalleries/" + pd.Index(
                                       np.concatenate(names.to_numpy()) if len(names) else [])))
        found = pd.concat(pairs) if pairs else pd.Series(dtype=object)
        return found[~found.index.duplicated()]

    def local_gallery_ids(self, ids: pd.Series) -> pd.Series:
        """Shared and community gallery ids (`/sharedGalleries/<uniqueName>/images/...`)
        as the id of the gallery in the snapshot they name; missing where it is not there."""
        names = self._gallery_names

        def each(values: pd.Series) -> pd.Series:
            parts = values.astype(object).fillna("").astype(str).str.extract(
                r"^(/(?:sharedgalleries|communitygalleries)/[^/]+)(/images/.*)$")
            gallery = pd.Series(names.reindex(parts[0].to_numpy(dtype=object)).to_numpy(),
                                index=values.index, dtype=object)
            tail = parts[1].astype(object)
            return (gallery + tail).where(gallery.notna() & tail.notna())

        return _by_unique(each, ids)

    @cached_property
    def platform_managed(self) -> pd.Series:
        """For each machine, the platform that manages it (AKS, Databricks, Service Fabric
        managed cluster, Batch) or missing: recognised by the platform's tags, by `managedBy`,
        or by an image id only that platform publishes. A Flexible scale set's member takes
        its set's platform."""
        machines = self.tables["machines"]
        found = pd.Series(None, index=machines.index, dtype=object)
        tags = self.tables["resource_tags"]
        if not tags.empty:
            # Judged once per distinct key (and value, for `Vendor`), then taken by code:
            # only the few rows that name a platform are looked at one by one.
            key_code, keys = codes_of(tags["key_lower"])
            key = pd.Series(keys.astype(object), dtype=object).fillna("").astype(str)
            by_key = np.select([key.str.startswith("aks-managed-") | key.eq("poolname"),
                                key.isin(DATABRICKS_TAG_KEYS)], ["AKS", "Databricks"],
                               default="")
            platform = np.append(by_key, "")[key_code].astype(object)
            vendor = key_code == (int(np.flatnonzero(key.eq("vendor"))[0])
                                  if key.eq("vendor").any() else -2)
            if vendor.any():
                value_code, values = codes_of(tags["value"])
                databricks = np.append(lowered(pd.Series(values, dtype=object)).eq(
                    "databricks").to_numpy(dtype=bool), False)[value_code]
                platform[vendor & databricks] = "Databricks"
            named = np.flatnonzero((platform != "")
                                   & (tags["resource_table"].astype(object) == "machines")
                                   .to_numpy(dtype=bool))
            if len(named):
                at = self.row_positions("machines", tags["resource_id"].iloc[named])
                first = self.identity("machines", ["id"])
                ids = pd.Series(first["id"].to_numpy(dtype=object)[at[at >= 0]], dtype=object)
                tagged = pd.Series(platform[named][at >= 0], index=ids)
                tagged = tagged[~tagged.index.duplicated()]
                found = pd.Series(tagged.reindex(machines["id"].astype(object)).to_numpy(),
                                  index=machines.index, dtype=object)
        if "managed_by" in machines.columns:
            by_owner = _by_unique(_platform_of_owner, machines["managed_by"])
            found = found.where(found.notna(), by_owner)
        by_image = _by_unique(_platform_of_image, machines["image_id"])
        found = found.where(found.notna(), by_image)
        publisher = lowered(machines["image_publisher"])
        found = found.where(found.notna() | (publisher != "azuredatabricks"), "Databricks")
        if "scale_set_id" in machines.columns:
            of_set = pd.Series(found.to_numpy(), index=machines["id"].astype(object))
            of_set = of_set[of_set.notna() & ~of_set.index.duplicated()]
            inherited = lookup(machines["scale_set_id"].astype(object), of_set)
            found = found.where(found.notna(), inherited)
        return found.where(found.notna(), None)

    @cached_property
    def flexible_members(self) -> pd.Series:
        """For each machine, whether it is a member VM of a Flexible scale set that is in the
        snapshot (the set is judged for it, and counts its members, not its capacity)."""
        machines = self.tables["machines"]
        if "scale_set_id" not in machines.columns:
            return pd.Series(False, index=machines.index)
        # In Arrow, by binary search in the sorted ids: pandas' isin of a million Arrow
        # strings makes a Python object of each (7 s at 1M machines).
        sets = arrow_strings(machines["scale_set_id"]).fill_null("")
        member = _positions_in(sets, arrow_strings(machines["id"])) >= 0
        return pd.Series(member, index=machines.index)

    @cached_property
    def judged_through_set(self) -> pd.Series:
        """For each machine, the id of the Flexible scale set that answers for it: its set is
        in the snapshot and its image reference is the set's model (kind, id, publisher,
        offer, SKU and version, any casing). Missing for every other machine, and for a
        member whose image differs from its set's (Flexible allows it): that one is judged
        on its own."""
        machines = self.tables["machines"]
        found = pd.Series(None, index=machines.index, dtype=object)
        member = self.flexible_members.to_numpy(dtype=bool)
        if not member.any():
            return found
        members = machines[member]
        at = self.row_positions("machines", members["scale_set_id"])
        sets = self.identity("machines", REFERENCE_COLUMNS).iloc[at]
        same = np.ones(len(members), dtype=bool)
        for column in REFERENCE_COLUMNS:
            same &= (lowered(members[column]).to_numpy(dtype=object)
                     == lowered(sets[column]).to_numpy(dtype=object))
        set_ids = members["scale_set_id"].to_numpy(dtype=object)
        found.iloc[np.flatnonzero(member)[same]] = set_ids[same]
        return found

    @cached_property
    def usage(self) -> pd.DataFrame:
        """One row per machine: which gallery version it runs and how that was resolved.

        What the machine records comes first: `pinned` (the reference names a version),
        `disk` (a definition or `latest` reference whose OS disk records the version it was
        created from), `exact` (its imageReference.exactVersion names it); only then `latest`
        (what latest gives in the machine's region today), or `unresolved` (a shared or
        community gallery not in the snapshot; a definition with no version in that region).
        A shared or community id naming a gallery in the snapshot is resolved as that
        gallery's own id. Machines that do not use a gallery image have no `resolved_from`.
        `has_replica` is NA when the version is not in the snapshot, so replica rules never
        judge what they cannot see. A Flexible scale set with member VMs in the snapshot
        counts 0: its members are the machines (`capacity` would count them twice).
        `latest_version_id` is what `latest` gives in the machine's region, for an
        unversioned reference to a definition in the snapshot (missing where none serves).
        """
        machines = self.tables["machines"]
        # A million machines reference a few thousand images: every join below is made on
        # integer codes of the distinct values, and text columns are taken by code in Arrow.
        kind = machines["image_kind"]
        external = kind.isin(["shared", "community"]).fillna(False).to_numpy(dtype=bool)
        in_gallery = kind.isin(["gallery", "shared", "community"]).fillna(False).to_numpy(bool)
        image_id, definition = machines["image_id"], machines["image_definition_id"]
        mapped = np.zeros(len(machines), dtype=bool)
        if external.any() and not self._gallery_names.empty:
            local_id = self.local_gallery_ids(machines["image_id"].where(external))
            mapped = local_id.notna().to_numpy(dtype=bool)
            if mapped.any():
                image_id = image_id.astype(object).where(~mapped, local_id)
                definition = definition.astype(object).where(
                    ~mapped, definition_of_versions(local_id.astype(object)))
        gallery = kind.eq("gallery").fillna(False).to_numpy(dtype=bool) | mapped
        unversioned = _by_unique(lambda v: lowered(v).isin(["", "latest"]),
                                 machines["image_version"]).to_numpy(dtype=bool)
        definition_code, definitions = codes_of(definition)
        definition_code = np.where(in_gallery, definition_code, -1)
        region_code, regions = codes_of(machines["location"])
        running_code, running = codes_of(machines["running_version_id"])
        running_definition = pd.Index(definition_of_versions(pd.Series(running, dtype=object)))
        # The appended -2 is what a missing running version (code -1) reads: never a match.
        from_disk = gallery & unversioned & (definition_code >= 0) & (
            np.append(definitions.get_indexer(running_definition), -2)[running_code]
            == definition_code)
        # exactVersion on a definition reference: judged per distinct (definition, version).
        exact_code, exacts = np.full(len(machines), -1), pd.Index([], dtype=object)
        exact_version_code, exact_versions = codes_of(machines["exact_version"])
        recorded = gallery & unversioned & (exact_version_code >= 0) & (definition_code >= 0)
        if recorded.any():
            pair = _pair_code(definition_code, exact_version_code, len(exact_versions))
            first, pair_code = distinct(np.where(recorded, pair, -1))
            names = lowered(pd.Series(exact_versions[exact_version_code[first]], dtype=object))
            ids = pd.Series(definitions[definition_code[first]], dtype=object) + "/versions/" + names
            usable = recorded[first] & (names != "latest").to_numpy(dtype=bool)
            exact_code = np.where(recorded & usable[pair_code], pair_code, -1)
            exacts = pd.Index(ids.where(usable, None).to_numpy(dtype=object))
        from_exact = gallery & unversioned & ~from_disk & (exact_code >= 0)
        image_code, images = codes_of(image_id)

        latest = self.latest_by_definition_region
        latest_key = _pair_code(definitions.get_indexer(latest["definition_id"]),
                                regions.get_indexer(latest["region"]), len(regions))
        # Only pairs some machine has can match (a definition or region no machine uses
        # reads -1, and there may be many of those).
        usable = np.flatnonzero(latest_key >= 0)
        at = pd.Index(latest_key[usable]).get_indexer(
            _pair_code(definition_code, region_code, len(regions)))
        latest_at = np.append(usable, -1)[at]  # -1 (not found) reads the appended -1
        latest_ids = pd.Index(latest["version_id"])

        # Version ids come from four places: one code space over all of them.
        candidates = images.append(running).append(exacts).append(latest_ids)
        offsets = np.cumsum([0, len(images), len(running), len(exacts)])
        pinned = gallery & ~unversioned
        from_latest = gallery & unversioned & ~from_disk & ~from_exact
        version_code = np.select(
            [pinned & (image_code >= 0), from_disk, from_exact, from_latest & (latest_at >= 0)],
            [image_code + offsets[0], running_code + offsets[1], exact_code + offsets[2],
             latest_at + offsets[3]],
            default=-1)
        latest_code = np.where(gallery & unversioned & (latest_at >= 0), latest_at + offsets[3], -1)
        all_codes, versions_used = _recode(np.concatenate([version_code, latest_code]), candidates)
        version_code, latest_code = all_codes[:len(version_code)], all_codes[len(version_code):]
        resolved = np.select(
            [pinned, from_disk, from_exact, from_latest & (latest_at >= 0), in_gallery],
            [0, 1, 2, 3, 4], default=-1)

        versions = self.tables["image_versions"].set_index("id")
        known = versions_used.isin(versions.index)
        replicas = self.tables["version_regions"]
        replica_key = _pair_code(versions_used.get_indexer(replicas["version_id"]),
                                 regions.get_indexer(replicas["region"]), len(regions))
        replicated = np.isin(_pair_code(version_code, region_code, len(regions)),
                             replica_key[replica_key >= 0])
        has_replica = pd.array(replicated, dtype="boolean")
        has_replica[~np.append(known, False)[version_code]] = pd.NA

        capacity = machines["capacity"].fillna(0).astype("int64")
        if "orchestration_mode" in machines.columns:
            flexible = lowered(machines["orchestration_mode"]).eq("flexible") \
                & machines["id"].isin(machines["scale_set_id"].dropna().unique())
            capacity = capacity.where(~flexible.to_numpy(dtype=bool), 0)

        names = lookup(pd.Series(versions_used, dtype=object), versions["name"])
        name_code, distinct_names = pd.factorize(names)
        out = pd.DataFrame({
            "machine_id": machines["id"], "name": machines["name"],
            "kind": _categories(machines["kind"]),
            "region": pd.Categorical.from_codes(region_code, regions),
            "capacity": capacity,
            "image_kind": _categories(kind),
            "definition_id": pd.Categorical.from_codes(definition_code, definitions),
            "definition_known": np.append(definitions.isin(self.known_definition_ids),
                                          False)[definition_code],
            "managed_image_id": _categories(machines["image_id"].where(
                kind.eq("managed").fillna(False))),
            "version_id": pd.Categorical.from_codes(version_code, versions_used),
            "resolved_from": pd.Categorical.from_codes(resolved, RESOLVED_FROM),
            "version_name": pd.Categorical.from_codes(
                np.append(name_code, -1)[version_code], distinct_names),
            "version_known": np.append(known, False)[version_code],
            "has_replica": has_replica,
            "unversioned": gallery & unversioned,
            "latest_version_id": pd.Categorical.from_codes(latest_code, versions_used),
            "platform_managed": pd.Categorical(self.platform_managed),
        }, index=machines.index)
        # Worded once per distinct (resolved_from, version, region), then taken by code.
        key = ((resolved.astype(np.int64) + 1) * (len(versions_used) + 1) + version_code + 1) \
            * (len(regions) + 1) + region_code + 1
        first, key_code = distinct(key)
        worded = _resolution_text_each(out.iloc[first].reset_index(drop=True))
        out["resolution"] = pd.Series(worded.to_numpy(dtype=object)[key_code],
                                      index=out.index)
        return out

    def shared(self, name: str, build):
        """`build(self)`, computed once per estate: a view several rules of a family read."""
        cache = self.__dict__.setdefault("_shared_views", {})
        if name not in cache:
            cache[name] = build(self)
        return cache[name]

    @cached_property
    def known_usage(self) -> pd.DataFrame:
        """`usage` of the machines whose version is in the snapshot (several rules judge
        only those)."""
        return self.usage[self.usage["version_known"].to_numpy(dtype=bool)]

    @cached_property
    def used_version_ids(self) -> pd.Index:
        """Every gallery version some machine references, resolves to or booted from."""
        machines = self.tables["machines"]
        gallery = machines["image_kind"].eq("gallery").fillna(False).to_numpy(dtype=bool)
        ids = [pd.Series(self.usage["version_id"].dropna().unique(), dtype=object),
               pd.Series(machines["running_version_id"].unique(), dtype=object),
               pd.Series(machines.loc[gallery, "image_id"].unique(), dtype=object)]
        # every version a scale set's instances run, not only the lowest
        ids.append(pd.Series(self.instance_versions["version_id"].unique(), dtype=object))
        ids.append(pd.Series(self.instance_usage["version_id"].unique(), dtype=object))
        return pd.Index(pd.concat(ids).dropna().astype(str).unique())

    @cached_property
    def instance_versions(self) -> pd.DataFrame:
        """One row per machine and version its instances run (`running_versions`, from the
        instances' OS disks): `row` is the machine's index label. Each distinct JSON text is
        parsed once."""
        machines = self.tables["machines"]
        if "running_versions" not in machines.columns:
            return pd.DataFrame({"row": pd.Series(dtype=machines.index.dtype),
                                 "version_id": pd.Series(dtype=object)})
        running = machines["running_versions"].dropna()
        codes, texts = pd.factorize(running)
        lists = pd.Series([list(json.loads(text)) for text in texts], dtype=object).iloc[codes]
        rows = np.repeat(running.index.to_numpy(), lists.str.len().to_numpy(dtype=np.int64))
        return pd.DataFrame({"row": rows, "version_id": lists.explode().to_numpy(dtype=object)})


    @cached_property
    def instance_usage(self) -> pd.DataFrame:
        """One row per Uniform scale-set instance: the gallery version it runs, from its
        model view (a reference naming a version, or exactVersion on a definition
        reference; missing where Azure recorded neither: unknown, never guessed), and the
        version its set's model gives today (`model_version_id`: the pinned version, or
        what `latest` resolves to in the set's region)."""
        instances = self.tables.get("instances")
        if instances is None:
            instances = pd.DataFrame(columns=["id", "scale_set_id", "image_id",
                                              "image_definition_id", "image_version",
                                              "exact_version", "latest_model_applied"])
        version_id = instances["image_id"].astype(object).where(
            instances["image_version"].notna()
            & ~lowered(instances["image_version"]).eq("latest").to_numpy(dtype=bool))
        exact = lowered(instances["exact_version"].astype(object))
        by_exact = instances["image_definition_id"].astype(object) + "/versions/" + exact
        version_id = version_id.where(version_id.notna(), by_exact.where(
            exact.ne("") & exact.ne("latest") & instances["image_definition_id"].notna()))
        usage = self.usage.set_index("machine_id")
        sets = usage[usage["kind"] == "vmss"]
        model = sets["version_id"].astype(object).where(
            ~sets["unversioned"], sets["latest_version_id"].astype(object))
        return pd.DataFrame({
            "instance_id": instances["id"], "scale_set_id": instances["scale_set_id"],
            "version_id": version_id.astype(object),
            "model_version_id": lookup(instances["scale_set_id"], model),
            "latest_model_applied": instances["latest_model_applied"].astype("boolean")},
            index=instances.index)


RESOLVED_FROM = ["pinned", "disk", "exact", "latest", "unresolved"]
# What a machine's image reference names: a Flexible member with the same as its set's model
# runs the set's image (exactVersion is what it got, not what it asks for).
REFERENCE_COLUMNS = ["image_kind", "image_id", "image_publisher", "image_offer", "image_sku",
                     "image_version"]
DATABRICKS_TAG_KEYS = ["databricksenvironment", "databricksinstancegroupid",
                       "databricksinstancepoolid"]
# managedBy of a resource a platform creates and patches itself.
PLATFORM_OWNERS = {"/microsoft.containerservice/managedclusters/": "AKS",
                   "/microsoft.databricks/workspaces/": "Databricks",
                   "/microsoft.servicefabric/managedclusters/": "Service Fabric managed cluster",
                   "/microsoft.batch/batchaccounts/": "Batch"}


def _platform_of_owner(owners: pd.Series) -> pd.Series:
    text = lowered(owners)
    found = pd.Series(None, index=owners.index, dtype=object)
    for marker, platform in PLATFORM_OWNERS.items():
        found = found.where(found.notna() | ~text.str.contains(marker, regex=False), platform)
    return found


def _platform_of_image(image_ids: pd.Series) -> pd.Series:
    """AKS node images come from galleries AKS publishes (resource groups AKS-Ubuntu,
    AKS-AzureLinux, AKS-Windows, ...) or from its community galleries (AKSUbuntu-...)."""
    text = lowered(image_ids)
    aks = text.str.contains(r"/resourcegroups/aks-[^/]+/providers/microsoft\.compute/galleries/",
                            regex=True) | text.str.startswith("/communitygalleries/aks")
    return pd.Series(np.where(aks, "AKS", None), index=image_ids.index, dtype=object)


def _pair_code(first: np.ndarray, second: np.ndarray, width: int) -> np.ndarray:
    """One int64 key for a pair of codes (-1 where either is missing)."""
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    return np.where((first < 0) | (second < 0), -1, first * (width + 1) + second)


def _recode(codes: np.ndarray, values: pd.Index) -> tuple[np.ndarray, pd.Index]:
    """Codes into `values` (which may repeat a value) as codes into its distinct values."""
    distinct_code, distinct = pd.factorize(values)
    mapped = np.append(distinct_code, -1)[codes]
    return mapped, pd.Index(distinct)


def codes_of(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Each row's code (-1 where missing) and the values the codes point into. A categorical
    column has them already; anything else is factorized."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy(dtype=np.intp), series.cat.categories
    codes, uniques = pd.factorize(series)
    return codes, pd.Index(uniques)


def _categories(series: pd.Series) -> pd.Categorical:
    """A text column as codes into its distinct values: usage columns repeat a few
    thousand values across a million machines."""
    return pd.Categorical.from_codes(*codes_of(series))


def arrow_strings(values) -> pa.Array:
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.array if isinstance(values.dtype, pd.StringDtype) \
            else values.astype("object").where(values.notna(), None)
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array if array.type == pa.string() else array.cast(pa.string())


def distinct(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct key, each row's distinct number): hashed, not sorted, so
    a million rows cost one pass; distinct numbers follow first appearance."""
    code, uniques = pd.factorize(np.asarray(key))
    first = np.full(len(uniques), len(code))
    np.minimum.at(first, code, np.arange(len(code)))
    return first, code


def distinct_pairs(first: pd.Series, second: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """`distinct` over the pairs of values of two columns (a missing value is a value)."""
    return distinct_rows(first, second)


def distinct_rows(*columns: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """`distinct` over the rows of several columns (a missing value is a value)."""
    code = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        column_code, values = codes_of(column)
        _, code = distinct(code * (len(values) + 1) + column_code + 1)
    return distinct(code)


def _positions_in(keys: pa.Array, values: pa.Array) -> np.ndarray:
    """Where each key is in `values` (-1 where absent). Snapshot tables are sorted by id,
    so a binary search does it without hashing a million ids; anything else is hashed."""
    if values.null_count == 0 and len(values) > 1 \
            and not pc.any(pc.greater(values[:-1], values[1:])).as_py():
        at = pc.search_sorted(values, keys).to_numpy().astype(np.int64)
        inside = np.minimum(at, len(values) - 1)
        same = pc.equal(values.take(pa.array(inside)), keys).fill_null(False)
        return np.where(same.to_numpy(zero_copy_only=False) & (at < len(values)), at, -1)
    return pc.index_in(keys, value_set=values).fill_null(-1).to_numpy(zero_copy_only=False)


def _positions(keys, index: pd.Index) -> np.ndarray:
    """The position of each key in the unique `index` (-1 where absent)."""
    return index.get_indexer(pd.Index(keys)).astype(np.intp)


def take_rows(frame: pd.DataFrame, position: np.ndarray) -> pd.DataFrame:
    """Rows of `frame` by position, missing values where the position is -1."""
    return pd.DataFrame({c: frame[c].array.take(position, allow_fill=True) for c in frame.columns})


def _by_unique(func, series: pd.Series) -> pd.Series:
    """`func(series)` for an element-wise `func`, computed once per distinct value: ids and
    names repeat across a million machines, and the string work is per Python object."""
    if len(series) < 2048:
        return func(series)
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    mapped = func(pd.Series(uniques, dtype=series.dtype))
    return pd.Series(mapped.array.take(codes), index=series.index, name=series.name)


def definition_of_versions(version_ids: pd.Series) -> pd.Series:
    """The definition id of each version id (its id less `/versions/NAME`)."""
    return _by_unique(_definition_of_each, version_ids)


def _definition_of_each(version_ids: pd.Series) -> pd.Series:
    text = version_ids.astype(object).fillna("").astype(str)
    return text.str.replace(r"/versions/[^/]+$", "", regex=True).astype(object)


def _resolution_text_each(usage: pd.DataFrame) -> pd.Series:
    name = usage["version_name"].astype(object).fillna("?").astype(str)
    region = usage["region"].astype(object).fillna("?").astype(str)
    text = pd.Series(
        np.select([usage["resolved_from"] == "pinned", usage["resolved_from"] == "disk",
                   usage["resolved_from"] == "exact",
                   usage["resolved_from"] == "latest", usage["resolved_from"] == "unresolved"],
                  ["pinned to " + name,
                   "unversioned reference; its OS disk was created from " + name,
                   "unversioned reference; the machine records exactVersion " + name,
                   "unversioned reference; latest in " + region + " resolves to " + name,
                   "unversioned or external reference; version cannot be resolved"],
                  default=""), index=usage.index, dtype="object")
    return text.where(text != "", None)


def version_label(version_ids: pd.Series) -> pd.Series:
    """`definition/1.2.0` for a version id: a version's own name says too little."""
    return _by_unique(_version_label_each, version_ids)


def _version_label_each(version_ids: pd.Series) -> pd.Series:
    text = version_ids.astype(object).fillna("").astype(str)
    parts = text.str.extract(r"(?i)/images/([^/]+)/versions/([^/]+)$")
    return (parts[0] + "/" + parts[1]).where(parts[0].notna(), version_ids).astype(str)


def lowered(series: pd.Series) -> pd.Series:
    """Lower-cased text with '' for missing values, so comparisons never meet NA (and an
    all-missing column still has string methods)."""
    return _by_unique(_lowered_each, series)


def _lowered_each(series: pd.Series) -> pd.Series:
    return series.astype(object).fillna("").astype(str).str.lower().astype(object)


def last_segment(ids: pd.Series) -> pd.Series:
    """The last path segment of a resource id (its name as the id spells it)."""
    return _by_unique(_last_segment_each, ids)


def _last_segment_each(ids: pd.Series) -> pd.Series:
    segment = ids.astype(object).fillna("").astype(str).str.rsplit("/", n=1).str[-1].astype(str)
    return segment.where(ids.notna())


def lookup(keys: pd.Series, values: pd.Series) -> pd.Series:
    """`values[key]` for each key (missing where absent), keeping the values' dtype even when
    either side is empty (Series.map loses it, or fails, on empty datetime lookups). Each
    distinct key is looked up once."""
    if len(keys) < 2048:
        return pd.Series(values.reindex(keys.to_numpy(dtype=object)).array, index=keys.index)
    codes, uniques = pd.factorize(keys)
    found = values.reindex(np.asarray(uniques, dtype=object)).array
    return pd.Series(found.take(codes, allow_fill=True), index=keys.index)
