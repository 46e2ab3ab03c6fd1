"""Security checks: versions Azure reported for a policy violation, Trusted Launch where it
is possible, and the encryption of image versions in each target region."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.checks.tag import resources
from auditor.estate import codes_of, lowered

# Definition SecurityType values whose images can also deploy Standard machines.
TRUSTED_LAUNCH_OPTIONAL = ["trustedlaunchsupported", "trustedlaunchandconfidentialvmsupported"]
GENERATION_1 = "is Generation 1 (hyperVGeneration V1), which cannot use Trusted Launch"
_MACHINE_TYPES = {"vm": "Microsoft.Compute/virtualMachines",
                  "vmss": "Microsoft.Compute/virtualMachineScaleSets"}


def reported_for_policy_violation(estate, params) -> pd.DataFrame:
    """Versions Azure reported for a policy violation (`reportedForPolicyViolation` true, or
    violations listed). Absent, as before API 2022-03-03, is unknown: never reported here."""
    versions = estate.image_versions
    reported = versions["reported_for_policy_violation"].fillna(False).astype(bool) \
        | versions["policy_violations"].notna()
    flagged = versions.loc[reported.to_numpy(dtype=bool),
                           ["id", "reported_for_policy_violation", "policy_violations"]]
    flagged = flagged.assign(policy_violations=flagged["policy_violations"].fillna(
        "no violation listed"))
    return resources(estate, ["image_versions"], ids=pd.Index(flagged["id"])).merge(
        flagged, on="id")


def trusted_launch_not_used(estate, params) -> pd.DataFrame:
    """Definitions that cannot give Trusted Launch machines, and production machines that
    run without it where their image allows it (or cannot, being Generation 1)."""
    return pd.concat([_definitions_without_trusted_launch(estate, params),
                      _machines_without_trusted_launch(estate, params)], ignore_index=True)


def _definitions_without_trusted_launch(estate, params) -> pd.DataFrame:
    definitions = estate.image_definitions
    generation_1 = lowered(definitions["hyper_v_generation"]).eq("v1").to_numpy(dtype=bool)
    security = lowered(definitions["security_type"])
    standard = security.eq("standard").to_numpy(dtype=bool)
    absent = security.eq("").to_numpy(dtype=bool) & bool(params["absent_security_type_is_standard"])
    reason = np.select([generation_1, standard, absent], [
        GENERATION_1, "has SecurityType Standard, so its machines cannot use Trusted Launch",
        "has no SecurityType feature, which meant Standard for definitions created before "
        "API version 2025-03-03"], default="")
    hit = reason != ""
    flagged = pd.DataFrame({"id": definitions["id"].to_numpy(dtype=object)[hit],
                            "reason": reason[hit],
                            "hyper_v_generation": definitions["hyper_v_generation"].to_numpy(
                                dtype=object)[hit],
                            "security_type": definitions["security_type"].to_numpy(
                                dtype=object)[hit]})
    return resources(estate, ["image_definitions"], ids=pd.Index(flagged["id"])).merge(
        flagged, on="id")


def _per_row(keys: pd.Series, values: pd.Series) -> np.ndarray:
    """`values[key]` for each row as an object array (None where absent), looked up once
    per distinct key: a million machines use a few thousand images."""
    codes, distinct = codes_of(keys)
    found = values[~values.index.duplicated()].reindex(np.asarray(distinct, dtype=object))
    return np.append(found.to_numpy(dtype=object), None)[codes]


def _machines_without_trusted_launch(estate, params) -> pd.DataFrame:
    usage = estate.usage
    machines = estate.machines
    production = estate.is_production("machines", params["production_values"]).to_numpy(bool)
    definitions = estate.image_definitions.set_index("id")
    images = estate.managed_images.set_index("id")
    # The machine's own generation (Resource Graph's instance view of a VM) first, then its
    # gallery definition's, then its managed image's.
    generation = machines["hyper_v_generation"].astype(object).to_numpy()
    for source in (_per_row(usage["definition_id"], definitions["hyper_v_generation"]),
                   _per_row(usage["managed_image_id"], images["hyper_v_generation"])):
        generation = np.where(pd.isna(generation), source, generation)
    generation_1 = lowered(pd.Series(generation, dtype=object)).eq("v1").to_numpy(dtype=bool)
    image_security = _per_row(usage["definition_id"], definitions["security_type"])
    optional = lowered(pd.Series(image_security, dtype=object)).isin(
        TRUSTED_LAUNCH_OPTIONAL).to_numpy(dtype=bool)
    standard = lowered(machines["security_type"]).eq("standard").to_numpy(dtype=bool)
    hit = production & (generation_1 | (optional & standard))
    rows = usage[hit]
    allowed_by = pd.Series(image_security[hit], dtype=object).fillna("").astype(str)
    reason = np.where(generation_1[hit],
                      "runs on Generation 1, which cannot use Trusted Launch",
                      ("runs securityType Standard from an image whose definition is "
                       + allowed_by).to_numpy(dtype=object))
    flagged = pd.DataFrame({
        "id": rows["machine_id"].to_numpy(dtype=object), "reason": reason,
        "resource_type": pd.Series(rows["kind"].astype(object)).map(_MACHINE_TYPES).to_numpy(
            dtype=object),
        "hyper_v_generation": generation[hit], "security_type": machines["security_type"]
        .to_numpy(dtype=object)[hit], "image_security_type": image_security[hit]})
    found = resources(estate, ["machines"], ids=pd.Index(flagged["id"])).drop(
        columns="resource_type")
    return found.merge(flagged, on="id")


def image_version_not_encrypted(estate, params) -> pd.DataFrame:
    """Target regions of a version without a disk encryption set for its OS disk or for each
    data disk (where customer-managed keys are required), and of a confidential VM image
    without its confidential encryption type (or, for EncryptedWithCmk, its secure VM disk
    encryption set)."""
    regions = estate.version_regions
    versions = estate.image_versions.set_index("id")
    definition = _per_row(regions["version_id"], versions["definition_id"])
    security = _per_row(pd.Series(definition, dtype=object),
                        estate.image_definitions.set_index("id")["security_type"])
    confidential = lowered(pd.Series(security, dtype=object)).isin(
        [str(v).lower() for v in params["confidential_security_types"]]).to_numpy(dtype=bool)
    kind = regions["confidential_vm_encryption_type"]
    required = bool(params["require_customer_managed_keys"])
    no_key = regions["disk_encryption_set_id"].isna().to_numpy(dtype=bool) & required
    data_disks = _per_row(regions["version_id"], versions["data_disk_count"])
    data_disks = pd.to_numeric(pd.Series(data_disks), errors="coerce").to_numpy()
    # Snapshots from before these columns read as unknown (NaN): never a finding.
    bare_data_disks = (data_disks - regions["encrypted_data_disks"].to_numpy(dtype=float))
    no_data_key = (bare_data_disks > 0) & required
    no_type = confidential & kind.isna().to_numpy(dtype=bool)
    no_secure_set = confidential & lowered(kind).eq("encryptedwithcmk").to_numpy(dtype=bool) \
        & regions["secure_vm_disk_encryption_set_id"].isna().to_numpy(dtype=bool)
    hit = no_key | no_data_key | no_type | no_secure_set
    bare_text = pd.Series(bare_data_disks).fillna(0).astype(int).astype(str) + " of " \
        + pd.Series(data_disks).fillna(0).astype(int).astype(str)
    text = np.full(len(regions), "", dtype=object)
    for failed, words in (
            (no_key, "no disk encryption set (customer-managed key) for its OS disk"),
            (no_data_key, (bare_text + " data disk(s) without a disk encryption set")
             .to_numpy(dtype=object)),
            (no_type, "a confidential VM image without confidentialVMEncryptionType"),
            (no_secure_set, "EncryptedWithCmk without secureVMDiskEncryptionSetId")):
        text = np.where(failed, np.where(text == "", words, text + "; " + words), text)
    flagged = regions[hit].assign(problem=text[hit],
                                  security_type=security[hit])
    found = resources(estate, ["image_versions"], ids=pd.Index(flagged["version_id"].unique()))
    return flagged.rename(columns={"version_id": "id"}).merge(found, on="id")
