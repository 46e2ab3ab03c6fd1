"""Deprecation checks: Marketplace images their publisher deprecates (read by one GET per
image in use) and operating systems past their vendor's end of support (a shipped table)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources as package_files

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditor.checks.tag import resources
from auditor.errors import AuditError
from auditor.estate import codes_of, distinct, lowered

SUPPORT_TABLE = "os_end_of_support.csv"
SUPPORT_COLUMNS = ["os", "pattern", "standard_end", "standard_source", "extended_program",
                   "extended_end", "extended_source"]


IDENTITY = ["id", "arm_id", "name", "subscription_id", "resource_group", "location"]
MACHINE_TYPES = {"vm": "Microsoft.Compute/virtualMachines",
                 "vmss": "Microsoft.Compute/virtualMachineScaleSets"}


def _marketplace_machines(estate, columns: list[str]) -> pd.DataFrame:
    """`columns` of the machines on a Marketplace image, indexed by their position in the
    machines table (the engine takes their other columns by position): only those columns
    are copied, not the whole million-row table."""
    machines = estate.machines
    at = np.flatnonzero(lowered(machines["image_kind"]).eq("marketplace").to_numpy(dtype=bool))
    return pd.DataFrame({c: machines[c].array.take(at) for c in columns}, index=at)


# --- DEP001: Marketplace versions scheduled for deprecation or deprecated ------------------

def _urn_keys(location, publisher, offer, sku, version) -> tuple[np.ndarray, pd.Series]:
    """Each row's position among its distinct (location, publisher, offer, sku, version)
    and the key text of each distinct one, lower-cased: a million machines name a few
    thousand images, so text is built once per image."""
    columns = [location, publisher, offer, sku, version]
    key = np.zeros(len(location), dtype=np.int64)
    for column in columns:
        codes, values = codes_of(column.reset_index(drop=True))
        key = key * (len(values) + 1) + codes + 1
    first, code = distinct(key)
    texts = [lowered(column.iloc[first].reset_index(drop=True)) for column in columns]
    joined = texts[0]
    for text in texts[1:]:
        joined = joined + ":" + text
    return code, joined


def marketplace_deprecated(estate, params) -> pd.DataFrame:
    """Machines on a Marketplace version whose GET said Deprecated or ScheduledForDeprecation,
    or 404 (gone). For `latest` the version is the machine's exactVersion; a machine whose
    version was not read is unknown and not reported."""
    read = estate.marketplace_versions
    if read.empty:
        return pd.DataFrame({"id": pd.Series(dtype=object)})
    market = _marketplace_machines(estate, ["id", "name", "kind", "location", "image_publisher",
                                            "image_offer", "image_sku", "image_version",
                                            "exact_version"])
    if market.empty:
        return market[["id"]]
    named = market["image_version"].astype(object)
    latest = lowered(named).eq("latest").to_numpy(dtype=bool)
    version = pd.Series(np.where(latest, market["exact_version"].astype(object), named),
                        index=market.index, dtype=object)
    code, keys = _urn_keys(market["location"], market["image_publisher"], market["image_offer"],
                           market["image_sku"], version)
    read_code, read_keys = _urn_keys(read["location"], read["publisher"], read["offer"],
                                     read["sku"], read["version"])
    by_key = read.assign(key=read_keys.to_numpy()[read_code]).drop_duplicates("key") \
        .set_index("key")
    at = by_key.index.get_indexer(keys)
    found = by_key["found"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    state = lowered(by_key["image_state"]).to_numpy(dtype=object)
    when = by_key["scheduled_deprecation_time"]
    due = (when <= estate.as_of).fillna(False).to_numpy(dtype=bool)
    gone, deprecated = ~found, state == "deprecated"
    scheduled = state == "scheduledfordeprecation"
    judged = gone | deprecated | scheduled
    image_hit = np.where(at >= 0, judged[np.maximum(at, 0)] if len(judged) else False, False)
    rows = market[image_hit[code]]
    if rows.empty:
        return rows[["id"]]
    pick = at[code[image_hit[code]]]
    urn = (rows["image_publisher"].astype(str) + ":" + rows["image_offer"].astype(str) + ":"
           + rows["image_sku"].astype(str) + ":" + version[rows.index].astype(str))
    date = when.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)[pick]
    alternative = (by_key["alternative_type"].astype(object).fillna("") + " "
                   + by_key["alternative_value"].astype(object).fillna("")).str.strip() \
        .to_numpy(dtype=object)[pick]
    date_text = pd.Series(date, dtype=object).fillna("an unknown date").astype(str).to_numpy()
    status = np.select(
        [gone[pick], deprecated[pick], due[pick]],
        ["no longer exists (the version GET answered 404)", "is deprecated",
         "was scheduled for deprecation on " + date_text],
        "is scheduled for deprecation on " + date_text)
    severity = np.where(gone[pick] | deprecated[pick] | due[pick], "high",
                        str(params["scheduled_severity"]))
    alternative_text = np.where(alternative != "", "; Azure names the alternative " + alternative,
                                "")
    return pd.DataFrame({
        "id": rows["id"], "name": rows["name"], "kind": rows["kind"], "image": urn.to_numpy(),
        "image_state": np.where(gone[pick], "NotFound", by_key["image_state"].astype(object)
                                .to_numpy(dtype=object)[pick]),
        "scheduled_deprecation_time": date, "alternative": alternative,
        "status": status + alternative_text, "severity": severity}, index=rows.index)


# --- DEP002: operating system past the end of its vendor's support --------------------------

@lru_cache(maxsize=1)
def shipped_support_table() -> pd.DataFrame:
    """The dated table in auditor/data: one row per OS release, its URN pattern, and its
    standard and extended end dates, each with the page it was taken from."""
    path = package_files.files("auditor.data").joinpath(SUPPORT_TABLE)
    with path.open(encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


def support_table(params) -> pd.DataFrame:
    """The config's `overrides` (same columns; they win, in their order) above the shipped
    table; end dates as UTC timestamps (empty: none)."""
    table = pd.concat([pd.DataFrame(list(params.get("overrides") or []), dtype=str),
                       shipped_support_table()], ignore_index=True)
    table = table.reindex(columns=SUPPORT_COLUMNS).fillna("")
    for column in ("standard_end", "extended_end"):
        try:
            table[column] = pd.to_datetime(table[column].replace("", None), utc=True)
        except (ValueError, TypeError) as exc:
            raise AuditError(f"DEP002 overrides: {column}: not a date ({exc})") from None
    for pattern in table["pattern"]:
        try:  # matched by Arrow's RE2: no look-around or back-references
            pc.match_substring_regex(pa.array([""]), pattern)
        except pa.ArrowInvalid as exc:
            raise AuditError(f"DEP002 overrides: pattern {pattern!r}: {exc}") from None
    return table


def _first_match(urns: pd.Series, table: pd.DataFrame) -> np.ndarray:
    """The row of `table` whose pattern first matches each URN (-1: none); once per URN."""
    found = np.full(len(urns), -1)
    text = lowered(urns)
    for row, pattern in enumerate(table["pattern"]):
        if not pattern:
            continue
        hit = pc.match_substring_regex(pa.array(text, type=pa.string()), pattern,
                                       ignore_case=True).to_numpy(zero_copy_only=False)
        found = np.where((found < 0) & hit, row, found)
    return found


def os_past_end_of_support(estate, params) -> pd.DataFrame:
    """Marketplace machines, and gallery definitions (by their identifier, or by a version's
    Image Builder source tag holding a URN), whose OS is past, or within `due_within_days`
    of, the end of support that `end` names."""
    table = support_table(params)
    market = _marketplace_machines(estate, ["id", "image_publisher", "image_offer",
                                            "image_sku"])
    blank = pd.Series("", index=market.index)
    code, urns = _urn_keys(blank, market["image_publisher"], market["image_offer"],
                           market["image_sku"], blank)
    match = _first_match(urns.str.strip(":"), table)[code] if len(market) else np.array([], int)
    hit = market[match >= 0]  # few: the text of their URN is made for them only
    machine_rows = pd.DataFrame({"id": hit["id"].to_numpy(), "match": match[match >= 0],
                                 "urn": (hit["image_publisher"].astype(str) + ":"
                                         + hit["image_offer"].astype(str) + ":"
                                         + hit["image_sku"].astype(str)).to_numpy()})
    definitions = estate.image_definitions
    identifier = (definitions["publisher"].astype(object).fillna("") + ":"
                  + definitions["offer"].astype(object).fillna("") + ":"
                  + definitions["sku"].astype(object).fillna(""))
    definition_rows = pd.DataFrame({"id": definitions["id"], "match": _first_match(
        identifier, table), "urn": identifier})
    tags = estate.resource_tags
    wanted = [str(t).lower() for t in params["source_tags"]]
    at = np.flatnonzero((tags["resource_table"] == "image_versions").to_numpy(dtype=bool)
                        & tags["key_lower"].isin(wanted).to_numpy(dtype=bool))
    source = pd.DataFrame({c: tags[c].array.take(at) for c in ("resource_id", "value")})
    versions = estate.image_versions.drop_duplicates("id").set_index("id")["definition_id"]
    tagged = pd.DataFrame({"id": versions.reindex(source["resource_id"].astype(object))
                           .to_numpy(dtype=object),
                           "match": _first_match(source["value"].astype(object), table),
                           "urn": source["value"].astype(object).to_numpy()})
    rows = pd.concat([machine_rows, definition_rows, tagged.dropna(subset=["id"])],
                     ignore_index=True)
    rows = rows[rows["match"] >= 0].drop_duplicates("id")
    if rows.empty:
        return pd.DataFrame(columns=IDENTITY + ["resource_type"])
    chosen = table.iloc[rows["match"].to_numpy()].reset_index(drop=True)
    extended = str(params["end"]) == "extended"
    use_extended = extended & chosen["extended_end"].notna()
    end = chosen["extended_end"].where(use_extended, chosen["standard_end"])
    days_left = ((end - estate.as_of).dt.days).to_numpy()
    due = days_left <= int(params["due_within_days"])
    rows = rows.reset_index(drop=True)[due]
    chosen, end, use_extended = chosen[due], end[due], use_extended[due]
    days_left = days_left[due]
    which = np.where(use_extended, "end of " + chosen["extended_program"].astype(str),
                     "end of standard support")
    when = np.where(days_left < 0, "ended " + (-days_left).astype(str) + " days ago",
                    "ends in " + days_left.astype(str) + " days")
    extended_text = np.where(
        ~use_extended & (chosen["extended_end"].notna()),
        "; " + chosen["extended_program"].astype(str) + " runs to "
        + chosen["extended_end"].dt.strftime("%Y-%m-%d").astype(str), "")
    machines = estate.machines
    at = hit.index[hit["id"].isin(rows["id"]).to_numpy(dtype=bool)].to_numpy()
    machine_rows = pd.DataFrame({c: machines[c].array.take(at) for c in IDENTITY + ["kind"]})
    machine_rows["resource_type"] = machine_rows.pop("kind").map(MACHINE_TYPES)
    out = pd.concat([machine_rows, resources(estate, ["image_definitions"],
                                             pd.Index(rows["id"]))], ignore_index=True)
    details = pd.DataFrame({
        "id": rows["id"].to_numpy(), "os": chosen["os"].to_numpy(),
        "image": rows["urn"].to_numpy(), "end": end.dt.strftime("%Y-%m-%d").to_numpy(),
        "counted_end": which, "days_left": days_left,
        "status": chosen["os"].to_numpy() + ": " + which + " " + end.dt.strftime(
            "%Y-%m-%d").to_numpy() + " (" + when + extended_text + ")",
        "source": np.where(use_extended, chosen["extended_source"], chosen["standard_source"]),
        "severity": np.where(days_left < 0, "high", str(params["before_end_severity"]))})
    return out.merge(details, on="id")
