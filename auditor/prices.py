"""The price table: snapshot storage prices per region and storage type, shipped as CSV and
rebuilt from the Azure Retail Prices API by `image-audit prices refresh`.

Azure bills a gallery replica and a managed image as a full snapshot on its used size. Full
snapshots are stored on Standard HDD or Premium SSD, so each storage account type maps to one
snapshot meter below; a row with region `*` prices regions the table has no row for.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path

import pandas as pd

from auditor.errors import AuditError
from auditor.report import atomic_write

RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"
PRICE_COLUMNS = ["region", "storage_type", "currency", "price_per_gb_month", "effective_date",
                 "product_name", "meter_name", "source"]
ANY_REGION = "*"

# storage account type of a replica or image -> (productName, meterName) of its snapshot meter.
# Standard SSD has no snapshot meter of its own: full snapshots live on Standard HDD or Premium
# SSD, so Standard SSD replicas are priced as Standard HDD snapshots (an assumption, stated on
# every line it prices).
SNAPSHOT_METERS = {
    "Standard_LRS": ("Standard HDD Managed Disks", "LRS Snapshots"),
    "Standard_ZRS": ("Standard HDD Managed Disks", "ZRS Snapshots"),
    "StandardSSD_LRS": ("Standard HDD Managed Disks", "LRS Snapshots"),
    "StandardSSD_ZRS": ("Standard HDD Managed Disks", "ZRS Snapshots"),
    "Premium_LRS": ("Premium SSD Managed Disks", "LRS Snapshots"),
    "Premium_ZRS": ("Premium SSD Managed Disks", "ZRS Snapshots"),
}
MAX_PAGES = 1000


def default_path() -> Path:
    return Path(str(resources.files("auditor.data").joinpath("prices.csv")))


def load_prices(path: Path | None = None) -> pd.DataFrame:
    """The price table, checked: every problem names the file and the row."""
    path = Path(path) if path else default_path()
    try:
        table = pd.read_csv(path, dtype={"region": str, "storage_type": str, "currency": str,
                                         "effective_date": str}, keep_default_na=False)
    except FileNotFoundError:
        raise AuditError(f"{path}: price table not found") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise AuditError(f"{path}: cannot read the price table ({exc})") from None
    missing = [c for c in PRICE_COLUMNS if c not in table.columns]
    if missing:
        raise AuditError(f"{path}: price table lacks column(s) {', '.join(missing)}")
    prices = pd.to_numeric(table["price_per_gb_month"], errors="coerce")
    bad = prices.isna() | (prices < 0)
    if bad.any():
        row = int(bad.idxmax()) + 2
        raise AuditError(f"{path}: row {row}: price_per_gb_month "
                         f"{table['price_per_gb_month'][bad.idxmax()]!r} is not a price")
    if table["currency"].nunique() > 1:
        raise AuditError(f"{path}: one currency per table, found "
                         f"{', '.join(sorted(table['currency'].unique()))}")
    table["price_per_gb_month"] = prices
    table["region"] = table["region"].str.lower().str.replace(" ", "", regex=False)
    duplicated = table.duplicated(["region", "storage_type"])
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise AuditError(f"{path}: two rows for {row['region']}/{row['storage_type']}")
    return table[PRICE_COLUMNS]


# --- refresh from the Retail Prices API -----------------------------------------------------

def _filter(regions: list[str]) -> str:
    """OData filter; the API compares values case-sensitively, so they are spelled as Azure does."""
    meters = " or ".join(f"meterName eq '{m}'" for m in sorted({m for _, m in
                                                               SNAPSHOT_METERS.values()}))
    text = f"serviceName eq 'Storage' and priceType eq 'Consumption' and ({meters})"
    if regions:
        text += " and (" + " or ".join(f"armRegionName eq '{r}'" for r in regions) + ")"
    return text


def _get(url: str, timeout: float) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise AuditError(f"prices refresh: {url.split('?')[0]} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AuditError(f"prices refresh: cannot reach {url.split('?')[0]} ({reason})") from None
    except ValueError:
        raise AuditError(f"prices refresh: {url.split('?')[0]} did not answer JSON") from None


def fetch_items(endpoint: str, currency: str, regions: list[str], timeout: float = 30) -> list[dict]:
    """Every item of every page (following NextPageLink) for the snapshot meters."""
    query = urllib.parse.urlencode({"currencyCode": f"'{currency}'", "$filter": _filter(regions)},
                                   quote_via=urllib.parse.quote)
    url, items = f"{endpoint}?{query}", []
    for _ in range(MAX_PAGES):
        page = _get(url, timeout)
        if not isinstance(page.get("Items"), list):
            raise AuditError("prices refresh: a response without an 'Items' list")
        items += page["Items"]
        url = page.get("NextPageLink")
        if not url:
            return items
    raise AuditError(f"prices refresh: more than {MAX_PAGES} pages; narrow with --regions")


def price_rows(items: list[dict], currency: str) -> pd.DataFrame:
    """Table rows from API items: the latest effective GB-month price of each snapshot meter per
    region, and a `*` row per storage type holding the highest regional price (an upper bound)."""
    frame = pd.DataFrame(items)
    needed = ["armRegionName", "productName", "meterName", "unitOfMeasure", "type",
              "retailPrice", "effectiveStartDate", "tierMinimumUnits"]
    if frame.empty or any(c not in frame.columns for c in needed):
        return pd.DataFrame(columns=PRICE_COLUMNS)
    frame = frame[(frame["unitOfMeasure"] == "1 GB/Month") & (frame["type"] == "Consumption")
                  & (frame["tierMinimumUnits"].fillna(0) == 0) & frame["armRegionName"].ne("")]
    frame = frame.sort_values("effectiveStartDate").drop_duplicates(
        ["armRegionName", "productName", "meterName"], keep="last")
    meters = pd.DataFrame([(t, p, m) for t, (p, m) in SNAPSHOT_METERS.items()],
                          columns=["storage_type", "productName", "meterName"])
    rows = meters.merge(frame, on=["productName", "meterName"])
    table = pd.DataFrame({
        "region": rows["armRegionName"], "storage_type": rows["storage_type"],
        "currency": currency, "price_per_gb_month": rows["retailPrice"].astype(float),
        "effective_date": rows["effectiveStartDate"].astype(str).str[:10],
        "product_name": rows["productName"], "meter_name": rows["meterName"],
        "source": "Azure Retail Prices API"})
    fallback = table.sort_values("price_per_gb_month").drop_duplicates("storage_type", keep="last")
    fallback = fallback.assign(region=ANY_REGION,
                               source="highest regional price, for regions without a row")
    return pd.concat([table, fallback]).sort_values(["region", "storage_type"]).reset_index(
        drop=True)[PRICE_COLUMNS]


def refresh(output: Path | None = None, currency: str = "USD", regions: list[str] | None = None,
            endpoint: str = RETAIL_PRICES_URL, timeout: float = 30) -> tuple[Path, pd.DataFrame]:
    """Rebuild the price table from the API and replace the file atomically; on any failure
    the old table stays as it was."""
    regions = [r.lower().replace(" ", "") for r in regions or []]
    table = price_rows(fetch_items(endpoint, currency.upper(), regions, timeout), currency.upper())
    if table.empty:
        raise AuditError("prices refresh: the API returned no snapshot prices for "
                         f"{currency.upper()} {', '.join(regions) or 'in any region'}")
    path = Path(output) if output else default_path()
    atomic_write(path, lambda temporary: table.to_csv(temporary, index=False))
    return path, table
