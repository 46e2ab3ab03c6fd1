"""Licensing checks that need joins: the Marketplace purchase plan a gallery image inherits
from its source, and the plan machines deployed from it carry."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.checks.tag import resources
from auditor.estate import lookup, lowered

_PLAN = ["plan_publisher", "plan_product", "plan_name"]
_PURCHASE_PLAN = ["purchase_plan_publisher", "purchase_plan_product", "purchase_plan_name"]
_MACHINE_TYPES = {"vm": "Microsoft.Compute/virtualMachines",
                  "vmss": "Microsoft.Compute/virtualMachineScaleSets"}


def _plan_text(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """`publisher/product/name`, lower-cased (Azure compares plans without case); missing
    where the resource has no plan."""
    parts = [lowered(frame[c]) for c in columns]
    text = parts[0] + "/" + parts[1] + "/" + parts[2]
    return text.where(frame[columns].notna().any(axis=1), None)


def purchase_plan_lineage(estate, params) -> pd.DataFrame:
    """Definitions without a purchase plan whose versions come from a source with a
    Marketplace plan, and machines whose plan differs from their definition's."""
    return pd.concat([_definitions_missing_plan(estate), _machines_with_other_plan(estate)],
                     ignore_index=True)


def _definition_plans(estate) -> pd.Series:
    """Each definition's purchase plan text (missing where it has none), by definition id."""
    definitions = estate.image_definitions.drop_duplicates("id")
    return pd.Series(_plan_text(definitions, _PURCHASE_PLAN).to_numpy(dtype=object),
                     index=definitions["id"].astype(object))


def _source_plans(estate) -> pd.Series:
    """The Marketplace plan of each version's source, by version id, where the snapshot
    shows it: a VM or scale set with a plan, a managed image captured from one, or a gallery
    version whose definition has a purchase plan. A source not in the snapshot is unknown."""
    versions = estate.image_versions.drop_duplicates("id")
    sources = pd.concat([versions["source_id"], estate.managed_images["source_vm_id"]]).dropna()
    machines = estate.machines
    machines = machines.loc[machines["id"].isin(sources).to_numpy(dtype=bool), ["id"] + _PLAN]
    machine_plan = pd.Series(_plan_text(machines, _PLAN).to_numpy(dtype=object),
                             index=machines["id"].astype(object)).dropna()
    images = estate.managed_images.drop_duplicates("id")
    image_plan = lookup(images["source_vm_id"].astype(object), machine_plan)
    image_plan = pd.Series(image_plan.to_numpy(dtype=object),
                           index=images["id"].astype(object)).dropna()
    definition_plan = _definition_plans(estate).dropna()
    version_plan = lookup(versions["definition_id"].astype(object), definition_plan)
    version_plan = pd.Series(version_plan.to_numpy(dtype=object),
                             index=versions["id"].astype(object)).dropna()
    known = pd.concat([machine_plan, image_plan, version_plan])
    known = known[~known.index.duplicated()]
    source = versions["source_id"].astype(object)
    return pd.Series(lookup(source, known).to_numpy(dtype=object),
                     index=versions["id"].astype(object)).dropna()


def _definitions_missing_plan(estate) -> pd.DataFrame:
    definitions = estate.image_definitions
    without = definitions.loc[definitions[_PURCHASE_PLAN].isna().all(axis=1), "id"]
    plans = _source_plans(estate)
    versions = estate.image_versions.drop_duplicates("id")
    inherited = versions[versions["id"].isin(plans.index)
                         & versions["definition_id"].isin(without)]
    inherited = inherited.assign(source_plan=lookup(inherited["id"].astype(object), plans))
    first = inherited.sort_values("id").drop_duplicates("definition_id").set_index(
        "definition_id")
    out = resources(estate, ["image_definitions"])
    out = out[out["id"].isin(first.index)]
    at = out["id"].to_numpy(dtype=object)
    source_plan = pd.Series(first["source_plan"].reindex(at).to_numpy(dtype=object),
                            index=out.index)
    source = pd.Series(first["source_id"].reindex(at).to_numpy(dtype=object), index=out.index)
    version = pd.Series(first["name"].reindex(at).to_numpy(dtype=object), index=out.index)
    return out.assign(
        plan=source_plan, definition_plan="(none)", source_id=source,
        problem="has no purchasePlan, but version " + version + " was built from "
        + source.str.rsplit("/", n=1).str[-1] + ", which carries Marketplace plan "
        + source_plan + ": deployments from it fail with \"different plan\"")


def _machines_with_other_plan(estate) -> pd.DataFrame:
    usage = estate.usage
    machines = estate.machines
    definition_plan = _definition_plans(estate)
    # Judged on the definitions' codes: most machines carry no plan, and for those the
    # answer is whether their definition has one.
    definition = usage["definition_id"]
    categories = pd.Series(definition.cat.categories.astype(object), dtype=object)
    expected_of = np.append(lookup(categories, definition_plan).to_numpy(dtype=object), None)
    known_of = np.append(categories.isin(definition_plan.index).to_numpy(dtype=bool), False)
    code = definition.cat.codes.to_numpy()
    judged = known_of[code] & usage["definition_known"].to_numpy(dtype=bool)
    plans = machines[_PLAN]
    planned = plans.notna().any(axis=1).to_numpy(dtype=bool)
    expected_all = expected_of[code]
    candidate = judged & (planned | pd.notna(expected_all))
    rows = usage[["kind", "definition_id"]][candidate]
    expected = pd.Series(expected_all[candidate], index=rows.index, dtype=object)
    own = _plan_text(plans[candidate], _PLAN)
    differs = (own.fillna("") != expected.fillna("")).to_numpy(dtype=bool)
    rows, expected, own = rows[differs], expected[differs], own[differs]
    shown_own = own.fillna("(none)")
    shown_expected = expected.fillna("(none)")
    definition_name = rows["definition_id"].astype(str).str.rsplit("/", n=1).str[-1]
    out = machines.loc[rows.index, ["id", "arm_id", "name", "subscription_id",
                                    "resource_group", "location"]]
    return out.assign(
        resource_type=rows["kind"].astype(object).map(_MACHINE_TYPES).to_numpy(dtype=object),
        kind=rows["kind"].astype(object), plan=shown_own, definition_plan=shown_expected,
        source_id=rows["definition_id"].astype(object),
        problem=np.where(own.isna(), "carries no Marketplace plan",
                         "carries Marketplace plan " + shown_own.astype(str))
        + " but its image definition " + definition_name
        + np.where(expected.isna(), " has no purchasePlan",
                   " has purchasePlan " + shown_expected.astype(str))
        + ": new deployments and scale-outs from it fail with "
        "\"different plan\"")
