"""Collect an image estate from Azure Resource Graph into a snapshot.

Read-only by construction: the only requests that leave are POSTs of queries to Resource
Graph and GETs to ARM (a pipeline policy refuses anything else). Completeness is evidence:
a subscription that is denied or keeps failing lands in the `scope` table and the manifest's
gaps; it is never skipped silently, and nothing is written when nothing could be collected.

Pacing and retries are ours, not the SDK's: Resource Graph's 429s may carry no Retry-After
(which the SDK needs to retry a POST), and counting every request we send is what lets the
pacer spend the per-user quota (`x-ms-user-quota-*` headers) without running into 429.
"""

from __future__ import annotations

import ipaddress
import itertools
import queue
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import orjson
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
    map_error,
)
from azure.core.pipeline import policies
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from urllib3.util.retry import Retry

from auditor import __version__
from auditor.errors import AuditError
from auditor.importer import parse_json
from auditor.spill import RowSpill, page_lines

CLOUDS = {
    "public": "https://management.azure.com",
    "china": "https://management.chinacloudapi.cn",
    "usgov": "https://management.usgovcloudapi.net",
}
API_VERSION = "2024-04-01"  # the SDK would send 2021-03-01
COMPUTE_API_VERSION = "2024-03-03"
MARKETPLACE_API_VERSION = "2024-07-01"  # Virtual Machine Images - Get, with imageDeprecationStatus
LOCKS_API_VERSION = "2016-09-01"  # Management Locks - List At Subscription Level
MAX_LOCK_PAGES = 20
MAX_MARKETPLACE_GETS = 5000  # distinct (location, URN) read per run; beyond it, a gap
PAGE_SIZE = 1000
BATCH_SIZE = 300  # Microsoft allows 1000 subscriptions a request and suggests fewer than 300
# totalRecords may move while a query is paged (resources created or deleted meanwhile): rows
# received may fall short of the largest total any page announced by this share (at least one
# row) before the shortfall is a gap. Every difference is recorded in the manifest either way.
PAGING_TOLERANCE = 0.001
# Pages in a row that hold no row but still a $skipToken: paging goes nowhere, so it stops.
_EMPTY_PAGES = 3
# The longest wait for Retry-After or for the request quota to reset; a longer one is a gap.
MAX_WAIT = 120.0
QUOTA_REMAINING = "x-ms-user-quota-remaining"
QUOTA_RESETS = "x-ms-user-quota-resets-after"

SIGN_IN_HELP = (
    "no Azure credential worked: sign in with `az login`, or set AZURE_TENANT_ID, "
    "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (service principal) or AZURE_FEDERATED_TOKEN_FILE "
    "(workload identity), or run where a managed identity is assigned"
)

# Rows stay in ARM shape; the query must project `id` or Resource Graph returns no $skipToken.
_ARM_COLUMNS = (
    "id, name, type, location, subscriptionId, resourceGroup, tags, sku, plan, kind, "
    "managedBy, zones, properties"
)
QUERIES = {
    name: f"resources | where type =~ '{kind}' | project {_ARM_COLUMNS}"
    for name, kind in {
        "galleries": "microsoft.compute/galleries",
        "gallery_images": "microsoft.compute/galleries/images",
        "gallery_image_versions": "microsoft.compute/galleries/images/versions",
        "managed_images": "microsoft.compute/images",
        "virtual_machines": "microsoft.compute/virtualmachines",
        "scale_sets": "microsoft.compute/virtualmachinescalesets",
    }.items()
}
# Autoscale settings, trimmed to what says how many machines a scale-out creates at once.
QUERIES["autoscale_settings"] = (
    "resources | where type =~ 'microsoft.insights/autoscalesettings' "
    "| project id, name, type, location, subscriptionId, resourceGroup, "
    "properties = pack('targetResourceUri', properties.targetResourceUri, "
    "'enabled', properties.enabled, 'profiles', properties.profiles)"
)
# OS disks made from a gallery version, trimmed to what tells which version a machine runs.
QUERIES["os_disks"] = (
    "resources | where type =~ 'microsoft.compute/disks' "
    "| where isnotempty(managedBy) and isnotempty(properties.osType) "
    "and isnotempty(properties.creationData.galleryImageReference.id) "
    "| project id, type, managedBy, location, "
    "properties = pack('creationData', properties.creationData)"
)
# Role assignments that may share a gallery: at a subscription or resource group scope (no
# `/providers/` in the scope) or at a gallery, definition or version scope.
QUERIES["role_assignments"] = (
    "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' "
    "| where tostring(properties.scope) !contains '/providers/' "
    "or tostring(properties.scope) contains '/providers/microsoft.compute/galleries/' "
    "| project id, name, type, subscriptionId, resourceGroup, "
    "properties = pack('scope', properties.scope, 'principalId', properties.principalId, "
    "'principalType', properties.principalType, 'roleDefinitionId', properties.roleDefinitionId)"
)
# Instances of Uniform scale sets live in `computeresources`, not `resources` (Flexible
# members are ordinary VMs); trimmed to the model view's image, latestModelApplied and the
# power state.
QUERIES["instances"] = (
    "computeresources | where type =~ 'microsoft.compute/virtualmachinescalesets/virtualmachines' "
    "| project id, name, type, location, subscriptionId, resourceGroup, tags, "
    "properties = pack('storageProfile', properties.storageProfile, "
    "'latestModelApplied', properties.latestModelApplied, 'instanceId', properties.instanceId, "
    "'extended', properties.extended)"
)
# Machines per subscription: lets the machine and disk queries run as several shorter chains
# (subscription groups of about `chain_pages` pages) that together hide each page's latency.
PLAN_QUERY = (
    "resources | where type =~ 'microsoft.compute/virtualmachines' "
    "| summarize machines = count() by subscriptionId"
)
_PLANNED = ("virtual_machines", "os_disks")
# Tables as large as the estate's machines: their rows go to a spill file (see spill.py).
_SPILLED = frozenset({"virtual_machines", "os_disks", "scale_sets", "instances"})
SUBSCRIPTIONS_QUERY = (
    "resourcecontainers | where type =~ 'microsoft.resources/subscriptions' "
    "| project id, name, type, subscriptionId"
)
_VERSION_TYPE = "microsoft.compute/galleries/images/versions"
_VM_TYPE = "microsoft.compute/virtualmachines"
_VMSS_TYPE = "microsoft.compute/virtualmachinescalesets"
_GALLERY_TYPE = "microsoft.compute/galleries"
_GALLERY_ID = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.compute/galleries/([^/]+)$",
    re.IGNORECASE,
)
# The only ARM GETs the collector sends: a gallery (its direct-share groups), an image
# version (its replication status, with --deep), a Marketplace image version (its
# deprecation status, with --marketplace) and a subscription's lock list (with --locks).
_ARM_GETS = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.compute/galleries/[^/]+"
    r"(?:/images/[^/]+/versions/[^/]+)?$"
    r"|^/subscriptions/[^/]+/providers/microsoft\.compute/locations/[^/]+/publishers/[^/]+"
    r"/artifacttypes/vmimage/offers/[^/]+/skus/[^/]+/versions/[^/]+$"
    r"|^/subscriptions/[^/]+/providers/microsoft\.authorization/locks$"
)
_MARKETPLACE_PATH = re.compile(
    r"^/subscriptions/([^/]+)/providers/microsoft\.compute/locations/([^/]+)/publishers/([^/]+)"
    r"/artifacttypes/vmimage/offers/([^/]+)/skus/([^/]+)/versions/([^/]+)$", re.IGNORECASE)
_VERSION_ID = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.compute/"
    r"galleries/([^/]+)/images/([^/]+)/versions/([^/]+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Scope:
    """What to collect: subscriptions and/or management groups; neither means every
    subscription the credential can see."""

    subscriptions: Sequence[str] = ()
    management_groups: Sequence[str] = ()


@dataclass
class Collected:
    """Raw rows in ARM shape plus the evidence of how they were collected: the small tables'
    rows in memory (`kept`), the machine-sized ones as JSON lines in `spill`."""

    kept: list[dict]
    scope: list[dict]
    queries: dict[str, str]
    gaps: list[dict]
    stats: dict
    replicated: int | None = None  # with --deep: versions whose replication status was read
    repaired: list[str] = field(default_factory=list)  # values replaced (lone surrogates)
    spill: RowSpill | None = None

    @property
    def rows(self) -> list[dict]:
        """Every row as an object, in id order: for small collections (tests, tools)."""
        spilled = list(self.spill.parsed()) if self.spill is not None else []
        return sorted(self.kept + spilled, key=lambda row: row["id"].lower())


class _Abandoned(Exception):
    """The collection failed: the snapshot built alongside it is not wanted."""


class _Failure(Exception):
    """A request that was denied, or still failed after its retries."""

    def __init__(self, status: str, detail: str, rejected: bool = False):
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.rejected = rejected  # a 4xx answer to this very request (a bad $skipToken...)


# --- endpoint and HTTP plumbing ---------------------------------------------------------------


def check_endpoint(endpoint: str) -> tuple[str, bool]:
    """The endpoint without a trailing slash, and whether it is plain http to loopback (the
    only place plain http is allowed: a local test server)."""
    parts = urlsplit(endpoint)
    if parts.scheme == "https" and parts.hostname:
        return endpoint.rstrip("/"), False
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return endpoint.rstrip("/"), True
        raise AuditError(f"{endpoint}: plain http is allowed only to a loopback address; use https")
    raise AuditError(f"{endpoint}: not an http(s) URL")


class _ReadOnlyPolicy(policies.SansIOHTTPPolicy):
    """Refuse any request but a Resource Graph query POST or one of the ARM GETs above."""

    def on_request(self, request):
        http = request.http_request
        path = urlsplit(http.url).path.lower().rstrip("/")
        query_post = http.method == "POST" and path == "/providers/microsoft.resourcegraph/resources"
        if not (query_post or (http.method == "GET" and _ARM_GETS.match(path))):
            raise AuditError(f"refusing to send {http.method} {path}: image-audit is read-only")


class _DecodePolicy(policies.ContentDecodePolicy):
    """The SDK's JSON decoding, except for a successful answer asked for as bytes
    (`raw_body=True`): a Resource Graph page is read by orjson and becomes JSON lines, never
    Python's json objects and the SDK's models row by row."""

    def on_request(self, request):
        request.context["raw_body"] = request.context.options.pop("raw_body", False)
        super().on_request(request)

    def on_response(self, request, response):
        if request.context.get("raw_body") and response.http_response.status_code == 200:
            return
        super().on_response(request, response)


ANSWER_READ_BYTES = 1 << 20


def paging_tolerance(total: int) -> int:
    """Rows a query chain may fall short of totalRecords without a gap (see PAGING_TOLERANCE)."""
    return max(1, int(total * PAGING_TOLERANCE))


class _WholeAnswerAdapter(requests.adapters.HTTPAdapter):
    """Bounds the whole body of an answer, not each read: a server that sends a byte at a time
    never trips a per-read timeout. Once the headers are in, a timer cuts the connection when
    the deadline passes, and the request fails as a read timeout (retried, then a gap)."""

    def __init__(self, answer_timeout: float, **kwargs):
        self.answer_timeout = answer_timeout
        super().__init__(**kwargs)

    def send(self, request, stream=False, **kwargs):
        started = time.monotonic()
        response = super().send(request, stream=True, **kwargs)
        if stream:
            return response
        expired = threading.Event()

        def cut():
            expired.set()
            sock = getattr(getattr(response.raw, "connection", None), "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(max(0.0, self.answer_timeout - (time.monotonic() - started)), cut)
        timer.daemon = True
        timer.start()
        try:
            # The whole body, under the timer, as `response.content` would read it but a
            # megabyte a read rather than 10 kB (a page is about one).
            response._content = b"".join(response.iter_content(ANSWER_READ_BYTES)) or b""
        except Exception:
            response.close()
            if expired.is_set():
                raise requests.exceptions.ReadTimeout(
                    f"the answer was not complete after {self.answer_timeout:g} s", request=request
                ) from None
            raise
        finally:
            timer.cancel()
        return response


def _session(pool: int, loopback: bool, answer_timeout: float = 60.0) -> requests.Session:
    session = requests.Session()
    session.trust_env = not loopback  # no proxy between us and a local server
    adapter = _WholeAnswerAdapter(
        answer_timeout, pool_connections=4, pool_maxsize=pool,
        max_retries=Retry(total=False, redirect=False)
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _client_kwargs(credential, endpoint: str, session: requests.Session) -> dict:
    """Our own pipeline: no SDK retries (ours count and pace), no redirects, no automatic
    resource provider registration (a write), and the read-only guard."""
    scope = endpoint + "/.default"
    pipeline = [
        policies.RequestIdPolicy(),
        policies.HeadersPolicy(),
        policies.UserAgentPolicy(user_agent=f"image-audit/{__version__}"),
        _ReadOnlyPolicy(),
        _DecodePolicy(),
        ARMChallengeAuthenticationPolicy(credential, scope),
    ]
    transport = RequestsTransport(session=session, session_owner=False)
    return dict(base_url=endpoint, credential_scopes=[scope], policies=pipeline, transport=transport)


# --- pacing -----------------------------------------------------------------------------------


def parse_timespan(value: str | None) -> float | None:
    """`hh:mm:ss[.fffffff]` (a .NET TimeSpan) in seconds."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", (value or "").strip())
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _Pacer:
    """Spends the per-user quota the answers' headers describe, shared by every thread.

    Each answer tells how many requests remain in the current window and when it resets.
    Requests sent after it and still unanswered are assumed not yet counted, so the estimate
    errs on the safe side. With no answer yet, one request probes; once a window is over,
    we may send as many as the largest quota seen; a 429 pauses everyone.
    """

    def __init__(self, margin: float = 0.1, max_wait: float = MAX_WAIT):
        self._max_wait = max_wait
        self._cond = threading.Condition()
        self._margin = margin
        self._seq = 0
        self._inflight: set[int] = set()
        self._waiting: set[tuple[int, int]] = set()
        self._arrivals = 0
        self._paced: bool | None = None  # unknown until the first answer
        self._limit = 0
        self._remaining: int | None = None
        self._reset_at: float | None = None
        self._window = 0.0
        self._pause_until = 0.0
        self.waits = 0
        self.waited = 0.0

    def _delay(self, now: float) -> float | None:
        """0 to send now, seconds to wait, or None to wait for an answer."""
        if self._reset_at is not None and now >= self._reset_at:
            self._remaining, self._reset_at = (self._limit or None), None
        if now < self._pause_until:
            return self._pause_until - now
        if self._paced is None or (self._paced and self._remaining is None):
            return None if self._inflight else 0.0
        if not self._paced or self._remaining > 0:
            return 0.0
        if self._reset_at is not None:
            return self._reset_at - now
        return None if self._inflight else 0.0

    def acquire(self, priority: int = 0) -> tuple[int, float]:
        """Wait for quota. Among waiting threads the highest `priority` goes first (chains
        with the most pages left), so the last pages of a collection are not one long tail."""
        with self._cond:
            self._arrivals += 1
            place = (-priority, self._arrivals)
            self._waiting.add(place)
            start = now = time.monotonic()
            deadline = start + 600
            while now < deadline:
                delay = self._delay(now)
                if delay is not None and delay > self._max_wait:  # a long wait becomes a gap
                    self._waiting.discard(place)
                    self._cond.notify_all()
                    raise _Failure("failed", f"the request quota resets in {delay:.0f} s, beyond "
                                             f"the {self._max_wait:g} s cap on a wait")
                if delay == 0.0 and place == min(self._waiting):
                    break
                self._cond.wait(timeout=1.0 if delay is None or delay == 0.0 else delay)
                now = time.monotonic()
            self._waiting.discard(place)
            self._cond.notify_all()
            if now - start > 0.01:
                self.waits += 1
                self.waited += now - start
            self._seq += 1
            self._inflight.add(self._seq)
            if self._remaining is not None:
                self._remaining -= 1
            return self._seq, now

    def done(self, ticket: tuple[int, float], headers, ok: bool) -> None:
        seq, sent = ticket
        remaining = _int(headers.get(QUOTA_REMAINING)) if headers else None
        resets = parse_timespan(headers.get(QUOTA_RESETS)) if headers else None
        with self._cond:
            self._inflight.discard(seq)
            if remaining is not None and resets is not None:
                self._paced = True
                self._window = max(self._window, resets)
                if ok:
                    self._limit = max(self._limit, remaining + 1)
                reset_at = sent + resets + self._margin
                estimate = remaining - sum(1 for s in self._inflight if s > seq)
                if reset_at <= time.monotonic():
                    pass  # it describes a window that is already over
                elif self._reset_at is None:
                    self._reset_at = reset_at
                    self._remaining = estimate if self._remaining is None else min(self._remaining, estimate)
                elif reset_at > self._reset_at + self._window / 4:
                    self._reset_at, self._remaining = reset_at, estimate  # server moved on
                else:
                    self._reset_at = max(self._reset_at, reset_at)
                    self._remaining = min(self._remaining, estimate)
            elif self._paced is None:
                self._paced = False
            self._cond.notify_all()

    def pause(self, seconds: float) -> None:
        with self._cond:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)
            self._cond.notify_all()


# --- progress ---------------------------------------------------------------------------------


class _Progress:
    """Per table: pages and rows so far; throttle waits on a line of their own (rich, stderr)."""

    def __init__(self, enabled: bool):
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._pages: Counter = Counter()
        self._rows: Counter = Counter()
        self._lock = threading.Lock()
        if enabled:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description:<22} {task.fields[text]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            self._throttle = self._bar.add_task("throttling", text="no waits")

    def page(self, table: str, rows: int, pacer: _Pacer, throttled: int) -> None:
        if self._bar is None:
            return
        with self._lock:
            if table not in self._tasks:
                self._tasks[table] = self._bar.add_task(table, text="")
            self._pages[table] += 1
            self._rows[table] += rows
            text = f"{self._pages[table]:>6,} pages {self._rows[table]:>11,} rows"
            self._bar.update(self._tasks[table], text=text)
            text = f"{pacer.waits} quota waits ({pacer.waited:.1f} s over all threads); {throttled} x 429"
            self._bar.update(self._throttle, text=text)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --- the collector ----------------------------------------------------------------------------


@dataclass
class _Settings:
    page_size: int = PAGE_SIZE
    batch_size: int = BATCH_SIZE
    chain_pages: int = 10
    max_workers: int = 8
    max_retries: int = 5
    max_throttled: int = 20
    backoff: float = 0.5
    backoff_cap: float = 30.0
    timeout: float = 60.0  # seconds to connect, and for each whole answer
    max_wait: float = MAX_WAIT  # the longest Retry-After or quota wait; longer is a gap


class _Malformed(Exception):
    pass


# Raised by the SDK for these statuses, as its own `resources` operation maps them.
_ERROR_MAP = {401: ClientAuthenticationError, 404: ResourceNotFoundError}


def _read_page(body: bytes, with_ids: bool) -> tuple[dict, list[str]]:
    """A Resource Graph answer from its bytes, and the values that had to be repaired (lone
    surrogates, numbers out of range). Each row must be an object, with an `id` unless the
    query summarises."""
    notes: list[str] = []
    try:
        document = parse_json(body, "answer", notes)
    except orjson.JSONDecodeError as exc:
        raise _Malformed(f"undecodable answer ({exc})") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not all(
        isinstance(row, dict) and (not with_ids or isinstance(row.get("id"), str)) for row in data
    ):
        raise _Malformed("a page whose data is not a list of rows" + (" with an id" if with_ids else ""))
    return document, notes


def _read_lines(body: bytes) -> tuple[dict, list[str]]:
    """`_read_page` for a page of a machine-sized table: its rows as JSON lines (spill.py),
    or as objects where only orjson and the standard parser can read the page."""
    split = page_lines(body)
    if split is None:
        return _read_page(body, with_ids=True)
    envelope, lines = split
    return {**envelope, "data": lines}, []


def _describe(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or exc.reason or ""
    message = (getattr(error, "message", None) or "").splitlines()
    return f"{exc.status_code} {code}" + (f": {message[0]}" if message else "")


def _error_body(exc: HttpResponseError) -> dict:
    """An ARM error answer as its body's `error` object says it."""
    error = getattr(exc, "error", None)
    return {"code": getattr(error, "code", None) or str(exc.status_code),
            "message": (getattr(error, "message", None) or "").strip()}


def _batches(ids: Sequence[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(ids[i : i + size]) for i in range(0, len(ids), size)]


def _subscription_of(row: dict) -> str:
    sub = row.get("subscriptionId") or row["id"].split("/")[2]
    return sub.lower()


@dataclass
class _Chain:
    """The outcome of one query over one scope: rows, and the parts that failed."""

    rows: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (target, _Failure)
    succeeded: bool = False


class _Collector:
    def __init__(self, credential, endpoint: str, loopback: bool, settings: _Settings, progress,
                 spill: RowSpill | None = None):
        from azure.mgmt.resourcegraph import ResourceGraphClient

        self.credential, self.endpoint, self.settings = credential, endpoint, settings
        self.progress = progress
        self.session = _session(settings.max_workers + 4, loopback, settings.timeout)
        self.enforce_https = not loopback
        self.graph = ResourceGraphClient(
            credential,
            api_version=API_VERSION,
            **_client_kwargs(credential, endpoint, self.session),
        )
        self.pacer = _Pacer(max_wait=settings.max_wait)
        self.arm_pacer = _Pacer(max_wait=settings.max_wait)
        self.counts: Counter = Counter()
        self.rows_by_query: Counter = Counter()
        self.deltas: list[dict] = []  # query chains whose rows differ from totalRecords
        self.repaired: list[str] = []  # values a row could not hold (lone surrogates)
        self._lock = threading.Lock()
        self._compute: dict[str, object] = {}
        self.spill = spill or RowSpill()

    def close(self) -> None:
        self.graph.close()
        for client in self._compute.values():
            client.close()
        self.session.close()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.backoff_cap, self.settings.backoff * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)

    def call(self, send: Callable, pacer: _Pacer, check: Callable | None = None, priority=0):
        """One request with our retries: 429 pauses every thread (Retry-After, else back-off);
        5xx, dropped connections and malformed answers back off; 401/403 are denials."""
        failures = throttles = 0
        refreshed = False  # a 401 mid-run (token expired or revoked): one fresh token, then report
        while True:
            ticket = pacer.acquire(priority)
            self.count("requests")
            try:
                result, headers = send()
                pacer.done(ticket, headers, True)
                return check(result) if check else result
            except _Malformed as exc:
                reason, detail = "malformed", str(exc)
            except ClientAuthenticationError as exc:
                if exc.response is None:  # raised by the credential, not by Azure
                    pacer.done(ticket, None, False)
                    raise AuditError(f"{SIGN_IN_HELP} ({str(exc).splitlines()[0]})") from None
                pacer.done(ticket, exc.response.headers, False)
                if exc.status_code == 401 and not refreshed:
                    refreshed = True  # azure-core dropped the cached token: the retry gets a new one
                    self.count("token_refreshes")
                    continue
                raise _Failure("denied", _describe(exc) + self._after_refresh(refreshed)) from None
            except HttpResponseError as exc:
                headers = exc.response.headers if exc.response is not None else None
                pacer.done(ticket, headers, False)
                status, detail = exc.status_code, _describe(exc)
                if isinstance(exc, DecodeError) or status == 200:
                    reason, detail = "malformed", f"undecodable answer ({detail})"
                elif status == 429:
                    throttles += 1
                    self.count("throttled")
                    if throttles > self.settings.max_throttled:
                        raise _Failure(
                            "failed", f"{detail} (still throttled after {throttles} tries)"
                        ) from None
                    wait = parse_retry_after((headers or {}).get("Retry-After"))
                    if wait is not None and wait > self.settings.max_wait:
                        raise _Failure("failed", f"{detail} (Retry-After {wait:.0f} s is beyond the "
                                                 f"{self.settings.max_wait:g} s cap on a wait)") from None
                    pacer.pause(wait if wait is not None else
                                min(self._backoff(throttles), self.settings.max_wait))
                    continue
                elif status == 401 and not refreshed:
                    refreshed = True
                    self.count("token_refreshes")
                    continue
                elif status in (401, 403):
                    raise _Failure("denied", detail + self._after_refresh(refreshed)) from None
                elif status is not None and status < 500 and status != 408:
                    raise _Failure("failed", detail, rejected=True) from None
                else:
                    reason = "server_error"
            except (ServiceRequestError, ServiceResponseError) as exc:
                pacer.done(ticket, None, False)
                reason, detail = "connection", str(exc).splitlines()[0]
            failures += 1
            self.count(f"retried_{reason}")
            if failures > self.settings.max_retries:
                raise _Failure("failed", f"{detail} (gave up after {failures} attempts)")
            time.sleep(self._backoff(failures))

    @staticmethod
    def _after_refresh(refreshed: bool) -> str:
        return " (again after a token refresh)" if refreshed else ""

    def pages(self, table: str, query: str, target: tuple) -> tuple[list[dict], _Failure | None]:
        """Every page of one query over one scope. A $skipToken the service rejects (expired,
        or lost by a failover) restarts the query from its first page, once: the partial rows
        are dropped, so nothing is duplicated, and a second rejection is a gap."""
        try:
            return self._pages(table, query, target)
        except _Failure as failure:
            if not (failure.rejected and getattr(failure, "paging", False)):
                raise
            self.count("restarted_queries")
        try:
            return self._pages(table, query, target)
        except _Failure as failure:
            failure.detail += " (after restarting the query from its first page)"
            raise

    def _post(self, request) -> tuple[bytes, object]:
        """One Resource Graph query through the SDK client's pipeline (credential, read-only
        guard, transport), answered as the body's bytes and the headers."""
        from azure.mgmt.resourcegraph.operations._resource_graph_client_operations import (
            build_resources_request,
        )

        http_request = build_resources_request(api_version=API_VERSION, content_type="application/json",
                                               json=request.serialize())
        response = self.graph._send_request(
            http_request, stream=False, raw_body=True, enforce_https=self.enforce_https,
            connection_timeout=self.settings.timeout, read_timeout=self.settings.timeout)
        if response.status_code != 200:
            map_error(status_code=response.status_code, response=response, error_map=_ERROR_MAP)
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        return response.body(), response.headers

    def _pages(self, table: str, query: str, target: tuple) -> tuple[list[dict], _Failure | None]:
        """Every page of one query over one scope: $top first, then $skipToken until none.
        The rows received are compared with the largest totalRecords a page announced: a
        shortfall beyond the tolerance comes back as a failure of status `incomplete` (the
        rows are kept); tokens that go on past the total end the chain as a gap. Rows of the
        machine-sized tables go to the spill (committed when the chain ends, dropped when it
        fails) and are not returned."""
        chain = object()
        try:
            result = self._paged(table, query, target, chain)
        except BaseException:
            self.spill.drop(chain)
            raise
        self.spill.commit(chain)
        return result

    def _paged(self, table: str, query: str, target: tuple, chain: object):
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        kind, ids = target
        spilled = table in _SPILLED
        rows, token, seen, received = [], None, set(), 0
        announced = None  # the largest totalRecords any page of this chain announced
        empty = 0  # pages in a row with no rows but a $skipToken
        priority = 1 << 30  # first pages first: they start every chain and tell its length
        for _ in range(100_000):
            if token:
                options = QueryRequestOptions(skip_token=token, result_format="objectArray")
            else:
                options = QueryRequestOptions(top=self.settings.page_size, result_format="objectArray")
            request = QueryRequest(
                query=query,
                subscriptions=list(ids) if kind == "subscriptions" else None,
                management_groups=list(ids) if kind == "managementGroups" else None,
                options=options,
            )
            try:
                answer, notes = self.call(
                    lambda request=request: self._post(request),
                    self.pacer,
                    _read_lines if spilled else (
                        lambda body: _read_page(body, with_ids=table != "plan")),
                    priority,
                )
            except _Failure as failure:
                failure.paging = bool(token)
                raise
            data = answer["data"]
            if notes:
                with self._lock:
                    self.repaired += [f"{table}: {note}" for note in notes]
            if spilled:
                self.spill.page(chain, data)
            else:
                rows += data
            received += len(data)
            total = answer.get("totalRecords")
            total = total if isinstance(total, int) and not isinstance(total, bool) else None
            if total is not None:
                announced = max(announced or 0, total)
            priority = -(-max(0, (total or 0) - received) // self.settings.page_size)
            self.count("pages")
            with self._lock:
                self.rows_by_query[table] += len(data)
            self.progress.page(table, len(data), self.pacer, self.counts["throttled"])
            token = answer.get("$skipToken")
            if str(answer.get("resultTruncated")).lower() == "true":
                raise _Failure("failed", "Resource Graph truncated the result")
            if not token:
                return rows, self._compare(table, target, announced, received)
            if token in seen:
                raise _Failure("failed", "Resource Graph repeated a $skipToken")
            empty = empty + 1 if not data else 0
            if empty >= _EMPTY_PAGES or (announced is not None
                                         and received > announced + paging_tolerance(announced)):
                raise _Failure("failed", f"Resource Graph kept handing out $skipTokens after "
                                         f"{received} rows of {announced} (totalRecords); "
                                         "stopped paging")
            seen.add(token)
        raise _Failure("failed", "too many pages")

    def _compare(self, table: str, target: tuple, announced: int | None, received: int):
        """Record any difference from totalRecords; a shortfall beyond the tolerance is a gap."""
        if announced is None or announced == received:
            return None
        kind, ids = target
        with self._lock:
            self.deltas.append({"table": table, "scope": kind, "ids": list(ids),
                                "total": announced, "received": received})
        short = announced - received
        if short <= paging_tolerance(announced):
            return None
        return _Failure("incomplete", f"received {received} of {announced} rows that totalRecords "
                                      f"announced (short by {short}; tolerance "
                                      f"{paging_tolerance(announced)}): rows were lost while paging")

    def chain(self, table: str, query: str, target: tuple) -> _Chain:
        """A query over one scope; a denied subscription batch is split in halves until the
        denied subscriptions stand alone, so the others are still collected."""
        try:
            rows, shortfall = self.pages(table, query, target)
            return _Chain(rows=rows, failures=[(target, shortfall)] if shortfall else [], succeeded=True)
        except _Failure as failure:
            kind, ids = target
            if failure.status == "denied" and kind == "subscriptions" and len(ids) > 1:
                half = len(ids) // 2
                left = self.chain(table, query, (kind, ids[:half]))
                right = self.chain(table, query, (kind, ids[half:]))
                return _Chain(
                    left.rows + right.rows,
                    left.failures + right.failures,
                    left.succeeded or right.succeeded,
                )
            return _Chain(failures=[(target, failure)])

    def run(self, jobs: list[tuple[str, str, tuple]]) -> list[_Chain]:
        """Independent chains concurrently; every one shares the pacer's quota."""
        with ThreadPoolExecutor(self.settings.max_workers) as pool:
            return list(pool.map(lambda job: self.chain(*job), jobs))

    # --- --deep: replication status through azure-mgmt-compute --------------------------------

    def _compute_client(self, subscription: str):
        from azure.mgmt.compute import ComputeManagementClient

        with self._lock:
            if subscription not in self._compute:
                kwargs = _client_kwargs(self.credential, self.endpoint, self.session)
                self._compute[subscription] = ComputeManagementClient(self.credential, subscription, **kwargs)
            return self._compute[subscription]

    def _arm_get(self, subscription: str, request) -> dict:
        """The JSON body of one paced ARM GET: `request(client, options)` calls the SDK's get
        with the collector's API version, https rule, timeouts and a raw-body reader."""
        client = self._compute_client(subscription)
        options = dict(api_version=COMPUTE_API_VERSION, enforce_https=self.enforce_https,
                       connection_timeout=self.settings.timeout,
                       read_timeout=self.settings.timeout,
                       cls=lambda response, _, __: (response.http_response.json(),
                                                    response.http_response.headers))
        return self.call(lambda: request(client, options), self.arm_pacer)

    def sharing_profile(self, gallery_id: str) -> dict:
        """`properties.sharingProfile` of one gallery with its direct-share groups: GET with
        $expand=sharingProfile/Groups (Resource Graph leaves the groups out)."""
        sub, group, gallery = _GALLERY_ID.match(gallery_id).groups()
        body = self._arm_get(sub, lambda client, options: client.galleries.get(
            group, gallery, expand="sharingProfile/Groups", **options))
        return (body.get("properties") or {}).get("sharingProfile") or {}

    def replication_status(self, version_id: str) -> dict:
        """`properties.replicationStatus` of one version: GET with $expand=ReplicationStatus."""
        sub, group, gallery, image, version = _VERSION_ID.match(version_id).groups()
        body = self._arm_get(sub, lambda client, options: client.gallery_image_versions.get(
            group, gallery, image, version, expand="ReplicationStatus", **options))
        return (body.get("properties") or {}).get("replicationStatus") or {}

    # --- --marketplace and --locks: ARM GETs of what Resource Graph does not hold ----------

    def marketplace_version(self, path: str) -> dict:
        """The GET body of one Marketplace image version (its imageDeprecationStatus); a 404
        is an answer, not a failure: the version no longer exists, and the row says so."""
        from azure.core.exceptions import ResourceNotFoundError

        sub, location, publisher, offer, sku, version = _MARKETPLACE_PATH.match(path).groups()

        def request(client, options):
            try:
                return client.virtual_machine_images.get(
                    location, publisher, offer, sku, version,
                    **dict(options, api_version=MARKETPLACE_API_VERSION))
            except ResourceNotFoundError as exc:
                error = _error_body(exc)
                return {"id": path, "error": error}, exc.response.headers

        body = self._arm_get(sub, request)
        return body if "error" in body else {**body, "id": body.get("id") or path}

    def lock_list(self, subscription: str) -> dict:
        """Every management lock of one subscription (Management Locks - List At Subscription
        Level, following nextLink a bounded number of pages), as one list body named by its
        request path."""
        from azure.core.rest import HttpRequest

        path = f"/subscriptions/{subscription}/providers/Microsoft.Authorization/locks"
        url = f"{self.endpoint}{path}?api-version={LOCKS_API_VERSION}"
        locks: list = []
        for _ in range(MAX_LOCK_PAGES):
            def request(client, options, url=url):
                response = client.send_request(
                    HttpRequest("GET", url), enforce_https=options["enforce_https"],
                    connection_timeout=options["connection_timeout"],
                    read_timeout=options["read_timeout"])
                response.raise_for_status()
                return response.json(), response.headers

            page = self._arm_get(subscription, request)
            if not isinstance(page, dict) or not isinstance(page.get("value"), list):
                raise _Failure("failed", "malformed lock list (no `value` list)")
            locks += page["value"]
            url = page.get("nextLink")
            if not url:
                return {"id": path, "value": locks}
        raise _Failure("failed", f"lock list longer than {MAX_LOCK_PAGES} pages")


# --- scope, discovery and the public entry points --------------------------------------------


def _scope_row(subscription: str, name: str | None, status="ok", detail="") -> dict:
    return {
        "subscription_id": subscription,
        "display_name": name,
        "status": status,
        "detail": detail,
    }


def _gap(table: str, target: tuple, failure: _Failure) -> dict:
    kind, ids = target
    return {
        "table": table,
        "scope": kind,
        "ids": list(ids),
        "status": failure.status,
        "detail": failure.detail,
    }


_WORST = {"ok": 0, "incomplete": 1, "failed": 2, "denied": 3}


def _mark(row: dict, table: str, failure: _Failure) -> None:
    """The worst outcome wins: denied over failed over incomplete over ok; details name the
    table."""
    if _WORST.get(failure.status, 2) >= _WORST.get(row["status"], 2):
        row["status"] = failure.status
    note = f"{table}: {failure.detail}"
    row["detail"] = f"{row['detail']}; {note}" if row["detail"] else note


_TENANT = "/providers/Microsoft.Resources/tenant"  # the scope row of the tenant-wide listing


def _group_id(group: str) -> str:
    return f"/providers/Microsoft.Management/managementGroups/{group}"


def _discover(collector: _Collector, scope: Scope, gaps: list) -> tuple[dict, dict]:
    """Which subscriptions the scope holds and the credential can see: the scope rows, and
    the request scopes (subscription batches, management groups) with the subscriptions each
    covers. Requested subscriptions that are not visible are recorded as denied."""
    size = collector.settings.batch_size
    asked = list(dict.fromkeys(s.strip().lower() for s in scope.subscriptions if s.strip()))
    groups = list(dict.fromkeys(g.strip() for g in scope.management_groups if g.strip()))
    targets = [("subscriptions", batch) for batch in _batches(asked, size)]
    targets += [("managementGroups", (group,)) for group in groups]
    targets = targets or [("tenant", ())]
    chains = collector.run([("subscriptions", SUBSCRIPTIONS_QUERY, t) for t in targets])
    rows: dict[str, dict] = {}
    visible: list[str] = []
    covers: dict[tuple, list[str]] = {}
    for (kind, ids), chain in zip(targets, chains, strict=True):
        found = {_subscription_of(r): r.get("name") for r in chain.rows}
        for sub, name in found.items():
            rows.setdefault(sub, _scope_row(sub, name))
        failed = {}
        for failed_target, failure in chain.failures:
            gaps.append(_gap("subscriptions", failed_target, failure))
            if kind == "managementGroups":
                rows[_group_id(ids[0])] = _scope_row(
                    _group_id(ids[0]), f"management group {ids[0]}", failure.status, failure.detail
                )
            failed.update(dict.fromkeys(failed_target[1], failure))
        if kind == "subscriptions":
            for sub in ids:
                if sub in found:
                    visible.append(sub)
                elif sub in failed:
                    rows[sub] = _scope_row(sub, None, failed[sub].status, failed[sub].detail)
                else:
                    detail = "not visible to this credential (no read access, or no such subscription)"
                    rows[sub] = _scope_row(sub, None, "denied", detail)
                    gaps.append(_gap("subscriptions", ("subscriptions", (sub,)), _Failure("denied", detail)))
        elif kind == "managementGroups" and chain.succeeded and not found:
            # Resource Graph answers an unknown group, or one we cannot read, with no rows.
            detail = "no subscription visible in this management group (no such group, or no read access)"
            group = _group_id(ids[0])
            rows[group] = _scope_row(group, f"management group {ids[0]}", "denied", detail)
            gaps.append(_gap("subscriptions", (kind, ids), _Failure("denied", detail)))
        elif kind == "managementGroups" and chain.succeeded:
            covers[(kind, ids)] = sorted(found)
        elif kind == "tenant":
            visible += sorted(found)
            for _, failure in chain.failures:  # the listing itself fell short of its total
                rows[_TENANT] = _scope_row(_TENANT, "subscriptions of the tenant", failure.status,
                                           f"subscriptions: {failure.detail}")
    for batch in _batches(sorted(set(visible)), size):
        covers[("subscriptions", batch)] = list(batch)
    return rows, covers


def _plan(collector: _Collector, covers: dict) -> list[tuple]:
    """Subscription groups for the machine-sized tables: about `chain_pages` pages of machines
    each, whole subscriptions, at most a batch. Without counts, the batches as they are."""
    batches = [t for t in covers if t[0] == "subscriptions"]
    chains = collector.run([("plan", PLAN_QUERY, t) for t in batches])
    target = collector.settings.chain_pages * collector.settings.page_size
    groups = []
    for (_, ids), chain in zip(batches, chains, strict=True):
        if not chain.succeeded:
            groups.append(("subscriptions", ids))
            continue
        sizes = {str(r.get("subscriptionId", "")).lower(): r.get("machines") for r in chain.rows}
        group, rows = [], 0
        for sub in ids:
            size = sizes.get(sub) if isinstance(sizes.get(sub), int) else 0
            if group and (rows + size > target or len(group) >= collector.settings.batch_size):
                groups.append(("subscriptions", tuple(group)))
                group, rows = [], 0
            group.append(sub)
            rows += size
        if group:
            groups.append(("subscriptions", tuple(group)))
    return groups + [t for t in covers if t[0] != "subscriptions"]


def _check_credential(credential, endpoint: str) -> None:
    """Fail fast, in one line, when no way of signing in works."""
    try:
        credential.get_token(endpoint + "/.default")
    except Exception as exc:  # any credential's failure to sign in means the same to a user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AuditError(f"{SIGN_IN_HELP} ({first[:200]})") from None


# The largest tables first, so their long paging chains start early and hide latency.
_ORDER = [
    "virtual_machines",
    "os_disks",
    "instances",
    "scale_sets",
    "gallery_image_versions",
    "gallery_images",
    "managed_images",
    "autoscale_settings",
    "galleries",
    "role_assignments",
]


def collect_resources(
    scope: Scope,
    *,
    credential,
    endpoint: str = CLOUDS["public"],
    deep: bool = False,
    marketplace: bool = False,
    locks: bool = False,
    instances: bool = True,
    page_size: int = PAGE_SIZE,
    batch_size: int = BATCH_SIZE,
    chain_pages: int = 10,
    max_workers: int = 16,
    max_retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 60.0,
    max_wait: float = MAX_WAIT,
    progress: bool = False,
    spill: RowSpill | None = None,
) -> Collected:
    """Raw rows in ARM shape plus scope rows, gaps, query texts and request statistics.
    `instances=False` leaves out the instances of Uniform scale sets (very large tenants);
    the machine-sized rows go to `spill` (a new one if not given)."""
    endpoint, loopback = check_endpoint(endpoint)
    if not 1 <= page_size <= 1000 or not 1 <= batch_size <= 1000:
        raise AuditError("page_size and batch_size must be between 1 and 1000")
    _check_credential(credential, endpoint)
    started = time.monotonic()
    settings = _Settings(
        page_size=page_size,
        batch_size=batch_size,
        chain_pages=chain_pages,
        max_workers=max_workers,
        max_retries=max_retries,
        backoff=backoff,
        timeout=timeout,
        max_wait=max_wait,
    )
    bar = _Progress(progress)
    collector = _Collector(credential, endpoint, loopback, settings, bar, spill)
    gaps: list[dict] = []
    try:
        scope_rows, covers = _discover(collector, scope, gaps)
        if not covers:
            reason = gaps[0]["detail"] if gaps else "the credential can see no subscription"
            raise AuditError(f"nothing could be collected: {reason}")
        planned = _plan(collector, covers)
        tables = [t for t in _ORDER if instances or t != "instances"]
        jobs = [
            (table, QUERIES[table], target)
            for table in tables
            for target in (planned if table in _PLANNED else covers)
        ]
        chains = collector.run(jobs)
        collector.spill.finish()
        by_id: dict[str, dict] = {}
        for (table, _, _), chain in zip(jobs, chains, strict=True):
            for row in chain.rows:
                by_id.setdefault(row["id"].lower(), row)
            for failed_target, failure in chain.failures:
                gaps.append(_gap(table, failed_target, failure))
                subs = covers.get(failed_target, list(failed_target[1]))
                for sub in subs or [_group_id(failed_target[1][0])]:
                    row = scope_rows.setdefault(sub, _scope_row(sub, None))
                    _mark(row, table, failure)
        if not any(chain.succeeded for chain in chains):
            raise AuditError(f"nothing could be collected: {gaps[0]['detail']}")
        rows = [by_id[key] for key in sorted(by_id)]
        graph_requests = collector.counts["requests"]
        for gap in _sharing_groups(collector, rows):
            gaps.append(gap)
            for sub in gap["subscriptions"]:
                _mark(scope_rows.setdefault(sub, _scope_row(sub, None)), "gallery_sharing",
                      _Failure(gap["status"], gap["detail"]))
            del gap["subscriptions"]
        replicated = len(_deep(collector, rows, gaps)) if deep else None
        arm_gaps: list[dict] = []
        if marketplace or deep:  # the machines are in the spill, read back a block at a time
            machines = itertools.chain(rows, collector.spill.parsed())
            rows += _marketplace(collector, machines, arm_gaps)
        if locks or deep:
            read = sorted(s for s, r in scope_rows.items()
                          if not s.startswith("/") and r["status"] != "denied")
            rows += _locks(collector, read, arm_gaps)
        for gap in arm_gaps:
            gaps.append(gap)
            for target in gap["ids"]:
                sub = (target.split("/")[2] if target.startswith("/subscriptions/")
                       else target).lower()
                _mark(scope_rows.setdefault(sub, _scope_row(sub, None)), gap["table"],
                      _Failure(gap["status"], gap["detail"]))
    except BaseException:
        collector.spill.close()
        raise
    finally:
        bar.stop()
        collector.close()
    counts = collector.counts
    stats = {
        "requests": graph_requests,
        "pages": counts["pages"],
        "retries": {k.removeprefix("retried_"): v for k, v in counts.items() if "retried_" in k},
        "throttled": counts["throttled"],
        "token_refreshes": counts["token_refreshes"],
        "restarted_queries": counts["restarted_queries"],
        "quota_waits": collector.pacer.waits,
        "quota_waited_s": round(collector.pacer.waited, 3),
        "rows": {table: collector.rows_by_query[table] for table in tables},
        "paging_tolerance": PAGING_TOLERANCE,
        "paging_deltas": sorted(collector.deltas, key=lambda d: (d["table"], d["scope"], d["ids"])),
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    stats["arm_requests"] = counts["requests"] - graph_requests
    queries = {
        "subscriptions": SUBSCRIPTIONS_QUERY,
        "plan": PLAN_QUERY,
        **{t: QUERIES[t] for t in tables},
    }
    scope_list = [scope_rows[key] for key in sorted(scope_rows)]
    gaps.sort(key=lambda g: (g["table"], g["scope"], g["ids"]))
    return Collected(rows, scope_list, queries, gaps, stats, replicated, sorted(collector.repaired),
                     collector.spill)


def _sharing_groups(collector: _Collector, rows: list[dict]) -> list[dict]:
    """The direct-share groups of every gallery shared to groups, put where ARM nests them
    (`properties.sharingProfile.groups`). A gallery whose GET fails keeps its row without
    groups (read as shared to unknown consumers) and is a gap."""
    galleries = [
        row for row in rows
        if row.get("type", "").lower() == _GALLERY_TYPE and _GALLERY_ID.match(row["id"])
        and str(((row.get("properties") or {}).get("sharingProfile") or {}).get("permissions", ""))
        .lower() == "groups"
    ]
    gaps = []
    for row, profile in _get_each(collector, galleries, collector.sharing_profile):
        if isinstance(profile, _Failure):
            gap = _gap("gallery_sharing", ("galleries", (row["id"],)), profile)
            gaps.append(dict(gap, subscriptions=[_GALLERY_ID.match(row["id"]).group(1).lower()]))
            continue
        properties = row.get("properties") or {}
        row["properties"] = {**properties, "sharingProfile": {
            **(properties.get("sharingProfile") or {}), **profile}}
    return gaps


def _deep(collector: _Collector, rows: list[dict], gaps: list) -> list[dict]:
    """Replication status of every gallery image version, put where ARM nests it
    (`properties.replicationStatus`); returns the enriched version rows."""
    versions = [
        row for row in rows if row.get("type", "").lower() == _VERSION_TYPE and _VERSION_ID.match(row["id"])
    ]
    enriched = []
    for row, status in _get_each(collector, versions, collector.replication_status):
        if isinstance(status, _Failure):
            gaps.append(_gap("version_replication", ("versions", (row["id"],)), status))
            continue
        row["properties"] = {**(row.get("properties") or {}), "replicationStatus": status}
        enriched.append(row)
    return enriched


# --- --marketplace and --locks: the ARM GET phase after Resource Graph ---------------------


def _marketplace_paths(rows: Iterable[dict]) -> list[str]:
    """One GET path per distinct location and publisher:offer:sku:version that machines
    use (for `latest`, the version the machine records in exactVersion; a `latest` without
    one is unknown and not read), asked through the first subscription that uses it."""
    paths: dict[tuple, str] = {}
    for row in rows:
        kind = str(row.get("type", "")).lower()
        if kind not in (_VM_TYPE, _VMSS_TYPE):
            continue
        props = row.get("properties") or {}
        if kind == _VMSS_TYPE:
            props = props.get("virtualMachineProfile") or {}
        ref = (props.get("storageProfile") or {}).get("imageReference") or {}
        if not isinstance(ref, dict) or ref.get("id") or not ref.get("publisher"):
            continue
        version = str(ref.get("version") or "")
        if version.lower() == "latest":
            version = str(ref.get("exactVersion") or "")
        parts = [row.get("location"), ref.get("publisher"), ref.get("offer"), ref.get("sku"),
                 version]
        if not all(isinstance(part, str) and part and "/" not in part for part in parts):
            continue
        key = tuple(part.lower().replace(" ", "") for part in parts)
        paths.setdefault(key, (
            f"/subscriptions/{_subscription_of(row)}/providers/Microsoft.Compute/locations/"
            f"{key[0]}/publishers/{parts[1]}/artifacttypes/vmimage/offers/{parts[2]}/skus/"
            f"{parts[3]}/versions/{parts[4]}"))
    return [paths[key] for key in sorted(paths)]


def _marketplace(collector: _Collector, rows: Iterable[dict], gaps: list) -> list[dict]:
    """The GET bodies of the Marketplace versions in use (a 404 is a body saying so); a GET
    that fails, and images beyond MAX_MARKETPLACE_GETS, are gaps."""
    paths = _marketplace_paths(rows)
    if len(paths) > MAX_MARKETPLACE_GETS:
        left = paths[MAX_MARKETPLACE_GETS:]
        gaps.append({"table": "marketplace_versions", "scope": "images", "ids": left,
                     "status": "incomplete", "detail": f"{len(left)} Marketplace image(s) "
                     f"beyond the {MAX_MARKETPLACE_GETS} read in one run were not read"})
        paths = paths[:MAX_MARKETPLACE_GETS]
    return _bodies(collector, paths, collector.marketplace_version, "marketplace_versions",
                   "images", gaps)


def _locks(collector: _Collector, subscriptions: list[str], gaps: list) -> list[dict]:
    """The lock list body of every subscription read; a refused or failed list is a gap (its
    galleries' locks stay unknown)."""
    return _bodies(collector, subscriptions, collector.lock_list, "locks", "subscriptions", gaps)


def _bodies(collector: _Collector, targets: list[str], get, table: str, kind: str,
            gaps: list) -> list[dict]:
    """`get(target)` for each target, paced and bounded: the bodies, and a gap per failure."""
    bodies = []
    for row, body in _get_each(collector, [{"id": t} for t in targets], get):
        if isinstance(body, _Failure):
            gaps.append(_gap(table, (kind, (row["id"],)), body))
        else:
            bodies.append(body)
    return bodies


def _get_each(collector: _Collector, rows: list[dict], get) -> list[tuple[dict, object]]:
    """`get(row id)` for every row, a bounded number at a time: each row with what its GET
    returned, or the _Failure that ended it."""
    def one(row: dict) -> tuple[dict, object]:
        try:
            return row, get(row["id"])
        except _Failure as failure:
            return row, failure

    with ThreadPoolExecutor(collector.settings.max_workers) as pool:
        return list(pool.map(one, rows))


def collect(
    scope: Scope,
    *,
    credential,
    endpoint: str = CLOUDS["public"],
    deep: bool = False,
    marketplace: bool = False,
    locks: bool = False,
    **options,
):
    """Collect `scope` through Resource Graph and return a Snapshot ready to `write(path)`.

    `credential` is any azure-core TokenCredential; `options` tune paging and pacing
    (page_size, batch_size, max_workers, max_retries, backoff, progress)."""
    from auditor.snapshot import add_problems, build_snapshot

    collected_at = datetime.now(timezone.utc)
    # The snapshot is built while the pages come in: the spill hands each block of committed
    # machine-sized rows to a builder thread, which normalises it (pyarrow, mostly without
    # the interpreter lock) while the collector waits for Resource Graph's quota. The small
    # tables' rows and the scope follow once collected (`kept`); None: the collection failed.
    spill, kept, scope_rows = RowSpill(stream=True), queue.Queue(1), []

    def resources():
        yield from spill.streamed()
        rows = kept.get()
        if rows is None:
            raise _Abandoned
        yield from rows

    def build():
        try:
            # Ids come once: the spill writes each once, the kept rows are keyed by id.
            return build_snapshot(resources(), collected_at=collected_at, scope=scope_rows,
                                  unique_ids=True)
        except BaseException:
            spill.abandon()  # so a failed builder never holds back the pages
            raise

    with ThreadPoolExecutor(1, thread_name_prefix="image-audit-build") as pool:
        building = pool.submit(build)
        try:
            got = collect_resources(scope, credential=credential, endpoint=endpoint, deep=deep,
                                    marketplace=marketplace, locks=locks, spill=spill, **options)
        except BaseException:
            spill.close()
            kept.put(None)
            raise
        scope_rows += got.scope
        kept.put(got.kept)
        try:
            snapshot = building.result()
        finally:
            spill.close()
    source = {
        "source": "azure-resource-graph",
        "endpoint": endpoint.rstrip("/"),
        "api_version": API_VERSION,
        "scope_requested": {
            "tenant": not scope.subscriptions and not scope.management_groups,
            "subscriptions": sorted({s.lower() for s in scope.subscriptions}),
            "management_groups": sorted(set(scope.management_groups)),
        },
        "queries": got.queries,
        "gaps": got.gaps,
        "collection": got.stats,
        "deep": deep,
        "marketplace": marketplace or deep,
        "locks": locks or deep,
        "instances_collected": options.get("instances", True),
    }
    snapshot.manifest.update(source)
    add_problems(snapshot.manifest, got.repaired)
    return snapshot


def summary_line(snapshot) -> str:
    """The closing line: rows per table, gaps, requests and elapsed time."""
    manifest = snapshot.manifest
    stats = manifest.get("collection", {})
    counts = ", ".join(
        f"{name} {table.num_rows:,}"
        for name, table in sorted(snapshot.arrow_tables.items())
        if name != "resource_tags"
    )
    gaps = len(manifest.get("gaps", []))
    return (
        f"collected {counts}; {gaps} gap(s); {stats.get('requests', 0)} requests, "
        f"{sum(stats.get('retries', {}).values())} retries, {stats.get('throttled', 0)} x 429; "
        f"{stats.get('elapsed_s', 0):.1f} s"
    )


_AUTHORITIES = {
    "public": "login.microsoftonline.com",
    "china": "login.chinacloudapi.cn",
    "usgov": "login.microsoftonline.us",
}


def _default_credential(cloud: str):
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(authority=_AUTHORITIES[cloud])


def collect_from_options(
    *,
    subscriptions: Sequence[str] = (),
    management_groups: Sequence[str] = (),
    cloud: str = "public",
    endpoint: str | None = None,
    deep: bool = False,
    marketplace: bool = False,
    locks: bool = False,
    instances: bool = True,
    quiet: bool = False,
    timeout: float = 60.0,
):
    """What `image-audit collect` and `audit --collect` do: DefaultAzureCredential for the
    cloud, live progress only on a terminal, and the closing line unless quiet."""
    import sys

    if cloud not in CLOUDS:
        raise AuditError(f"--cloud: unknown cloud {cloud!r} (one of {', '.join(CLOUDS)})")
    snapshot = collect(
        Scope(tuple(subscriptions), tuple(management_groups)),
        credential=_default_credential(cloud),
        endpoint=endpoint or CLOUDS[cloud],
        deep=deep,
        marketplace=marketplace,
        locks=locks,
        instances=instances,
        timeout=timeout,
        progress=not quiet and sys.stderr.isatty(),
    )
    if not quiet:
        print(summary_line(snapshot), file=sys.stderr)
    return snapshot
