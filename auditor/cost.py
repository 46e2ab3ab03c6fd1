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
from auditor.estate import Estate, lowered
from auditor.prices import ANY_REGION, load_prices

# Rules whose findings mean "this resource can go", when they flag an image version or a
# managed image: their cost is the saving, and the cleanup plan writes their deletions. Other
# RET/STL rules flag what needs fixing, not deleting (STL005: a version without an end-of-life
# date; RET003: an empty definition, whose deletion needs its own review).
DELETION_RULES = ("RET001", "RET002", "STL001")
# Rules whose fix keeps the resource and saves part of its cost: their findings' cost is that
# saving (Cost.fix_savings), shown by rule; they are no deletion.
FIX_SAVINGS = ("REP010", "REP011")  # fewer replicas of an idle version; Standard, not Premium
MANAGED_IMAGES = "(managed images)"
NO_TEAM = "(no team tag)"
LINE_COLUMNS = ["kind", "resource_id", "name", "gallery", "gallery_key", "definition", "version",
                "region",
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
    """One line per version and target region (regional replicas), one per additional
    replica set (PremiumV2 direct-drive replicas) and per Edge Zone target; a Shallow
    version's lines bill nothing: it makes no copies, its storage is its source's."""
    versions = estate.image_versions.drop_duplicates("id").set_index("id")
    regions = estate.version_regions.assign(kind="replica")
    extra = estate.tables.get("version_replica_sets")
    if extra is not None and len(extra):
        kind = np.where(extra["extended_location"].notna(), "edge zone replica",
                        "additional replica set")
        regions = pd.concat([regions, extra.assign(kind=kind)], ignore_index=True)
    lines = regions.join(versions[["arm_id", "definition_id", "gallery_id", "name",
                                   "os_disk_size_gb", "data_disk_size_gb",
                                   "replication_mode"]], on="version_id", how="inner")
    galleries = estate.galleries.drop_duplicates("id").set_index("id")
    gallery = lines["gallery_id"].map(galleries["name"]).astype("object")
    gallery = gallery.where(gallery.notna(), _segment(lines["gallery_id"], "galleries"))
    gallery_key = lines["gallery_id"].map(galleries["arm_id"]).astype("object")
    gallery_key = gallery_key.where(gallery_key.notna(), lines["arm_id"].astype("object")
                                    .str.replace(r"(?i)/images/[^/]+/versions/[^/]+$", "",
                                                 regex=True))
    definition = _segment(lines["definition_id"], "images")
    counted = lines["regional_replica_count"].astype("Float64").astype(float)
    extra_set = (lines["kind"] != "replica").to_numpy(dtype=bool)
    shallow = lowered(lines["replication_mode"]).eq("shallow").to_numpy(dtype=bool)
    note = np.select(
        [shallow, counted.isna() & ~extra_set, counted.isna() & extra_set],
        ["; Shallow replication makes no copies: billed through its source",
         "; replica count not recorded: taken as 1 (the API default)",
         "; replica count of the additional set not recorded: taken as 1"], "")
    if "extended_location" in lines:
        note = note + np.where(lines["extended_location"].notna(),
                               "; Edge Zone " + lines["extended_location"].astype(str), "")
    storage = lines["storage_account_type"].astype("object")
    # No type recorded: PreferStandard_ZRS (API 2025-03-03) stores ZRS where the region has zones.
    unrecorded = storage.isna().to_numpy(dtype=bool) & ~shallow
    note = note + np.where(unrecorded, "; no storage type recorded (storageAccountStrategy "
                           "PreferStandard_ZRS): priced as Standard_ZRS", "")
    storage = storage.where(~unrecorded, "Standard_ZRS")
    price_as = storage.where(~lowered(storage).eq("premiumv2_lrs"), "Premium_LRS")
    note = note + np.where(
        lowered(storage).eq("premiumv2_lrs") & ~shallow,
        "; PremiumV2 direct-drive replicas have no published snapshot meter: priced at the "
        "Premium SSD LRS snapshot meter (an assumption)", "")
    return pd.DataFrame({
        "kind": np.where(shallow, "replica (shallow)", lines["kind"]),
        "id": lines["version_id"], "resource_id": lines["arm_id"],
        # as str: an object column that is all missing cannot be added to text
        "name": gallery.astype("str") + "/" + definition.astype("str") + "/" + lines["name"],
        "gallery": gallery, "gallery_key": gallery_key,
        "definition": definition, "version": lines["name"], "region": lines["region"],
        "storage_type": storage, "price_as": price_as,
        "team": _team(estate, lines, "version_id", "definition_id", "gallery_id"),
        "size_gb": lines["os_disk_size_gb"] + lines["data_disk_size_gb"].fillna(0.0),
        "replicas": np.where(shallow, 0.0, counted.fillna(1.0)),
        "not_billed": shallow,
        "note": note,
    })


def _image_lines(estate: Estate) -> pd.DataFrame:
    """A managed image is billed as snapshot storage on Standard HDD (`LRS Snapshots`, or
    `ZRS Snapshots` when it is zone-resilient), whatever its osDisk.storageAccountType: that
    is the disk type of the VMs created from it."""
    images = estate.managed_images.drop_duplicates("id")
    zone_resilient = images["zone_resilient"].fillna(False).astype(bool)
    storage = pd.Series(np.where(zone_resilient, "Standard_ZRS", "Standard_LRS"),
                        index=images.index)
    disk_type = images["storage_account_type"].astype("object")
    note = np.where(zone_resilient, "; zone-resilient image: ZRS snapshot storage", "") + np.where(
        disk_type.notna() & ~disk_type.isin(["Standard_LRS", "Standard_ZRS"]),
        "; billed as a Standard HDD snapshot: " + disk_type.astype(str)
        + " is the disk type of VMs created from it", "")
    return pd.DataFrame({
        "kind": "managed image", "id": images["id"], "resource_id": images["arm_id"],
        "name": images["name"], "gallery": MANAGED_IMAGES, "gallery_key": MANAGED_IMAGES,
        "definition": None, "version": None,
        "region": images["location"], "storage_type": storage, "price_as": storage,
        "team": _team(estate, images, "id"),
        "size_gb": images["os_disk_size_gb"] + images["data_disk_size_gb"].fillna(0.0),
        "replicas": 1.0, "not_billed": False,
        "note": note,
    })


def _price(lines: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Each line joined to its price row: the region's own row, else the `*` row of its type."""
    keyed = prices.set_index(["region", "storage_type"])
    exact = pd.MultiIndex.from_arrays([lines["region"], lines["price_as"]])
    fallback = pd.MultiIndex.from_arrays([pd.Series(ANY_REGION, index=lines.index),
                                          lines["price_as"]])
    own = keyed.reindex(exact).set_axis(lines.index)
    wild = keyed.reindex(fallback).set_axis(lines.index)
    use_wild = own["price_per_gb_month"].isna() & wild["price_per_gb_month"].notna()
    chosen = own.where(~use_wild, wild)
    row_region = np.where(use_wild, ANY_REGION, lines["region"])
    priced = chosen["price_per_gb_month"].notna()
    price_row = pd.Series(row_region, index=lines.index).astype(str) + "/" + lines[
        "price_as"].astype(str) + " (" + chosen["product_name"].astype(str) + " " + chosen[
        "meter_name"].astype(str) + ")"
    return chosen.assign(price_row=price_row.where(priced, None), wildcard=use_wild)


@dataclass
class Cost:
    """Cost lines with their totals, per-resource costs and savings."""
    lines: pd.DataFrame
    currency: str
    occupancy: float | None
    standard_prices: pd.Series | None = None  # per line: its region's Standard_LRS price

    @property
    def basis(self) -> str:
        if self.occupancy is None:
            return "upper bound: provisioned disk size (Azure bills the occupied size)"
        return f"estimate: {self.occupancy:g} x provisioned disk size (--occupancy)"

    @cached_property
    def resource_costs(self) -> pd.Series:
        """Monthly cost per resource id (lower-cased); NaN when any of its lines is unpriced.
        A Shallow version bills nothing of its own: it has no cost here, so no finding,
        saving or cleanup step counts one for it."""
        billed = self.lines[~self.lines["status"].str.startswith(NOT_BILLED)]
        grouped = billed.groupby("id", sort=False)["monthly_cost"]
        return grouped.sum().where(grouped.count() == grouped.size())

    def totals(self) -> pd.DataFrame:
        """Totals overall and by gallery, region, storage type and team tag, each saying how many
        lines (and GB, where the size is known) it could not price."""
        unpriced = self.lines["monthly_cost"].isna()
        lines = self.lines.assign(total="all image storage", unpriced=unpriced,
                                  priced=self.lines["status"].eq("priced"),
                                  unpriced_gb=self.lines["billed_gb"].where(unpriced, 0.0))
        frames = []
        # Gallery names repeat across resource groups and subscriptions: keyed by id.
        for section, column in [("total", "total"), ("gallery", "gallery_key"),
                                ("region", "region"), ("storage_type", "storage_type"),
                                ("team", "team")]:
            grouped = lines.groupby(column, dropna=False, sort=True)
            frames.append(pd.DataFrame({
                "section": section, "key": grouped.size().index.astype(str),
                "monthly_cost": grouped["monthly_cost"].sum().to_numpy(),
                "priced": grouped["priced"].sum().to_numpy(),
                "unpriced": grouped["unpriced"].sum().to_numpy(),
                "unpriced_gb": grouped["unpriced_gb"].sum().to_numpy()}))
        if not len(lines):
            frames.append(pd.DataFrame({"section": ["total"], "key": ["all image storage"],
                                        "monthly_cost": [0.0], "priced": [0], "unpriced": [0],
                                        "unpriced_gb": [0.0]}))
        totals = pd.concat(frames, ignore_index=True).round({"monthly_cost": 4, "unpriced_gb": 3})
        return totals.assign(currency=self.currency, basis=self.basis)[TOTAL_COLUMNS]

    def with_finding_costs(self, findings: pd.DataFrame) -> pd.DataFrame:
        """Findings with `monthly_cost`: the cost of the resource each one flags, NaN if none;
        for FIX_SAVINGS rules, what the fix saves."""
        keys = findings["resource_id"].astype("object").str.lower()
        cost = keys.map(self.resource_costs).astype(float)
        fix = findings["rule_id"].isin(FIX_SAVINGS).to_numpy(dtype=bool)
        if fix.any():
            cost[fix] = self.fix_savings(findings[fix]).to_numpy()
        return findings.assign(monthly_cost=cost)

    def fix_savings(self, findings: pd.DataFrame) -> pd.Series:
        """Monthly saving of each REP010 / REP011 finding's fix (NaN where a line it needs is
        unpriced or not in the cost lines). REP010: the version's lines less one replica in
        the region it keeps (its home region where it has a replica, else the first by
        name), as the check words it. REP011: its region's Premium_LRS lines priced at the
        Standard_LRS price instead."""
        lines = self.lines[~self.lines["status"].str.startswith(NOT_BILLED)]
        key = findings["resource_id"].astype("object").str.lower()
        saving = pd.Series(np.nan, index=findings.index)
        trim = (findings["rule_id"] == "REP010").to_numpy(dtype=bool)
        if trim.any():
            own = lines[lines["id"].isin(key[trim])].sort_values("region")
            one = (own["monthly_cost"] / own["replicas"]).groupby(own["id"])
            home = pd.MultiIndex.from_arrays([key[trim], findings.loc[trim, "location"]])
            at_home = (own["monthly_cost"] / own["replicas"]).set_axis(
                pd.MultiIndex.from_frame(own[["id", "region"]])).groupby(level=[0, 1]).first()
            kept = pd.Series(at_home.reindex(home).to_numpy(), index=key[trim].index)
            kept = kept.fillna(key[trim].map(one.first()))
            saving[trim] = key[trim].map(self.resource_costs) - kept
        premium = (findings["rule_id"] == "REP011").to_numpy(dtype=bool)
        if premium.any() and self.standard_prices is not None:
            own = lines[lines["storage_type"].eq("Premium_LRS")]
            cheaper = own["billed_gb"] * (own["price_per_gb_month"]
                                          - self.standard_prices.reindex(own.index))
            by_pair = cheaper.groupby([own["id"], own["region"]]).sum(min_count=1)
            pairs = pd.MultiIndex.from_arrays([key[premium], findings.loc[premium, "region"]])
            saving[premium] = by_pair.reindex(pairs).to_numpy()
        return saving.round(6)

    def savings(self, findings: pd.DataFrame, plan=None) -> pd.DataFrame:
        """Savings rows: per rule, the monthly cost of the resources its open findings flag
        (`savings by rule`; a resource flagged by two rules counts in each; for REP010 and
        REP011, what their fix saves, which deletes nothing); with the cleanup
        `plan` made from the same findings, what is deletable now and what is blocked (by
        the date the lock lifts, or with no date), each resource once."""
        rule_ids = findings["rule_id"].astype(str)
        active = findings[~findings["exempted"].astype(bool)
                          & (rule_ids.isin(DELETION_RULES) | rule_ids.isin(FIX_SAVINGS))]
        keys = active["resource_id"].astype("object").str.lower()
        costed = active.assign(key=keys, cost=keys.map(self.resource_costs),
                               known=keys.isin(self.resource_costs.index))
        fix = costed["rule_id"].isin(FIX_SAVINGS).to_numpy(dtype=bool)
        if fix.any():
            costed.loc[fix, "cost"] = self.fix_savings(costed[fix]).to_numpy()
            region = costed.loc[fix, "region"].astype("object").fillna("").astype(str)
            costed.loc[fix, "key"] = costed.loc[fix, "key"] + "@" + region
        costed = costed[costed["known"]].drop_duplicates(["rule_id", "key"])
        rows = []
        if plan is not None:
            saved = plan.savings()
            parts = [("deletable now", saved["deletable_now"]), ("blocked", saved["blocked"])]
            parts += [(f"blocked until {d['date']}", {**d, "unpriced": 0})
                      for d in saved["blocked"]["until_date"]]
            if saved["blocked"]["until_date"]:
                parts.append(("blocked, no date", saved["blocked"]["undated"]))
            rows += [{"section": "savings", "key": key, "monthly_cost": part["monthly_cost"],
                      "priced": part["resources"] - part["unpriced"],
                      "unpriced": part["unpriced"], "unpriced_gb": np.nan}
                     for key, part in parts]
        for rule_id, group in costed.groupby("rule_id", sort=True):
            rows.append({"section": "savings by rule", "key": rule_id,
                         "monthly_cost": round(float(group["cost"].sum()), 4),
                         "priced": int(group["cost"].notna().sum()),
                         "unpriced": int(group["cost"].isna().sum()), "unpriced_gb": np.nan})
        frame = pd.DataFrame(rows, columns=["section", "key", "monthly_cost", "priced", "unpriced",
                                            "unpriced_gb"])
        return frame.assign(currency=self.currency, basis=self.basis)[TOTAL_COLUMNS]


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
    not_billed = lines["not_billed"].to_numpy(dtype=bool)
    status = np.select(
        [not_billed, size_missing, price.isna()],
        ["not billed: billed through its source (Shallow replication makes no copies)",
         "unpriced: disk size or replica count not recorded",
         "unpriced: no price for " + lines["storage_type"].astype(str) + " in "
         + lines["region"].astype(str) + " (nor a * row)"], "priced")
    basis = ("provisioned size, an upper bound" if occupancy is None
             else f"occupancy {ratio:g} of provisioned size")
    assumptions = (basis + np.where(priced["wildcard"], "; region has no price row: * row used",
                                    "") + lines["note"])
    cost = (billed * price).where(status == "priced").round(6)
    lines = lines.drop(columns=["note", "price_as", "not_billed"]).assign(
        occupancy=ratio, billed_gb=billed.where(~not_billed, 0.0),
        price_per_gb_month=price, currency=currency,
        monthly_cost=cost.where(~not_billed, 0.0), status=status,
        price_row=priced["price_row"], assumptions=assumptions)
    standard = _price(lines.assign(price_as="Standard_LRS"), prices)["price_per_gb_month"]
    return Cost(lines=lines[["id"] + LINE_COLUMNS], currency=currency, occupancy=occupancy,
                standard_prices=standard.astype(float))


NOT_BILLED = "not billed"
