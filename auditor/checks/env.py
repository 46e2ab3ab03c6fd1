"""Environment separation: production machines run only images kept for production."""

from __future__ import annotations

import pandas as pd

from auditor.estate import last_segment, lookup


def production_uses_non_production_image(estate, params) -> pd.DataFrame:
    """Production machines whose gallery, image definition or managed image carries an
    environment tag with a non-production value (a missing tag is TAG001's business)."""
    values = params["production_values"]
    usage = estate.usage
    usage = usage[estate.is_production("machines", values)]
    definitions = estate.image_definitions.set_index("id")["gallery_id"]
    sources = pd.concat([
        pd.DataFrame({"machine": usage.index, "image_id": usage["definition_id"].to_numpy(),
                      "what": "image definition"}),
        pd.DataFrame({"machine": usage.index,
                      "image_id": lookup(usage["definition_id"], definitions).to_numpy(),
                      "what": "gallery"}),
        pd.DataFrame({"machine": usage.index, "image_id": usage["managed_image_id"].to_numpy(),
                      "what": "managed image"}),
    ], ignore_index=True).dropna(subset=["image_id"])
    env = estate.tag(sources, "environment", ids=sources["image_id"])
    bad = sources[env.notna() & ~estate.is_production(sources, values, ids=sources["image_id"])]
    bad = bad.assign(environment=env[bad.index],
                     image=last_segment(bad["image_id"]))
    bad = bad.assign(offending=bad["what"] + " " + bad["image"] + " (environment="
                     + bad["environment"].astype(str) + ")")
    ordered = bad.sort_values(["machine", "what"])
    several = ordered.duplicated("machine", keep=False).to_numpy()
    single = ordered.loc[~several].set_index("machine")[["offending", "environment"]]
    joined = ordered.loc[several].groupby("machine").agg(
        offending=("offending", "; ".join), environment=("environment", "first"))
    listed = pd.concat([single, joined]).sort_index().rename(
        columns={"environment": "image_environment"})
    rows = usage.join(listed, how="inner")
    return pd.DataFrame({"id": rows["machine_id"], "name": rows["name"], "kind": rows["kind"],
                         "offending": rows["offending"],
                         "image_environment": rows["image_environment"],
                         "environment": estate.tag("machines", "environment")[rows.index]})
