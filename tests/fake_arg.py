"""A fake Azure Resource Graph (and ARM GET) server on loopback for the collector tests.

It speaks the REST protocol the real SDK uses: POST /providers/Microsoft.ResourceGraph/resources
with {subscriptions|managementGroups, query, options{$top,$skipToken,resultFormat}} answered by
{totalRecords, count, resultTruncated, $skipToken?, data, facets}; a per-user request quota per
window with the x-ms-user-quota-* headers and 429 when it is spent; and scripted faults. It
evaluates just enough of the query text to be honest: the `type =~` / `in~` filter, the table
(`resources` / `resourcecontainers`), `isnotempty(path)` conditions, `summarize x = count()
by subscriptionId` and a `project` list,
including `x = pack('k', properties.k)`.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ARG_PATH = "/providers/microsoft.resourcegraph/resources"
INSTANCE = "microsoft.compute/virtualmachinescalesets/virtualmachines"
VERSION_PATH = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.compute/galleries/[^/]+"
    r"/images/[^/]+/versions/[^/]+$"
)
GALLERY_PATH = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.compute/galleries/[^/]+$"
)
MARKETPLACE_PATH = re.compile(
    r"^/subscriptions/[^/]+/providers/microsoft\.compute/locations/(?P<location>[^/]+)"
    r"/publishers/[^/]+/artifacttypes/vmimage/offers/[^/]+/skus/[^/]+/versions/[^/]+$"
)
LOCKS_PATH = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.authorization/locks$")


@dataclass
class Fault:
    """A scripted answer: `kind` is one of 429, 429-bare (no Retry-After), 500, drop,
    malformed, truncated, 401, 403, 400 (a rejected $skipToken), wrong-shape (valid JSON, but
    `data` is not a list of rows), slow (answers after `delay` seconds); misbehaviours of a
    page that looks fine: skip-ahead (its $skipToken skips a page), short-page (half the rows,
    the token after the whole page), drift (totalRecords one more than there is), endless (a
    new $skipToken on every page, past the end too), quota-spent (headers say no request
    left for ten hours), trickle (the body one byte every `delay` seconds); it applies to
    the next `times` requests that `when` accepts."""

    kind: str
    times: int = 1
    when: object = None  # callable(body: dict, path: str) -> bool
    retry_after: str = "1"
    delay: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    params: dict
    body: dict | None
    status: int = 0


def timespan(seconds: float, fractional: bool) -> str:
    """Format like .NET TimeSpan ("c"): hh:mm:ss[.fffffff]."""
    seconds = max(0.0, seconds)
    whole = int(seconds)
    text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    if fractional:
        text += f".{int(round((seconds - whole) * 1e7)):07d}"[:8]
    return text


@dataclass
class FakeArg:
    """The fake server. `resources` are ARM-shaped rows; `subscriptions` maps id -> display
    name; `management_groups` maps a group -> its subscription ids. `forbidden` subscriptions
    answer 403 when a request names them; `hidden` ones are simply invisible (as Resource
    Graph does for subscriptions the caller cannot read)."""

    resources: list = field(default_factory=list)
    subscriptions: dict = field(default_factory=dict)
    management_groups: dict = field(default_factory=dict)
    quota: int = 15
    window: float = 5.0
    quota_headers: bool = True
    fractional_reset: bool = True
    latency: float = 0.0
    forbidden: set = field(default_factory=set)
    hidden: set = field(default_factory=set)
    forbidden_groups: set = field(default_factory=set)
    replication: dict = field(default_factory=dict)
    sharing_groups: dict = field(default_factory=dict)  # gallery id (lower) -> groups[]
    # Marketplace image versions: lower-cased GET path -> imageDeprecationStatus (absent: 404)
    marketplace: dict = field(default_factory=dict)
    locks: dict = field(default_factory=dict)  # subscription (lower) -> lock objects
    lock_page_size: int = 2
    api_version: str = "2024-04-01"
    quota_values: tuple | None = None  # (remaining, resets-after) sent verbatim, even malformed

    def __post_init__(self):
        self.faults: list[Fault] = []
        self.log: list[Request] = []
        self.throttled = 0
        self._lock = threading.Lock()
        # One quota window for Resource Graph queries and one for ARM GETs: Azure counts them
        # apart (Resource Graph's per-user quota; ARM's own read limits).
        self._windows = {"query": [None, 0], "get": [None, 0]}
        self._index: dict[str, dict[str, list]] = {}
        self._by_id = {}
        self._cache = {}
        for row in self.resources:
            sub = row["subscriptionId"].lower()
            by_type = self._index.setdefault(row["type"].lower(), {})
            by_type.setdefault(sub, []).append(row)
            self._by_id[row["id"].lower()] = row
        for by_sub in self._index.values():
            for rows in by_sub.values():
                rows.sort(key=lambda r: r["id"].lower())
        self._server = None

    # -- life cycle -------------------------------------------------------------------------
    def __enter__(self):
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_fault(self, kind, times=1, when=None, retry_after="1", delay=0.0):
        self.faults.append(Fault(kind, times, when, retry_after, delay))

    # -- quota ------------------------------------------------------------------------------
    def _take_quota(self, kind: str = "query"):
        """Count one request of `kind` (query or get) in a fixed window that starts at the
        first request after the last one ran out; return (allowed, remaining, seconds until
        reset)."""
        with self._lock:
            now = time.monotonic()
            window = self._windows[kind]
            if window[0] is None or now >= window[0] + self.window:
                window[0], window[1] = now, 0
            resets = window[0] + self.window - now
            if window[1] >= self.quota:
                self.throttled += 1
                return False, 0, resets
            window[1] += 1
            return True, self.quota - window[1], resets

    def _next_fault(self, body, path):
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.when is None or fault.when(body or {}, path)):
                    fault.times -= 1
                    return fault
        return None

    # -- query evaluation -------------------------------------------------------------------
    def visible(self, body) -> tuple[list[str] | None, str | None]:
        """The subscriptions a request covers, or an error message for a 403."""
        if body.get("subscriptions"):
            asked = [s.lower() for s in body["subscriptions"]]
            denied = [s for s in asked if s in {f.lower() for f in self.forbidden}]
            if denied:
                return None, f"The client does not have authorization over scope {denied[0]}"
            return [s for s in asked if s in self._known() and s not in self._hidden()], None
        if body.get("managementGroups"):
            subs = []
            for group in body["managementGroups"]:
                if group in self.forbidden_groups:
                    return None, f"The client does not have authorization over group {group}"
                subs += [s.lower() for s in self.management_groups.get(group, [])]
        else:
            subs = list(self._known())
        return [s for s in subs if s not in self._hidden() and s not in self._forbidden()], None

    def _known(self):
        return {s.lower() for s in self.subscriptions}

    def _hidden(self):
        return {s.lower() for s in self.hidden}

    def _forbidden(self):
        return {s.lower() for s in self.forbidden}

    def evaluate(self, query: str, subs: list[str]) -> list[dict]:
        key = (query, tuple(sorted(subs)))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        table = query.strip().split("|")[0].strip().lower()
        if table == "resourcecontainers":
            names = {k.lower(): v for k, v in self.subscriptions.items()}
            rows = [
                {
                    "id": f"/subscriptions/{s}",
                    "name": names[s],
                    "type": "microsoft.resources/subscriptions",
                    "subscriptionId": s,
                    "properties": {"state": "Enabled"},
                }
                for s in sorted(subs)
                if s in names
            ]
        else:
            rows = []
            # Uniform scale-set instances are in `computeresources` only.
            in_table = (lambda kind: kind == INSTANCE) if table == "computeresources" \
                else (lambda kind: kind != INSTANCE)
            for kind in filter(in_table, query_types(query)):
                by_sub = self._index.get(kind, {})
                for s in subs:
                    rows += by_sub.get(s, [])
            for path in re.findall(r"isnotempty\(([\w.]+)\)", query):
                rows = [r for r in rows if _dig(r, path.split("."))]
            rows.sort(key=lambda r: r["id"].lower())
            summary = re.search(r"summarize\s+(\w+)\s*=\s*count\(\)\s+by\s+subscriptionId", query)
            if summary:
                counts = Counter(r["subscriptionId"] for r in rows)
                rows = [{"subscriptionId": s, summary.group(1): n} for s, n in sorted(counts.items())]
        with self._lock:
            self._cache[key] = rows
        return rows

    def version(self, path: str):
        row = self._by_id.get(path.lower())
        if row is None:
            return None
        status = self.replication.get(row["id"].lower())
        if status is None:
            regions = row["properties"].get("publishingProfile", {}).get("targetRegions", [])
            summary = [
                {"region": r["name"], "state": "Completed", "details": "", "progress": 100} for r in regions
            ]
            status = {"aggregatedState": "Completed", "summary": summary}
        properties = dict(row["properties"], replicationStatus=status)
        return {
            "id": row["id"],
            "name": row["name"],
            "type": "Microsoft.Compute/galleries/images/versions",
            "location": row["location"],
            "tags": row.get("tags", {}),
            "properties": properties,
        }


def query_types(query: str) -> list[str]:
    """The resource types a query's `type =~ '...'` or `type in~ (...)` filter selects."""
    match = re.search(r"\btype\s*=~\s*'([^']+)'", query, re.I)
    if match:
        return [match.group(1).lower()]
    match = re.search(r"\btype\s+in~\s*\(([^)]*)\)", query, re.I)
    if match:
        return [t.lower() for t in re.findall(r"'([^']+)'", match.group(1))]
    return []


def project(rows: list[dict], query: str) -> list[dict]:
    """Apply the last `project` clause: plain columns, and `x = pack('k', properties.k, ...)`."""
    clauses = [c.strip() for c in query.split("|") if c.strip().lower().startswith("project ")]
    if not clauses:
        return rows
    columns = []
    for part in re.split(r",(?![^()]*\))", clauses[-1][len("project ") :]):
        name, _, expr = (x.strip() for x in part.partition("="))
        packed = re.match(r"pack\((.*)\)$", expr)
        if packed:
            args = [a.strip() for a in packed.group(1).split(",")]
            keys = [a.strip("'") for a in args[0::2]]
            paths = [a.split(".") for a in args[1::2]]
            columns.append((name, list(zip(keys, paths, strict=True))))
        else:
            columns.append((name, None))
    out = []
    for row in rows:
        new = {}
        for name, packed in columns:
            if packed is None:
                if name in row:
                    new[name] = row[name]
            else:
                new[name] = {key: _dig(row, path) for key, path in packed}
        out.append(new)
    return out


def _dig(row, path):
    for step in path:
        row = row.get(step) if isinstance(row, dict) else None
    return row


def _token(offset: int, top: int, key: str) -> str:
    raw = json.dumps({"o": offset, "n": top, "k": key}).encode()
    return base64.b64encode(raw).decode()


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeArg
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def do_POST(self):
        self._handle("POST")

    def do_GET(self):
        self._handle("GET")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")

    def _handle(self, method):
        fake = self.server_fake
        body = self._read_body()
        url = urlsplit(self.path)
        record = Request(method, url.path, parse_qs(url.query), body)
        with fake._lock:
            fake.log.append(record)
        is_query = method == "POST" and url.path.lower() == ARG_PATH
        is_gallery = method == "GET" and bool(GALLERY_PATH.match(url.path.lower()))
        is_market = method == "GET" and bool(MARKETPLACE_PATH.match(url.path.lower()))
        is_locks = method == "GET" and bool(LOCKS_PATH.match(url.path.lower()))
        is_get = is_gallery or is_market or is_locks \
            or (method == "GET" and bool(VERSION_PATH.match(url.path.lower())))
        if not (is_query or is_get):
            return self._send(record, 405, {"error": {"code": "MethodNotAllowed"}}, {})
        if is_query and record.params.get("api-version") != [fake.api_version]:
            return self._send(record, 400, {"error": {"code": "UnsupportedApiVersion"}}, {})
        allowed, remaining, resets = fake._take_quota("query" if is_query else "get")
        headers = {}
        if fake.quota_headers:
            headers = {
                "x-ms-user-quota-remaining": str(remaining),
                "x-ms-user-quota-resets-after": timespan(resets, fake.fractional_reset),
            }
            if fake.quota_values is not None:
                headers = dict(zip(headers, fake.quota_values, strict=True))
        if not allowed:
            error = {"error": {"code": "RateLimiting", "message": "Too many requests."}}
            return self._send(record, 429, error, headers)
        if fake.latency:
            time.sleep(fake.latency)
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            return self._send(record, 401, {"error": {"code": "AuthenticationFailed"}}, headers)
        fault = fake._next_fault(body, url.path)
        if fault is not None and self._fault(record, fault, headers):
            return
        if is_gallery:
            return self._gallery(record, url, headers)
        if is_market:
            return self._marketplace(record, url, headers)
        if is_locks:
            return self._locks(record, url, headers)
        if is_get:
            return self._version(record, url, headers)
        return self._query(record, body, headers, fault)

    def _fault(self, record, fault, headers) -> bool:
        kind = fault.kind
        if kind == "429":
            error = {"error": {"code": "RateLimiting", "message": "Too many requests."}}
            return self._send(record, 429, error, dict(headers, **{"Retry-After": fault.retry_after}))
        if kind == "429-bare":
            error = {"error": {"code": "RateLimiting", "message": "Too many requests."}}
            return self._send(record, 429, error, headers)
        if kind == "500":
            return self._send(record, 500, {"error": {"code": "InternalServerError"}}, headers)
        if kind == "401":
            error = {"error": {"code": "InvalidAuthenticationToken", "message": "Token expired."}}
            return self._send(record, 401, error, headers)
        if kind == "403":
            error = {"error": {"code": "AuthorizationFailed", "message": "Denied by script."}}
            return self._send(record, 403, error, headers)
        if kind == "400":
            error = {"error": {"code": "BadRequest", "message": "The $skipToken is invalid."}}
            return self._send(record, 400, error, headers)
        if kind == "wrong-shape":
            answer = {"totalRecords": 5, "count": 1, "data": {"id": "not a list"}}
            return self._send(record, 200, answer, headers)
        if kind == "slow":
            time.sleep(fault.delay)
            return False  # then the real answer, late
        if kind == "quota-spent":
            headers.update({"x-ms-user-quota-remaining": "0",
                            "x-ms-user-quota-resets-after": "10:00:00"})
            return False  # the real answer, with those headers
        if kind == "truncated":
            answer = {"totalRecords": 5000, "count": 0, "resultTruncated": "true", "data": []}
            return self._send(record, 200, dict(answer, facets=[]), headers)
        if kind == "malformed":
            record.status = 200
            payload = b'{"totalRecords": 5, "count": 5, "data": [{"id": "/subscriptions/'
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return True
        if kind == "drop":
            record.status = -1
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        return False

    def _query(self, record, body, headers, fault=None):
        fake = self.server_fake
        misbehaviour = fault.kind if fault is not None else None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return self._send(record, 400, {"error": {"code": "BadRequest"}}, headers)
        subs, denied = fake.visible(body)
        if denied:
            error = {"error": {"code": "AuthorizationFailed", "message": denied}}
            return self._send(record, 403, error, headers)
        query = body["query"]
        rows = fake.evaluate(query, subs)
        options = body.get("options") or {}
        key = str(hash((query, tuple(sorted(subs)))))
        offset, top = 0, min(int(options.get("$top") or 1000), 1000)
        if options.get("$skipToken"):
            state = json.loads(base64.b64decode(options["$skipToken"]))
            if state["k"] != key:
                return self._send(record, 400, {"error": {"code": "BadSkipToken"}}, headers)
            offset, top = state["o"], state["n"]
        page = rows[offset : offset + top]
        if misbehaviour == "short-page":
            page = page[: len(page) // 2]
        projected = bool(re.search(r"\bproject\b[^|]*\bid\b", query))
        answer = {
            "totalRecords": len(rows) + (1 if misbehaviour == "drift" else 0),
            "count": len(page),
            "resultTruncated": "false",
            "facets": [],
            "data": project(page, query),
        }
        following = offset + top + (top if misbehaviour == "skip-ahead" else 0)
        if offset + top < len(rows) or (misbehaviour == "endless" and projected):
            if projected:
                answer["$skipToken"] = _token(following, top, key)
            else:
                answer["resultTruncated"] = "true"
        trickle = fault.delay if misbehaviour == "trickle" else None
        return self._send(record, 200, answer, headers, trickle)

    def _version(self, record, url, headers):
        params = parse_qs(url.query)
        if not params.get("api-version"):
            return self._send(record, 400, {"error": {"code": "MissingApiVersion"}}, headers)
        body = self.server_fake.version(url.path)
        if body is None:
            return self._send(record, 404, {"error": {"code": "ResourceNotFound"}}, headers)
        if params.get("$expand") != ["ReplicationStatus"]:
            body = dict(body, properties={**body["properties"]})
            body["properties"].pop("replicationStatus", None)
        return self._send(record, 200, body, headers)

    def _gallery(self, record, url, headers):
        """A gallery as ARM answers it; its direct-share groups only with
        $expand=sharingProfile/Groups."""
        params = parse_qs(url.query)
        if not params.get("api-version"):
            return self._send(record, 400, {"error": {"code": "MissingApiVersion"}}, headers)
        fake = self.server_fake
        row = fake._by_id.get(url.path.lower())
        if row is None:
            return self._send(record, 404, {"error": {"code": "ResourceNotFound"}}, headers)
        properties = dict(row.get("properties") or {})
        profile = dict(properties.get("sharingProfile") or {})
        if params.get("$expand") == ["sharingProfile/Groups"]:
            profile["groups"] = fake.sharing_groups.get(row["id"].lower(), [])
        properties["sharingProfile"] = profile
        body = {"id": row["id"], "name": row["name"], "type": "Microsoft.Compute/galleries",
                "location": row["location"], "properties": properties}
        return self._send(record, 200, body, headers)

    def _marketplace(self, record, url, headers):
        """A Marketplace image version as Virtual Machine Images - Get answers it (Id with
        capitalised segments); 404 for a version the fake does not hold."""
        if record.params.get("api-version") != ["2024-07-01"]:
            return self._send(record, 400, {"error": {"code": "InvalidApiVersionParameter"}},
                              headers)
        status = self.server_fake.marketplace.get(url.path.lower())
        if status is None:
            error = {"error": {"code": "NotFound", "message": "Artifact: VMImage was not found."}}
            return self._send(record, 404, error, headers)
        parts = url.path.strip("/").split("/")
        body = {"id": "/" + "/".join(p[:1].upper() + p[1:] if i % 2 == 0 else p
                                     for i, p in enumerate(parts)),
                "location": MARKETPLACE_PATH.match(url.path.lower())["location"],
                "name": parts[-1],
                "properties": {"architecture": "x64", "hyperVGeneration": "V2",
                               "osDiskImage": {"operatingSystem": "Linux"},
                               "imageDeprecationStatus": status}}
        return self._send(record, 200, body, headers)

    def _locks(self, record, url, headers):
        """Management Locks - List At Subscription Level, `lock_page_size` locks a page with
        a nextLink ($skiptoken) to the rest."""
        if record.params.get("api-version") != ["2016-09-01"]:
            return self._send(record, 400, {"error": {"code": "InvalidApiVersionParameter"}},
                              headers)
        fake = self.server_fake
        locks = fake.locks.get(LOCKS_PATH.match(url.path.lower())["sub"], [])
        start = int((record.params.get("$skiptoken") or ["0"])[0])
        page = {"value": locks[start:start + fake.lock_page_size]}
        if start + fake.lock_page_size < len(locks):
            page["nextLink"] = (f"{fake.endpoint}{url.path}?api-version=2016-09-01"
                                f"&$skiptoken={start + fake.lock_page_size}")
        return self._send(record, 200, page, headers)

    def _send(self, record, status, payload, headers, trickle=None) -> bool:
        record.status = status
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            if trickle is None:
                self.wfile.write(data)
            for at in range(len(data) if trickle is not None else 0):  # a byte at a time
                self.wfile.write(data[at : at + 1])
                self.wfile.flush()
                time.sleep(trickle)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client gave up waiting (a timeout test)
        return True


def subscription_id(index: int) -> str:
    return f"{index:08x}-0000-4000-8000-{index:012x}"


def estate(subscriptions: int = 3, vms: int = 10, versions: int = 3,
           instances: int = 0) -> tuple[list, dict]:
    """A small deterministic estate in Resource Graph row shape: per subscription one gallery
    with two image definitions and `versions` versions each, a managed image, `vms` VMs (half
    on a pinned gallery version with their OS disk, half on a marketplace image), a scale set
    with `instances` Uniform instances (`computeresources` rows: every third on an older
    version and not on the latest model)."""
    rows, names = [], {}
    for s in range(subscriptions):
        sub = subscription_id(s + 1)
        names[sub] = f"sub-{s + 1:04d}"
        rg = f"/subscriptions/{sub}/resourceGroups/rg-images"
        base = dict(subscriptionId=sub, resourceGroup="rg-images", location="eastus")
        gallery = f"{rg}/providers/Microsoft.Compute/galleries/gal{s + 1}"
        rows.append(
            dict(
                base,
                id=gallery,
                name=f"gal{s + 1}",
                type="microsoft.compute/galleries",
                tags={"team": "platform"},
                properties={"identifier": {"uniqueName": sub}},
            )
        )
        version_ids = []
        for d in ("linux", "windows"):
            definition = f"{gallery}/images/{d}"
            rows.append(
                dict(
                    base,
                    id=definition,
                    name=f"gal{s + 1}/{d}",
                    type="microsoft.compute/galleries/images",
                    tags={},
                    properties={
                        "osType": d.title(),
                        "osState": "Generalized",
                        "hyperVGeneration": "V2",
                        "identifier": {"publisher": "contoso", "offer": d, "sku": "1"},
                    },
                )
            )
            for v in range(versions):
                version = f"{definition}/versions/1.0.{v}"
                version_ids.append(version)
                regions = [
                    {
                        "name": "East US",
                        "regionalReplicaCount": 1,
                        "storageAccountType": "Standard_LRS",
                    },
                    {
                        "name": "West Europe",
                        "regionalReplicaCount": 2,
                        "storageAccountType": "Standard_ZRS",
                    },
                ]
                rows.append(
                    dict(
                        base,
                        id=version,
                        name=f"gal{s + 1}/{d}/1.0.{v}",
                        type="microsoft.compute/galleries/images/versions",
                        tags={},
                        properties={
                            "publishingProfile": {
                                "targetRegions": regions,
                                "replicaCount": 1,
                                "publishedDate": f"2024-0{v + 1}-01T00:00:00Z",
                                "storageAccountType": "Standard_LRS",
                            },
                            "storageProfile": {"osDiskImage": {"sizeInGB": 30}},
                            "provisioningState": "Succeeded",
                        },
                    )
                )
        rows.append(
            dict(
                base,
                id=f"{rg}/providers/Microsoft.Compute/images/legacy{s + 1}",
                name=f"legacy{s + 1}",
                type="microsoft.compute/images",
                tags={},
                properties={
                    "storageProfile": {
                        "osDisk": {"osType": "Linux", "osState": "Generalized", "diskSizeGB": 30}
                    }
                },
            )
        )
        vm_rg = f"/subscriptions/{sub}/resourceGroups/rg-apps"
        vm_base = dict(base, resourceGroup="rg-apps")
        for m in range(vms):
            vm = f"{vm_rg}/providers/Microsoft.Compute/virtualMachines/vm{m:06d}"
            if m % 2 == 0:
                version = version_ids[m % len(version_ids)]
                image = {"id": version}
                disk_source = {
                    "createOption": "FromImage",
                    "galleryImageReference": {"id": version},
                }
            else:
                image = {
                    "publisher": "Canonical",
                    "offer": "ubuntu-24_04-lts",
                    "sku": "server",
                    "version": "latest",
                }
                disk_source = {
                    "createOption": "FromImage",
                    "imageReference": {
                        "id": "/Subscriptions/x/Providers/"
                        "Microsoft.Compute/Locations/eastus/"
                        "Publishers/Canonical"
                    },
                }
            rows.append(
                dict(
                    vm_base,
                    id=vm,
                    name=f"vm{m:06d}",
                    type="microsoft.compute/virtualmachines",
                    tags={"team": "apps"},
                    properties={
                        "storageProfile": {"imageReference": image, "osDisk": {"osType": "Linux"}},
                        "extended": {"instanceView": {"powerState": {"code": "PowerState/running"}}},
                    },
                )
            )
            rows.append(
                dict(
                    vm_base,
                    id=f"{vm_rg}/providers/Microsoft.Compute/disks/vm{m:06d}_os",
                    name=f"vm{m:06d}_os",
                    type="microsoft.compute/disks",
                    managedBy=vm,
                    properties={"osType": "Linux", "diskSizeGB": 30, "creationData": disk_source},
                )
            )
        rows.append(
            dict(
                vm_base,
                id=f"{vm_rg}/providers/Microsoft.Compute/virtualMachineScaleSets/ss",
                name="ss",
                type="microsoft.compute/virtualmachinescalesets",
                sku={"name": "Standard_D2s_v3", "capacity": 3},
                tags={},
                properties={
                    "virtualMachineProfile": {"storageProfile": {"imageReference": {"id": version_ids[0]}}}
                },
            )
        )
        scale_set = f"{vm_rg}/providers/Microsoft.Compute/virtualMachineScaleSets/ss"
        for i in range(instances):
            ran = version_ids[1] if i % 3 == 2 else version_ids[0]
            rows.append(
                dict(
                    vm_base,
                    id=f"{scale_set}/virtualMachines/{i}",
                    name=f"ss_{i}",
                    type=INSTANCE,
                    tags={},
                    properties={
                        "latestModelApplied": i % 3 != 2,
                        "storageProfile": {
                            "imageReference": {"id": ran, "exactVersion": ran.rsplit("/", 1)[1]},
                            "osDisk": {"osType": "Linux"}},
                        "extended": {"instanceView": {"powerState": {"code": "PowerState/running"}}},
                    },
                )
            )
    return rows, names
