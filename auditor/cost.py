"""Storage cost of the image estate: one line per gallery version x region replica and per
managed image, priced from the price table, with the assumptions each line used.

Azure bills a replica as a snapshot on the version's occupied size; the API only gives the
provisioned size, so without an occupancy ratio every figure is an upper bound. A line whose
size or price is unknown is "unpriced" and counted as such, never a silent zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from auditor.errors import AuditError
from auditor.estate import Estate
from auditor.prices import ANY_REGION, load_prices

# Rule families whose findings name resources that could be deleted: their cost is the saving.
SAVINGS_FAMILIES = ("RET", "STL")
# Rules of those families whose findings ask for a fix, not a deletion.
NOT_DELETIONS = {"STL005"}  # a version without an end-of-life date
MANAGED_IMAGES = "(managed images)"
NO_TEAM = "(no team tag)"
LINE_COLUMNS = ["kind", "resource_id", "name", "gallery", "definition", "version", "region",
                "storage_type", "team", "size_gb", "replicas", "occupancy", "billed_gb",
                "price_per_gb_month", "currency", "monthly_cost", "status", "price_row",
                "assumptions"]
TOTAL_COLUMNS = ["section", "key", "monthly_cost", "currency", "priced", "unpriced",
                 "unpriced_gb", "basis"]


def _segment(ids: pd.Series, name: str) -> pd.Series:
    return ids.astype("object").str.extract(f"/{name}/([^/]+)", expand=False)


def _team(estate: Estate, frame: pd.DataFrame, *id_columns: str) -> pd.Series:
    """The `team` tag of the first resource in `id_columns` that has one."""
    team = pd.Series(pd.NA, index=frame.index, dtype="object")
    for column in id_columns:
        tagged = estate.tag(frame, "team", ids=frame[column]).astype("object")
        team = team.where(team.notna(), tagged)
    return team.where(team.notna(), NO_TEAM)


def _replica_lines(estate: Estate) -> pd.DataFrame:
    versions = estate.image_versions.drop_duplicates("id").set_index("id")
    regions = estate.version_regions
    lines = regions.join(versions[["arm_id", "definition_id", "gallery_id", "name",
                                   "os_disk_size_gb", "data_disk_size_gb"]], on="version_id",
                         how="inner")
    galleries = estate.galleries.drop_duplicates("id").set_index("id")["name"]
    gallery = lines["gallery_id"].map(galleries).astype("object")
    gallery = gallery.where(gallery.notna(), _segment(lines["gallery_id"], "galleries"))
    definition = _segment(lines["definition_id"], "images")
    return pd.DataFrame({
        "kind": "replica", "id": lines["version_id"], "resource_id": lines["arm_id"],
        # as str: an object column that is all missing cannot be added to text
        "name": gallery.astype("str") + "/" + definition.astype("str") + "/" + lines["name"],
        "gallery": gallery,
        "definition": definition, "version": lines["name"], "region": lines["region"],
        "storage_type": lines["storage_account_type"],
        "team": _team(estate, lines, "version_id", "definition_id", "gallery_id"),
        "size_gb": lines["os_disk_size_gb"] + lines["data_disk_size_gb"].fillna(0.0),
        "replicas": lines["regional_replica_count"].astype("Float64").astype(float),
        "note": "",
    })


def _image_lines(estate: Estate) -> pd.DataFrame:
    images = estate.managed_images.drop_duplicates("id")
    storage = images["storage_account_type"]
    return pd.DataFrame({
        "kind": "managed image", "id": images["id"], "resource_id": images["arm_id"],
        "name": images["name"], "gallery": MANAGED_IMAGES, "definition": None, "version": None,
        "region": images["location"], "storage_type": storage.fillna("Standard_LRS"),
        "team": _team(estate, images, "id"),
        "size_gb": images["os_disk_size_gb"] + images["data_disk_size_gb"].fillna(0.0),
        "replicas": 1.0,
        "note": np.where(storage.isna(), "; storage type not recorded: assumed Standard_LRS", ""),
    })


def _price(lines: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Each line joined to its price row: the region's own row, else the `*` row of its type."""
    keyed = prices.set_index(["region", "storage_type"])
    exact = pd.MultiIndex.from_arrays([lines["region"], lines["storage_type"]])
    fallback = pd.MultiIndex.from_arrays([pd.Series(ANY_REGION, index=lines.index),
                                          lines["storage_type"]])
    own = keyed.reindex(exact).set_axis(lines.index)
    wild = keyed.reindex(fallback).set_axis(lines.index)
    use_wild = own["price_per_gb_month"].isna() & wild["price_per_gb_month"].notna()
    chosen = own.where(~use_wild, wild)
    row_region = np.where(use_wild, ANY_REGION, lines["region"])
    priced = chosen["price_per_gb_month"].notna()
    price_row = pd.Series(row_region, index=lines.index).astype(str) + "/" + lines[
        "storage_type"].astype(str) + " (" + chosen["product_name"].astype(str) + " " + chosen[
        "meter_name"].astype(str) + ")"
    return chosen.assign(price_row=price_row.where(priced, None), wildcard=use_wild)


@dataclass
class Cost:
    """Cost lines with their totals, per-resource costs and savings."""
    lines: pd.DataFrame
    currency: str
    occupancy: float | None

    @property
    def basis(self) -> str:
        if self.occupancy is None:
            return "upper bound: provisioned disk size (Azure bills the occupied size)"
        return f"estimate: {self.occupancy:g} x provisioned disk size (--occupancy)"

    @cached_property
    def resource_costs(self) -> pd.Series:
        """Monthly cost per resource id (lower-cased); NaN when any of its lines is unpriced."""
        grouped = self.lines.groupby("id", sort=False)["monthly_cost"]
        return grouped.sum().where(grouped.count() == grouped.size())

    def totals(self) -> pd.DataFrame:
        """Totals overall and by gallery, region, storage type and team tag, each saying how many
        lines (and GB, where the size is known) it could not price."""
        unpriced = self.lines["monthly_cost"].isna()
        lines = self.lines.assign(total="all image storage", unpriced=unpriced,
                                  unpriced_gb=self.lines["billed_gb"].where(unpriced, 0.0))
        frames = []
        for section in ["total", "gallery", "region", "storage_type", "team"]:
            grouped = lines.groupby(section, dropna=False, sort=True)
            frames.append(pd.DataFrame({
                "section": section, "key": grouped.size().index.astype(str),
                "monthly_cost": grouped["monthly_cost"].sum().to_numpy(),
                "priced": grouped["monthly_cost"].count().to_numpy(),
                "unpriced": grouped["unpriced"].sum().to_numpy(),
                "unpriced_gb": grouped["unpriced_gb"].sum().to_numpy()}))
        if not len(lines):
            frames.append(pd.DataFrame({"section": ["total"], "key": ["all image storage"],
                                        "monthly_cost": [0.0], "priced": [0], "unpriced": [0],
                                        "unpriced_gb": [0.0]}))
        totals = pd.concat(frames, ignore_index=True).round({"monthly_cost": 4, "unpriced_gb": 3})
        return totals.assign(currency=self.currency, basis=self.basis)[TOTAL_COLUMNS]

    def with_finding_costs(self, findings: pd.DataFrame) -> pd.DataFrame:
        """Findings with `monthly_cost`: the cost of the resource each one flags, NaN if none."""
        keys = findings["resource_id"].astype("object").str.lower()
        return findings.assign(monthly_cost=keys.map(self.resource_costs).astype(float))

    def savings(self, findings: pd.DataFrame) -> pd.DataFrame:
        """Monthly cost of what retention and staleness findings would delete, per rule and in
        total (a resource flagged by two rules counts once in the total)."""
        rule_ids = findings["rule_id"].astype(str)
        active = findings[~findings["exempted"].astype(bool)
                          & rule_ids.str.startswith(SAVINGS_FAMILIES)
                          & ~rule_ids.isin(NOT_DELETIONS)]
        keys = active["resource_id"].astype("object").str.lower()
        costed = active.assign(key=keys, cost=keys.map(self.resource_costs),
                               known=keys.isin(self.resource_costs.index))
        costed = costed[costed["known"]].drop_duplicates(["rule_id", "key"])
        rows = []
        for rule_id, group in list(costed.groupby("rule_id", sort=True)) + [
                ("all savings", costed.drop_duplicates("key"))]:
            rows.append({"section": "savings", "key": rule_id,
                         "monthly_cost": round(float(group["cost"].sum()), 4),
                         "priced": int(group["cost"].notna().sum()),
                         "unpriced": int(group["cost"].isna().sum()), "unpriced_gb": np.nan})
        return pd.DataFrame(rows).assign(currency=self.currency, basis=self.basis)[TOTAL_COLUMNS]


def estimate(estate: Estate, prices: pd.DataFrame | None = None,
             occupancy: float | None = None) -> Cost:
    """Price every replica and managed image of the estate."""
    if occupancy is not None and not 0 < occupancy <= 1:
        raise AuditError(f"--occupancy: {occupancy} is not a ratio in (0, 1]")
    prices = load_prices() if prices is None else prices
    currency = str(prices["currency"].iloc[0]) if len(prices) else "USD"
    lines = pd.concat([_replica_lines(estate), _image_lines(estate)], ignore_index=True)
    priced = _price(lines, prices)
    ratio = 1.0 if occupancy is None else float(occupancy)
    billed = lines["size_gb"].astype(float) * lines["replicas"] * ratio
    price = priced["price_per_gb_month"].astype(float)
    size_missing = lines["size_gb"].isna() | lines["replicas"].isna()
    status = np.select(
        [size_missing, price.isna()],
        ["unpriced: disk size or replica count not recorded",
         "unpriced: no price for " + lines["storage_type"].astype(str) + " in "
         + lines["region"].astype(str) + " (nor a * row)"], "priced")
    basis = ("provisioned size, an upper bound" if occupancy is None
             else f"occupancy {ratio:g} of provisioned size")
    assumptions = (basis + np.where(priced["wildcard"], "; region has no price row: * row used",
                                    "") + lines["note"])
    lines = lines.drop(columns="note").assign(
        occupancy=ratio, billed_gb=billed, price_per_gb_month=price, currency=currency,
        monthly_cost=(billed * price).where(status == "priced").round(6), status=status,
        price_row=priced["price_row"], assumptions=assumptions)
    return Cost(lines=lines[["id"] + LINE_COLUMNS], currency=currency, occupancy=occupancy)
