"""The Estate: a loaded snapshot as pandas DataFrames, plus the as-of date rules judge by.

Derived views that several rules share (tag lookups, usage resolution) live here, computed
once per audit and cached, so no rule recomputes a join another rule already made.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditor.snapshot import Snapshot


class _TagsByKey:
    """Per lower-cased tag key, the values by resource id: built for a key when first asked."""

    def __init__(self, tags: pd.DataFrame):
        self._tags = tags
        self._keys = set(tags["key_lower"].dropna().unique()) if not tags.empty else set()
        self._built: dict[str, pd.Series] = {}

    def get(self, key: str, default=None):
        if key not in self._keys:
            return default
        if key not in self._built:
            tags = self._tags
            rows = tags[(tags["key_lower"] == key).to_numpy(dtype=bool)]
            self._built[key] = rows.set_index("resource_id")["value"]
        return self._built[key]


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

    @cached_property
    def _tags_unique(self) -> pd.DataFrame:
        """`resource_tags` without keys that differ from an earlier one only in case (Azure
        tag names are case-insensitive; the first is kept)."""
        tags = self.tables["resource_tags"]
        if tags.empty:
            return tags
        # Duplicates found on integer codes: hashing two string columns is the slow way.
        resource = pd.factorize(tags["resource_id"], use_na_sentinel=False)[0]
        key = pd.factorize(tags["key_lower"], use_na_sentinel=False)[0]
        combined = resource.astype(np.int64) * (int(key.max()) + 1) + key
        duplicated = pd.Series(combined).duplicated().to_numpy()
        return tags[~duplicated] if duplicated.any() else tags

    @cached_property
    def _tags_by_key(self) -> _TagsByKey:
        return _TagsByKey(self._tags_unique)

    def tag(self, table: str | pd.DataFrame, key: str, ids: pd.Series | None = None) -> pd.Series:
        """The value of tag `key` (any casing) for each row of `table` (NaN where absent).
        Cached per snapshot table and key: rules and evidence ask the same of the machines."""
        cacheable = isinstance(table, str) and ids is None
        cache = self.__dict__.setdefault("_tag_columns", {})
        if cacheable and (table, key.lower()) in cache:
            return cache[(table, key.lower())].copy()
        frame = self.tables[table] if isinstance(table, str) else table
        ids = frame["id"] if ids is None else ids
        values = self._tags_by_key.get(key.lower())
        if values is None:
            return pd.Series(pd.NA, index=frame.index, dtype="object")
        result = pd.Series(_take_by_key(ids, values), index=frame.index)
        if cacheable:
            cache[(table, key.lower())] = result
            return result.copy()
        return result

    # --- environment ---------------------------------------------------------------------

    def is_production(self, table: str | pd.DataFrame, production_values, ids=None) -> pd.Series:
        """True where the row's `environment` tag is a production value (any casing).
        Cached per table and values: several rules ask the same of the machines."""
        values = tuple(str(v).strip().lower() for v in production_values)
        cacheable = isinstance(table, str) and ids is None
        cache = self.__dict__.setdefault("_production", {})
        if cacheable and (table, values) in cache:
            return cache[(table, values)].copy()
        frame = self.tables[table] if isinstance(table, str) else table
        tagged = self._tags_by_key.get("environment")
        if tagged is None or "" in values:
            result = lowered(self.tag(table, "environment", ids)).str.strip().isin(list(values))
        else:
            # Judge each distinct tag value once, then test ids against the production ones.
            distinct = [v for v in tagged.unique() if isinstance(v, str)]
            production = [v for v in distinct if v.lower().strip() in values]
            production_ids = tagged.index[tagged.isin(production).to_numpy(dtype=bool)]
            result = pd.Series(_isin(frame["id"] if ids is None else ids, production_ids),
                               index=frame.index)
        if cacheable:
            cache[(table, values)] = result
            return result.copy()
        return result

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

    @cached_property
    def latest_candidates(self) -> pd.DataFrame:
        """Versions that can win `latest`: provisioned (Succeeded, or state unknown), named
        MAJOR.MINOR.PATCH, and not excluded from latest for the whole version."""
        versions = self.tables["image_versions"]
        state = lowered(versions["provisioning_state"])
        eligible = state.isin(["", "succeeded"]) & versions["major"].notna() \
            & versions["minor"].notna() & versions["patch"].notna() \
            & ~versions["exclude_from_latest"].fillna(False).astype(bool)
        return versions.loc[eligible, ["id", "definition_id", "name", "major", "minor", "patch"]]

    @cached_property
    def latest_by_definition_region(self) -> pd.DataFrame:
        """What `latest` resolves to per definition and region: the highest version (compared
        as numbers) replicated there and excluded from latest neither globally nor there."""
        regions = self.tables["version_regions"]
        regions = regions[~regions["exclude_from_latest"].fillna(False).astype(bool)]
        ranked = regions[["version_id", "region"]].merge(
            self.latest_candidates, left_on="version_id", right_on="id")
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
    def usage(self) -> pd.DataFrame:
        """One row per machine: which gallery version it runs and how that was resolved.

        `resolved_from` is `pinned` (the reference names a version), `disk` (a definition or
        `latest` reference whose OS disk records the version it got), `latest` (what latest
        gives in the machine's region today) or `unresolved` (shared/community galleries
        live outside the tenant; a definition with no version in that region). Machines
        that do not use a gallery image have no `resolved_from`. `has_replica` is NA when
        the version is not in the snapshot, so replica rules never judge what they cannot see.
        """
        machines = self.tables["machines"]
        # Reference columns repeat across machines: made Python objects once per value.
        kind = _objects(machines["image_kind"])
        version = machines["image_version"]
        gallery = kind == "gallery"
        unversioned = lowered(version).isin(["", "latest"])
        definition = _objects(machines["image_definition_id"]).where(
            kind.isin(["gallery", "shared", "community"]))
        running = _objects(machines["running_version_id"])
        image_id = _objects(machines["image_id"])
        from_disk = gallery & unversioned & running.notna() & (
            _definition_of(running) == definition)
        out = pd.DataFrame({
            "machine_id": machines["id"], "name": machines["name"],
            "kind": machines["kind"], "region": machines["location"],
            "capacity": machines["capacity"].fillna(0).astype("int64"),
            "image_kind": kind, "definition_id": definition,
            "managed_image_id": image_id.where(kind == "managed"),
        })
        latest = self.latest_by_definition_region.rename(
            columns={"definition_id": "_def", "version_id": "_latest"})
        out = out.merge(latest[["_def", "region", "_latest"]], how="left",
                        left_on=["definition_id", "region"], right_on=["_def", "region"])
        out.index = machines.index
        pinned_id = image_id
        out["version_id"] = _choose(
            [gallery & ~unversioned, from_disk, gallery & unversioned],
            [pinned_id, running, out["_latest"]], out.index)
        out["resolved_from"] = _choose(
            [gallery & ~unversioned, from_disk, gallery & unversioned & out["_latest"].notna(),
             kind.isin(["gallery", "shared", "community"])],
            ["pinned", "disk", "latest", "unresolved"], out.index)
        versions = self.tables["image_versions"].set_index("id")
        out["version_name"] = lookup(out["version_id"], versions["name"]).astype(object)
        out["version_known"] = out["version_id"].isin(versions.index)
        replicas = self.tables["version_regions"][["version_id", "region"]].drop_duplicates()
        replicated = out[["version_id", "region"]].merge(
            replicas.assign(_has=True), how="left", on=["version_id", "region"])["_has"]
        out["has_replica"] = pd.Series(replicated.fillna(False).to_numpy(dtype=bool),
                                       index=out.index).astype("boolean").where(
            out["version_known"], pd.NA)
        out["resolution"] = _resolution_text(out)
        return out.drop(columns=["_def", "_latest"])

    @cached_property
    def used_version_ids(self) -> pd.Index:
        """Every gallery version some machine references, resolves to or booted from."""
        machines = self.tables["machines"]
        ids = pd.concat([self.usage["version_id"], machines["running_version_id"],
                         machines.loc[machines["image_kind"] == "gallery", "image_id"]])
        return pd.Index(ids.dropna().astype(str).unique())


def _arrow_strings(values) -> pa.Array:
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.array if isinstance(values.dtype, pd.StringDtype) \
            else values.astype("object").where(values.notna(), None)
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array if array.type == pa.string() else array.cast(pa.string())


def _isin(ids: pd.Series, value_set) -> np.ndarray:
    """`ids.isin(value_set)` for strings, computed by Arrow (missing ids are never in it)."""
    found = pc.is_in(_arrow_strings(ids), value_set=_arrow_strings(pd.Index(value_set)),
                     skip_nulls=True)
    return found.fill_null(False).to_numpy(zero_copy_only=False)


def _take_by_key(ids: pd.Series, values: pd.Series) -> np.ndarray:
    """`ids.map(values).to_numpy()` for a Series with a unique index, whose hash table pandas
    keeps with the (cached) index, so it is built once per estate."""
    position = _positions(ids, values.index)
    found = position >= 0
    out = np.full(len(position), np.nan, dtype=object)
    if found.any():
        out[found] = values.to_numpy(dtype=object)[position[found]]
    return out


def _positions(keys, index: pd.Index) -> np.ndarray:
    """The position of each key in the unique `index` (-1 where absent)."""
    return index.get_indexer(pd.Index(keys)).astype(np.intp)


def take_rows(frame: pd.DataFrame, position: np.ndarray) -> pd.DataFrame:
    """Rows of `frame` by position, missing values where the position is -1."""
    return pd.DataFrame({c: frame[c].array.take(position, allow_fill=True) for c in frame.columns})


def _objects(series: pd.Series) -> pd.Series:
    """`series.astype("object")`, converting each distinct value once."""
    return _by_unique(lambda s: s.astype("object"), series)


def _by_unique(func, series: pd.Series) -> pd.Series:
    """`func(series)` for an element-wise `func`, computed once per distinct value: ids and
    names repeat across a million machines, and the string work is per Python object."""
    if len(series) < 2048:
        return func(series)
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    mapped = func(pd.Series(uniques, dtype=series.dtype))
    return pd.Series(mapped.array.take(codes), index=series.index, name=series.name)


def _choose(conditions, choices, index) -> pd.Series:
    """np.select as an object Series (None where nothing applies), whatever the length."""
    choices = [c.to_numpy(dtype=object) if isinstance(c, pd.Series) else c for c in choices]
    chosen = np.select([np.asarray(c, dtype=bool) for c in conditions], choices, default=None)
    series = pd.Series(chosen, index=index, dtype=object)
    return series.where(series.notna(), None)


def _definition_of(version_ids: pd.Series) -> pd.Series:
    return _by_unique(_definition_of_each, version_ids)


def _definition_of_each(version_ids: pd.Series) -> pd.Series:
    text = version_ids.astype(object).fillna("").astype(str)
    return text.str.replace(r"/versions/[^/]+$", "", regex=True).astype(object)


def _resolution_text(usage: pd.DataFrame) -> pd.Series:
    """How a machine's gallery version was found, in words for the Machines sheet:
    `latest` is what the machine would get today in its region, not what it may run.
    Worded once per distinct (resolved_from, version_name, region)."""
    keys = usage[["resolved_from", "version_name", "region"]]
    if len(keys) < 2048:
        return _resolution_text_each(keys)
    distinct = keys.drop_duplicates()
    worded = distinct.assign(_text=_resolution_text_each(distinct))
    text = keys.merge(worded, how="left", on=list(keys.columns))["_text"]
    return pd.Series(text.to_numpy(dtype=object), index=usage.index, dtype="object")


def _resolution_text_each(usage: pd.DataFrame) -> pd.Series:
    name = usage["version_name"].astype(object).fillna("?").astype(str)
    region = usage["region"].astype(object).fillna("?").astype(str)
    text = pd.Series(
        np.select([usage["resolved_from"] == "pinned", usage["resolved_from"] == "disk",
                   usage["resolved_from"] == "latest", usage["resolved_from"] == "unresolved"],
                  ["pinned to " + name,
                   "unversioned reference; its OS disk was created from " + name,
                   "unversioned reference; latest in " + region + " resolves to " + name,
                   "unversioned or external reference; version cannot be resolved"],
                  default=""), index=usage.index, dtype="object")
    return text.where(text != "", None)


def version_label(version_ids: pd.Series) -> pd.Series:
    """`definition/1.2.0` for a version id: a version's own name says too little."""
    return _by_unique(_version_label_each, version_ids)


def _version_label_each(version_ids: pd.Series) -> pd.Series:
    text = version_ids.astype(object).fillna("").astype(str)
    parts = text.str.extract(r"/images/([^/]+)/versions/([^/]+)$")
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
    codes, uniques = pd.factorize(keys.to_numpy(dtype=object))
    found = values.reindex(uniques).array
    return pd.Series(found.take(codes, allow_fill=True), index=keys.index)
