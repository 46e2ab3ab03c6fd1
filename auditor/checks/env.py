"""Environment separation: production machines run only images kept for production."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.checks.tag import resources
from auditor.estate import distinct_pairs, last_segment, lookup


def production_uses_non_production_image(estate, params) -> pd.DataFrame:
    """Production machines whose gallery, image definition or managed image carries an
    environment tag with a non-production value (a missing tag is TAG001's business)."""
    values = params["production_values"]
    usage = estate.usage
    usage = usage[estate.is_production("machines", values).to_numpy(dtype=bool)]
    # A million machines use a few thousand (definition, managed image) pairs: each pair's
    # sources are judged once, then the machines take their pair's verdict.
    first, pair = distinct_pairs(usage["definition_id"], usage["managed_image_id"])
    distinct = usage.iloc[first]
    definitions = estate.image_definitions.set_index("id")["gallery_id"]
    sources = pd.concat([
        pd.DataFrame({"pair": np.arange(len(distinct)),
                      "image_id": distinct["definition_id"].to_numpy(dtype=object),
                      "what": "image definition"}),
        pd.DataFrame({"pair": np.arange(len(distinct)),
                      "image_id": lookup(distinct["definition_id"].astype(object),
                                         definitions).to_numpy(dtype=object),
                      "what": "gallery"}),
        pd.DataFrame({"pair": np.arange(len(distinct)),
                      "image_id": distinct["managed_image_id"].to_numpy(dtype=object),
                      "what": "managed image"}),
    ], ignore_index=True).dropna(subset=["image_id"])
    env = estate.tag(sources, "environment", ids=sources["image_id"])
    bad = sources[env.notna() & ~estate.is_production(sources, values, ids=sources["image_id"])]
    bad = bad.assign(environment=env[bad.index],
                     image=last_segment(bad["image_id"]))
    bad = bad.assign(offending=bad["what"] + " " + bad["image"] + " (environment="
                     + bad["environment"].astype(str) + ")")
    listed = _listed_sources(bad.rename(columns={"pair": "machine"}))
    at = listed.index.get_indexer(pair)
    hit = at >= 0
    rows = usage[hit]
    return pd.DataFrame({"id": rows["machine_id"], "name": rows["name"], "kind": rows["kind"],
                         "offending": listed["offending"].to_numpy(dtype=object)[at[hit]],
                         "image_environment":
                             listed["image_environment"].to_numpy(dtype=object)[at[hit]],
                         "environment": estate.tag("machines", "environment")[rows.index]})


def _listed_sources(bad: pd.DataFrame) -> pd.DataFrame:
    """Per machine, its offending sources joined with "; " in `what` order, and the first
    one's environment: a machine has at most one source of each kind, so a few vectorised
    passes replace a Python aggregation per machine."""
    ordered = bad.sort_values(["machine", "what"])
    machine = ordered["machine"].to_numpy()
    offending = ordered["offending"].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, machine[1:] != machine[:-1]]) if len(machine) \
        else np.array([], dtype=np.intp)
    text = offending[starts].copy()
    step = 1
    while True:
        at = starts + step
        more = at < len(machine)
        more[more] &= machine[at[more]] == machine[starts[more]]
        if not more.any():
            break
        text[more] = text[more] + "; " + offending[at[more]]
        step += 1
    return pd.DataFrame({"offending": text,
                         "image_environment": ordered["environment"].to_numpy(dtype=object)[starts]},
                        index=pd.Index(machine[starts]))


# --- ENV002: production and non-production images in one gallery ----------------------------

def gallery_mixes_environments(estate, params) -> pd.DataFrame:
    """Galleries holding definitions or versions tagged with a production environment and
    others tagged with a non-production one (untagged ones say nothing: TAG001's business)."""
    values = params["production_values"]
    parts = []
    for table in ("image_definitions", "image_versions"):
        frame = estate.tables[table]
        environment = estate.tag(table, "environment")
        tagged = environment.notna().to_numpy(dtype=bool)
        parts.append(pd.DataFrame({
            "gallery_id": frame["gallery_id"].to_numpy(dtype=object)[tagged],
            "environment": environment.to_numpy(dtype=object)[tagged],
            "production": estate.is_production(table, values).to_numpy(dtype=bool)[tagged]}))
    tagged = pd.concat(parts, ignore_index=True)
    counts = tagged.groupby("gallery_id")["production"].agg(["sum", "count"])
    mixed = counts[(counts["sum"] > 0) & (counts["sum"] < counts["count"])]
    other = tagged[~tagged["production"] & tagged["gallery_id"].isin(mixed.index)]
    other_values = other.groupby("gallery_id")["environment"].agg(
        lambda v: ", ".join(sorted(set(v.astype(str)))))
    out = resources(estate, ["galleries"])
    out = out[out["id"].isin(mixed.index)]
    at = out["id"].to_numpy(dtype=object)
    return out.assign(
        production_items=mixed["sum"].reindex(at).astype("int64").to_numpy(),
        non_production_items=(mixed["count"] - mixed["sum"]).reindex(at).astype("int64")
        .to_numpy(),
        non_production_environments=other_values.reindex(at).to_numpy(dtype=object))
