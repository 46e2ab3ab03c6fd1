"""The Estate: a loaded snapshot as pandas DataFrames, plus the as-of date rules judge by.

Derived views that several rules share (tag lookups, usage resolution) live here, computed
once per audit and cached, so no rule recomputes a join another rule already made.
"""

from __future__ import annotations

from functools import cached_property

import pandas as pd

from auditor.snapshot import Snapshot


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
    def _tags_by_key(self) -> dict[str, pd.Series]:
        tags = self.tables["resource_tags"]
        if tags.empty:
            return {}
        # Azure tag names are case-insensitive; keep the first of keys that differ only in case.
        tags = tags.drop_duplicates(["resource_id", "key_lower"])
        return {key: group.set_index("resource_id")["value"]
                for key, group in tags.groupby("key_lower", sort=False)}

    def tag(self, table: str | pd.DataFrame, key: str, ids: pd.Series | None = None) -> pd.Series:
        """The value of tag `key` (any casing) for each row of `table` (NaN where absent)."""
        frame = self.tables[table] if isinstance(table, str) else table
        ids = frame["id"] if ids is None else ids
        values = self._tags_by_key.get(key.lower())
        if values is None:
            return pd.Series(pd.NA, index=frame.index, dtype="object")
        return pd.Series(ids.map(values).to_numpy(), index=frame.index)
