"""The price table: the shipped seed, validation, and refresh from a fake Retail Prices API."""

import socket

import pytest

from auditor.cli import main
from auditor.errors import AuditError
from auditor.prices import PRICE_COLUMNS, load_prices, refresh
from tests.fake_retail_prices import Server, item


def test_shipped_table_has_the_known_figures_and_a_star_row_per_type():
    prices = load_prices().set_index(["region", "storage_type"])
    assert prices.loc[("westeurope", "Standard_LRS"), "price_per_gb_month"] == 0.05
    assert prices.loc[("westeurope", "Premium_LRS"), "price_per_gb_month"] == 0.145
    assert prices.loc[("westeurope", "Standard_ZRS"), "meter_name"] == "ZRS Snapshots"
    stars = set(prices.loc["*"].index)
    assert {"Standard_LRS", "Standard_ZRS", "Premium_LRS"} <= stars
    assert (prices["currency"] == "USD").all()


def test_bad_price_names_file_and_row(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(",".join(PRICE_COLUMNS) + "\n"
                    "westeurope,Standard_LRS,USD,cheap,2024-01-01,p,m,s\n")
    with pytest.raises(AuditError, match=r"prices.csv: row 2: price_per_gb_month 'cheap'"):
        load_prices(path)


def test_missing_column_and_duplicate_rows(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("region,storage_type\nwesteurope,Standard_LRS\n")
    with pytest.raises(AuditError, match="lacks column"):
        load_prices(path)
    row = "westeurope,Standard_LRS,USD,0.05,2024-01-01,p,m,s\n"
    path.write_text(",".join(PRICE_COLUMNS) + "\n" + row + row)
    with pytest.raises(AuditError, match="two rows for westeurope/Standard_LRS"):
        load_prices(path)


def test_refresh_follows_pages_and_keeps_latest_gb_month_prices(tmp_path):
    server = Server(page_size=2)
    with server.running() as endpoint:
        path, table = refresh(tmp_path / "prices.csv", "eur", [], endpoint)
    assert len(server.requests) == 4  # 7 matching items, 2 a page
    assert server.requests[0]["currencyCode"] == ["'EUR'"]
    assert "serviceName eq 'Storage'" in server.requests[0]["$filter"][0]
    prices = load_prices(path).set_index(["region", "storage_type"])
    assert (prices["currency"] == "EUR").all()
    assert prices.loc[("westeurope", "Premium_LRS"), "price_per_gb_month"] == 0.145  # newest
    assert prices.loc[("eastus", "Standard_LRS"), "price_per_gb_month"] == 0.045  # GB-month only
    assert prices.loc[("westeurope", "Standard_ZRS"), "price_per_gb_month"] == 0.0625
    assert prices.loc[("*", "Standard_LRS"), "price_per_gb_month"] == 0.05  # highest regional
    assert prices.loc[("westeurope", "StandardSSD_LRS"), "meter_name"] == "LRS Snapshots"


def test_refresh_filters_regions(tmp_path):
    server = Server()
    with server.running() as endpoint:
        _, table = refresh(tmp_path / "prices.csv", "USD", ["East US"], endpoint)
    assert "armRegionName eq 'eastus'" in server.requests[0]["$filter"][0]
    assert set(table["region"]) == {"eastus", "*"}


def test_refresh_cli_replaces_the_table(tmp_path, capsys):
    target = tmp_path / "prices.csv"
    with Server().running() as endpoint, pytest.raises(SystemExit) as info:
        main(["prices", "refresh", "--currency", "EUR", "--endpoint", endpoint,
              "--output", str(target)])
    assert info.value.code == 0
    assert "EUR" in capsys.readouterr().out
    assert load_prices(target)["currency"].eq("EUR").all()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("failure", ["offline", "http-500", "no-items"])
def test_failed_refresh_is_one_line_and_keeps_the_old_table(tmp_path, capsys, failure):
    target = tmp_path / "prices.csv"
    target.write_text("the old table")
    server = Server(status=500) if failure == "http-500" else Server(
        items=[item("westeurope", "Standard HDD Managed Disks", "LRS Disk", 1.0)])
    with server.running() as endpoint, pytest.raises(SystemExit) as info:
        if failure == "offline":
            endpoint = f"http://127.0.0.1:{_closed_port()}/api/retail/prices"
        main(["prices", "refresh", "--endpoint", endpoint, "--output", str(target)])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and err.startswith("image-audit: error: prices refresh:")
    assert target.read_text() == "the old table"
    assert [p.name for p in tmp_path.iterdir()] == ["prices.csv"]
