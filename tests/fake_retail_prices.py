"""A loopback stand-in for the Azure Retail Prices API: the real response shape, paging by
NextPageLink, and the API's case-sensitive matching of $filter values."""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def item(region, product, meter, price, currency="USD", effective="2024-03-01T00:00:00Z",
         unit="1 GB/Month", kind="Consumption"):
    """One price item as the API returns it."""
    return {"currencyCode": currency, "tierMinimumUnits": 0.0, "retailPrice": price,
            "unitPrice": price, "armRegionName": region, "location": region.title(),
            "effectiveStartDate": effective, "meterId": f"meter-{region}-{meter}",
            "meterName": meter, "productId": "DZH318Z0BP04", "skuId": "DZH318Z0BP04/00C1",
            "productName": product, "skuName": meter.split()[0], "serviceName": "Storage",
            "serviceId": "DZH317F1HKN0", "serviceFamily": "Storage", "unitOfMeasure": unit,
            "type": kind, "isPrimaryMeterRegion": True, "armSkuName": ""}


CATALOGUE = [
    item("westeurope", "Standard HDD Managed Disks", "LRS Snapshots", 0.05),
    item("westeurope", "Standard HDD Managed Disks", "ZRS Snapshots", 0.0625),
    item("westeurope", "Premium SSD Managed Disks", "LRS Snapshots", 0.145),
    item("westeurope", "Premium SSD Managed Disks", "LRS Snapshots", 0.13,
         effective="2022-01-01T00:00:00Z"),
    item("eastus", "Standard HDD Managed Disks", "LRS Snapshots", 0.045),
    item("eastus", "Premium SSD Managed Disks", "LRS Snapshots", 0.12),
    item("eastus", "Standard HDD Managed Disks", "LRS Snapshots", 0.04, unit="1/Month"),
    item("eastus", "Standard HDD Managed Disks", "LRS Snapshots", 0.0, kind="Reservation"),
]


class Server:
    """Serves CATALOGUE (or `items`) `page_size` items a page; records every request."""

    def __init__(self, items=None, page_size=3, status=200):
        self.items = CATALOGUE if items is None else items
        self.page_size, self.status, self.requests = page_size, status, []

    def matching(self, query: dict) -> list[dict]:
        text = query.get("$filter", [""])[0]
        pairs = re.findall(r"(\w+) eq '([^']*)'", text)
        if ("serviceName", "Storage") not in pairs:  # values match case-sensitively
            return []
        items = [i for i in self.items if i["serviceName"] == "Storage"]
        for field in ("meterName", "armRegionName"):
            wanted = {v for k, v in pairs if k == field}
            if wanted:
                items = [i for i in items if i[field] in wanted]
        currency = query.get("currencyCode", ["'USD'"])[0].strip("'")
        return [dict(i, currencyCode=currency) for i in items]

    @contextmanager
    def running(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                query = parse_qs(url.query)
                server.requests.append(query)
                if server.status != 200:
                    self.send_error(server.status)
                    return
                items = server.matching(query)
                skip = int(query.get("$skip", ["0"])[0])
                page = items[skip:skip + server.page_size]
                more = skip + server.page_size < len(items)
                base = f"http://127.0.0.1:{self.server.server_port}{url.path}"
                next_query = url.query.split("&$skip=")[0] + f"&$skip={skip + server.page_size}"
                body = json.dumps({
                    "BillingCurrency": "USD", "CustomerEntityId": "Default",
                    "CustomerEntityType": "Retail", "Items": page,
                    "NextPageLink": f"{base}?{next_query}" if more else None,
                    "Count": len(page)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_port}/api/retail/prices"
        finally:
            httpd.shutdown()
            httpd.server_close()
