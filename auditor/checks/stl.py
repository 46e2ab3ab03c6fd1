"""Staleness and end-of-life checks: how old the image a machine runs is, and whether the
version or definition it comes from has reached (or is about to reach) its end of life."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.checks.tag import resources
from auditor.estate import distinct_pairs, last_segment, lookup, lowered, version_label


def _machine_lifecycle(estate) -> pd.DataFrame:
    """Per machine using a known gallery version or definition: both end-of-life dates."""
    return estate.shared("machine_lifecycle", _lifecycle)


def _lifecycle(estate) -> pd.DataFrame:
    usage = estate.usage
    versions = estate.image_versions.set_index("id")
    definitions = estate.image_definitions.set_index("id")
    frame = usage[usage["definition_id"].notna()]
    return frame.assign(
        definition=last_segment(estate.arm_ids("image_definitions", frame["definition_id"])),
        version_eol=lookup(frame["version_id"], versions["end_of_life_date"]),
        definition_eol=lookup(frame["definition_id"], definitions["end_of_life_date"]))


def _end_of_life(estate, when) -> pd.DataFrame:
    """Machines whose version or definition end of life satisfies `when(dates)`."""
    frame = _machine_lifecycle(estate)
    by_version = when(frame["version_eol"])
    by_definition = when(frame["definition_eol"])
    hit = by_version | by_definition
    frame, by_version, by_definition = frame[hit], by_version[hit], by_definition[hit]
    version_text = ("version " + version_label(estate.arm_ids("image_versions", frame["version_id"]))
                    .astype(object) + " ("
                    + frame["version_eol"].dt.strftime("%Y-%m-%d").astype(object) + ")")
    definition_text = ("definition " + frame["definition"].astype(object) + " ("
                       + frame["definition_eol"].dt.strftime("%Y-%m-%d").astype(object) + ")")
    reason = np.select(
        [by_version & by_definition, by_version],
        [version_text + " and " + definition_text, version_text], default=definition_text)
    return pd.DataFrame({
        "id": frame["machine_id"], "name": frame["name"], "kind": frame["kind"],
        "end_of_life": reason, "version_end_of_life_date": frame["version_eol"],
        "definition_end_of_life_date": frame["definition_eol"],
        "resolved_from": frame["resolved_from"]})


def end_of_life_passed(estate, params) -> pd.DataFrame:
    """Machines using a version or definition whose end-of-life date is before the as-of."""
    return _end_of_life(estate, lambda dates: (dates < estate.as_of).fillna(False))


def end_of_life_soon(estate, params) -> pd.DataFrame:
    """Machines using a version or definition whose end of life falls within the warning."""
    until = estate.as_of + pd.Timedelta(days=float(params["warning_days"]))
    return _end_of_life(
        estate, lambda dates: ((dates >= estate.as_of) & (dates < until)).fillna(False))


def definition_not_rebuilt(estate, params) -> pd.DataFrame:
    """Definitions whose newest provisioned version is older than `max_age_days`."""
    versions = estate.image_versions
    provisioned = versions[lowered(versions["provisioning_state"]).isin(["", "succeeded"])]
    newest = provisioned.groupby("definition_id")["published_date"].max().rename("newest_published")
    cutoff = estate.as_of - pd.Timedelta(days=float(params["max_age_days"]))
    stale = newest[newest < cutoff]
    definitions = resources(estate, ["image_definitions"])
    out = definitions.join(stale, on="id", how="inner")
    return out.assign(age_days=(estate.as_of - out["newest_published"]).dt.days)


def machine_version_stale(estate, params) -> pd.DataFrame:
    """Machines on a version older than `max_age_days` or `max_versions_behind` behind
    the definition's latest."""
    usage = estate.known_usage  # judged once per distinct (version, definition) pair
    first, pair = distinct_pairs(usage["version_id"], usage["definition_id"])
    pairs = _version_staleness(estate, usage.iloc[first][["version_id", "definition_id"]]
                               .astype(object).reset_index(drop=True), params)
    hit = pairs["stale"].to_numpy(dtype=bool)[pair]
    rows, pair = usage[hit], pair[hit]
    stale = pairs.drop(columns="stale").iloc[pair].set_axis(rows.index)
    return pd.DataFrame({
        "id": rows["machine_id"], "name": rows["name"], "kind": rows["kind"],
        "version": stale["version"], "staleness": stale["staleness"],
        "published_date": stale["published_date"], "age_days": stale["age_days"],
        "versions_behind": stale["versions_behind"], "latest_version": stale["latest_version"],
        "resolved_from": rows["resolved_from"]})


def _version_staleness(estate, used: pd.DataFrame, params) -> pd.DataFrame:
    """For each (version_id, definition_id) row: its age, how far behind the latest it is,
    whether that is stale, and the reason in words."""
    versions = estate.image_versions.set_index("id")
    found = versions[["published_date", "major", "minor", "patch"]].reindex(used["version_id"])
    used = used.assign(**{column: found[column].array for column in found.columns})
    newer = used[["version_id", "definition_id", "major", "minor", "patch"]].drop_duplicates(
        "version_id").merge(estate.latest_candidates, on="definition_id", suffixes=("", "_c"))
    is_newer = (newer["major_c"] > newer["major"]) | (
        (newer["major_c"] == newer["major"]) & ((newer["minor_c"] > newer["minor"]) | (
            (newer["minor_c"] == newer["minor"]) & (newer["patch_c"] > newer["patch"]))))
    behind = newer[is_newer.fillna(False).astype(bool)].groupby("version_id").size()
    latest = estate.latest_by_definition.set_index("definition_id")["version_name"]
    used = used.assign(versions_behind=lookup(used["version_id"], behind).fillna(0).astype("int64"),
                       latest_version=lookup(used["definition_id"], latest),
                       age_days=(estate.as_of - used["published_date"]).dt.days)
    too_old = (used["age_days"] > int(params["max_age_days"])).fillna(False)
    too_far = used["versions_behind"] >= int(params["max_versions_behind"])
    # Worded for every pair as objects (a pair without a date is never too old, so its
    # placeholder text is never shown).
    age_text = ("published " + used["published_date"].dt.strftime("%Y-%m-%d")
                .astype("object").fillna("?") + " ("
                + used["age_days"].astype("Int64").astype(str).astype("object")
                + " days before the as-of date)")
    behind_text = (used["versions_behind"].astype(str).astype("object")
                   + " versions behind the latest, "
                   + used["latest_version"].astype("object").fillna("?").astype(str)
                   .astype("object"))
    reason = np.select([too_old & too_far, too_old], [age_text + " and " + behind_text, age_text],
                       default=behind_text)
    return used.assign(version=version_label(estate.arm_ids("image_versions", used["version_id"])),
                       staleness=reason,
                       stale=(too_old | too_far).to_numpy(dtype=bool))


def version_without_end_of_life(estate, params) -> pd.DataFrame:
    """Versions with no end-of-life date (named `definition/version`)."""
    versions = estate.image_versions
    missing = versions.loc[versions["end_of_life_date"].isna(), ["id", "published_date"]]
    return resources(estate, ["image_versions"]).merge(
        missing.assign(end_of_life_date=None), on="id")


def latest_past_end_of_life(estate, params) -> pd.DataFrame:
    """Definitions where `latest` gives, in some region, a version past its end of life (what
    `latest` serves per region comes from the Estate: regional and global excludeFromLatest,
    provisioning state, replication)."""
    latest = estate.latest_by_definition_region
    end_of_life = lookup(latest["version_id"],
                         estate.image_versions.set_index("id")["end_of_life_date"])
    past = latest[(end_of_life < estate.as_of).fillna(False).to_numpy(dtype=bool)]
    past = past.assign(end_of_life=end_of_life[past.index].dt.strftime("%Y-%m-%d"))
    per_version = past.sort_values("region").groupby(
        ["definition_id", "version_name", "end_of_life"], sort=True)["region"].agg(", ".join)
    served = (per_version.index.get_level_values("version_name") + " (end of life "
              + per_version.index.get_level_values("end_of_life") + ") in "
              + per_version.to_numpy(dtype=object))
    text = pd.Series(served, index=per_version.index.get_level_values("definition_id")) \
        .groupby(level=0).agg("; ".join).rename("latest_served")
    return resources(estate, ["image_definitions"], ids=pd.Index(text.index)).join(
        text, on="id", how="inner")


def scale_set_drift(estate, params) -> pd.DataFrame:
    """Uniform scale sets whose instances run another version than the model gives today, or
    have not applied the latest model; with the instances counted per version (an instance
    whose version Azure did not record counts as unknown, never as either)."""
    used = estate.instance_usage
    known = used["version_id"].notna()
    differs = known & used["model_version_id"].notna() & used["version_id"].ne(
        used["model_version_id"])
    drift = (differs | used["latest_model_applied"].eq(False).fillna(False)).astype(bool)
    label = last_segment(used["version_id"].astype(object)).astype(object).where(known, "unknown")
    frame = used.assign(drift=drift, unknown=~known, label=label)
    per_set = frame.groupby("scale_set_id", sort=True).agg(
        instances=("instance_id", "size"), drifted=("drift", "sum"), unknown=("unknown", "sum"))
    per_set = per_set[per_set["drifted"] > 0]
    counts = frame[frame["scale_set_id"].isin(per_set.index)].groupby(
        ["scale_set_id", "label"]).size()
    pieces = counts.index.get_level_values("label").astype(str) + ": " + counts.astype(str)
    texts = pd.Series(pieces.to_numpy(dtype=object)).groupby(
        counts.index.get_level_values("scale_set_id").to_numpy(dtype=object), sort=False).agg(
        ", ".join)  # one text per drifting set, its versions in order
    model = used.drop_duplicates("scale_set_id").set_index("scale_set_id")["model_version_id"]
    # The drifting sets' machine rows, looked up by id in the estate's cached index (a merge
    # would hash a million ids again for a few thousand sets), in the table's order.
    at = estate.row_positions("machines", pd.Series(per_set.index, dtype=object))
    found = np.flatnonzero(at >= 0)
    found = found[np.argsort(at[found], kind="stable")]
    out = estate.identity("machines", ["id", "name", "kind"]).iloc[at[found]].reset_index(
        drop=True).assign(
        **{column: per_set[column].to_numpy()[found] for column in per_set.columns})
    model_version = lookup(out["id"], model)
    return out.assign(
        model_version=last_segment(model_version.astype(object)).astype(object)
        .where(model_version.notna(), "unknown"),
        versions=out["id"].map(texts), instances=out["instances"].astype(int),
        drifted=out["drifted"].astype(int), unknown=out["unknown"].astype(int))
