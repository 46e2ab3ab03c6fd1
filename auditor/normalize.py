"""Raw Azure resource objects (ARM or Resource Graph shape) into the snapshot tables.

This is the one code path every input goes through: `import`, the collector, the sample
estate and synthetic estates. Azure's untidiness is absorbed here and nowhere else: type and
id casing, region display names, ids without subscriptionId/resourceGroup fields, optional
properties that are absent or of the wrong type, timestamps with 7-digit fractions.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditor.safetext import redact_sas

GALLERY = "microsoft.compute/galleries"
DEFINITION = "microsoft.compute/galleries/images"
VERSION = "microsoft.compute/galleries/images/versions"
MANAGED_IMAGE = "microsoft.compute/images"
VM = "microsoft.compute/virtualmachines"
VMSS = "microsoft.compute/virtualmachinescalesets"
AUTOSCALE = "microsoft.insights/autoscalesettings"
DISK = "microsoft.compute/disks"
ROLE_ASSIGNMENT = "microsoft.authorization/roleassignments"
# Read by ARM GETs only (collect --marketplace / --locks, or their saved bodies imported): a
# Marketplace image version (GET .../locations/L/publishers/P/artifacttypes/vmimage/offers/O/
# skus/S/versions/V, whose body has no `type`) and a management lock.
MARKETPLACE_VERSION = "microsoft.compute/publishers/artifacttypes/offers/skus/versions"
LOCK = "microsoft.authorization/locks"
# A Uniform scale set's instance (Resource Graph `computeresources`); a Flexible set's
# members are ordinary VMs.
INSTANCE = "microsoft.compute/virtualmachinescalesets/virtualmachines"
# Azure's documented default for a version that names no storage type (API versions before
# 2019-03-01 had none): Standard_LRS.
DEFAULT_STORAGE_TYPE = "Standard_LRS"

S, INT, F, B, T = pa.string(), pa.int64(), pa.float64(), pa.bool_(), pa.timestamp("us", tz="UTC")

_COMMON = [("id", S), ("arm_id", S), ("name", S), ("subscription_id", S),
           ("resource_group", S), ("location", S)]

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "galleries": pa.schema(_COMMON + [("description", S), ("tags", S),
                                      ("sharing_permissions", S), ("sharing_groups_read", B),
                                      ("unique_name", S), ("community_names", S)]),
    # Direct-share groups of a gallery (`sharingProfile.groups[]`, read by an ARM GET with
    # $expand=sharingProfile/Groups): one row per subscription or tenant it is shared with.
    "gallery_shares": pa.schema([("gallery_id", S), ("type", S), ("target", S)]),
    # Role assignments (Resource Graph `authorizationresources`) at subscription, resource
    # group or gallery scope: who else can read, and so deploy, a gallery's versions.
    "role_assignments": pa.schema([("id", S), ("scope", S), ("principal_id", S),
                                   ("principal_type", S), ("role_definition_id", S)]),
    "image_definitions": pa.schema(_COMMON + [
        ("gallery_id", S), ("os_type", S), ("os_state", S), ("hyper_v_generation", S),
        ("architecture", S), ("publisher", S), ("offer", S), ("sku", S),
        ("end_of_life_date", T), ("provisioning_state", S), ("tags", S),
        # SEC: the definition's SecurityType feature (features[name=SecurityType].value).
        ("security_type", S),
        # Marketplace purchase plan a definition passes on to machines made from it (LIC002).
        ("purchase_plan_name", S), ("purchase_plan_publisher", S), ("purchase_plan_product", S)]),
    "image_versions": pa.schema(_COMMON + [
        ("definition_id", S), ("gallery_id", S), ("major", INT), ("minor", INT), ("patch", INT),
        ("published_date", T), ("end_of_life_date", T), ("exclude_from_latest", B),
        ("replica_count", INT), ("storage_account_type", S), ("replication_mode", S),
        ("target_region_count", INT), ("os_disk_size_gb", F), ("data_disk_size_gb", F),
        ("source_id", S), ("source_uri", S), ("provisioning_state", S),
        ("allow_deletion_of_replicated_locations", B),
        ("block_deletion_before_end_of_life", B), ("tags", S),
        ("storage_account_strategy", S),
        # SEC: safetyProfile.reportedForPolicyViolation (API 2022-03-03 on; null before) and
        # its policyViolations as `category: details` joined with "; ".
        ("reported_for_policy_violation", B), ("policy_violations", S),
        ("data_disk_count", INT)]),
    "version_regions": pa.schema([
        ("version_id", S), ("region", S), ("regional_replica_count", INT),
        ("storage_account_type", S), ("exclude_from_latest", B),
        # SEC: the region's targetRegions[].encryption.osDiskImage (customer-managed keys and
        # confidential VM encryption).
        ("disk_encryption_set_id", S), ("confidential_vm_encryption_type", S),
        ("secure_vm_disk_encryption_set_id", S), ("encrypted_data_disks", INT)]),
    # Replicas beside a region's ordinary ones: PremiumV2 "direct drive" sets (API 2024-03-03:
    # targetRegions[].additionalReplicaSets[]) and Edge Zone replicas
    # (publishingProfile.targetExtendedLocations[], named in `extended_location`).
    "version_replica_sets": pa.schema([
        ("version_id", S), ("region", S), ("storage_account_type", S),
        ("regional_replica_count", INT), ("extended_location", S)]),
    "version_replication": pa.schema([
        ("version_id", S), ("region", S), ("state", S), ("progress", INT), ("details", S)]),
    "managed_images": pa.schema(_COMMON + [
        ("os_type", S), ("os_state", S), ("hyper_v_generation", S), ("source_vm_id", S),
        ("os_disk_size_gb", F), ("data_disk_size_gb", F), ("storage_account_type", S),
        ("blob_uri", S), ("os_snapshot_id", S), ("os_managed_disk_id", S),
        ("zone_resilient", B), ("provisioning_state", S), ("tags", S)]),
    "machines": pa.schema(_COMMON + [
        ("kind", S), ("capacity", INT), ("vm_size", S), ("os_type", S), ("image_kind", S),
        ("image_publisher", S), ("image_offer", S), ("image_sku", S), ("image_version", S),
        ("exact_version", S), ("image_id", S), ("image_definition_id", S), ("vhd_uri", S),
        ("os_disk_unmanaged", B), ("license_type", S),
        # COV002: the OS disk's createOption as Azure spells it (`FromImage`, `Attach`; a
        # scale set's from its virtualMachineProfile), null where the body does not say.
        ("os_disk_create_option", S),
        ("plan_name", S), ("plan_publisher", S), ("plan_product", S), ("power_state", S),
        ("running_version_id", S), ("tags", S),
        ("running_versions", S), ("managed_by", S), ("orchestration_mode", S),
        ("scale_set_id", S), ("upgrade_mode", S), ("automatic_os_upgrade", B),
        ("health_probe_id", S), ("health_extension", S),
        ("overprovision", B), ("rolling_max_batch_percent", INT), ("rolling_max_surge", B),
        # SEC: securityProfile.securityType (a scale set's in its virtualMachineProfile), and
        # a VM's generation as Resource Graph reports it (extended.instanceView).
        ("security_type", S), ("hyper_v_generation", S)]),
    # Instances of Uniform scale sets: what each runs (its model view's imageReference, with
    # exactVersion where Azure records it) and whether it has the set's latest model.
    "instances": pa.schema(_COMMON + [
        ("scale_set_id", S), ("instance_id", S), ("image_kind", S), ("image_publisher", S),
        ("image_offer", S), ("image_sku", S), ("image_version", S), ("exact_version", S),
        ("image_id", S), ("image_definition_id", S), ("latest_model_applied", B),
        ("power_state", S), ("tags", S)]),
    "resource_tags": pa.schema([
        ("resource_id", S), ("resource_table", S), ("key", S), ("key_lower", S), ("value", S)]),
    "scope": pa.schema([
        ("subscription_id", S), ("display_name", S), ("status", S), ("detail", S)]),
    # Microsoft.Insights/autoscalesettings: how far a scale set may scale out at once.
    "autoscale_settings": pa.schema(_COMMON + [
        ("target_id", S), ("enabled", B), ("min_capacity", INT), ("max_capacity", INT),
        ("default_capacity", INT), ("max_scale_out_step", INT), ("profiles", INT)]),
    # --- tables filled by ARM GETs (see ADDED_TABLES in snapshot.py) ---
    # One Marketplace image version as its GET answered (`found` false: a 404, the version
    # no longer exists), keyed by location and URN.
    "marketplace_versions": pa.schema(_COMMON + [
        ("publisher", S), ("offer", S), ("sku", S), ("version", S), ("found", B),
        ("image_state", S), ("scheduled_deprecation_time", T), ("alternative_type", S),
        ("alternative_value", S)]),
    # Management locks, and the subscriptions whose whole lock list was read (a subscription
    # not listed here has locks nobody looked at: unknown, never "no lock").
    "locks": pa.schema(_COMMON + [("scope", S), ("level", S)]),
    "lock_reads": pa.schema([("subscription_id", S), ("list_id", S)]),
}
TABLES = list(TABLE_SCHEMAS)
_TIMESTAMPS = {"published_date", "end_of_life_date", "scheduled_deprecation_time"}

_CORES = min(4, os.cpu_count() or 1)
# A bad input file can hold a million problems; the manifest keeps the first ones and the count.
MAX_PROBLEMS = 1000
# Dates pandas cannot hold (it counts nanoseconds) are clamped to its range and reported.
_FAR_PAST = pd.Timestamp.min.ceil("us").tz_localize("UTC")
_FAR_FUTURE = pd.Timestamp.max.floor("us").tz_localize("UTC")
_YEAR = re.compile(r"^\s*([+-]?\d{4,})-\d\d")
_TAGS_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_SUB_RG = re.compile(r"/subscriptions/([^/]+)(?:/resourcegroups/([^/]+))?", re.IGNORECASE)
_VERSION_SUFFIX = re.compile(r"/versions/([^/]+)$")
_PROVIDERS = re.compile(r"/providers/", re.IGNORECASE)  # Marketplace ids spell it `Providers`


@dataclass
class Normalized:
    """Snapshot tables plus what was left out and why (a coverage record, never silent)."""

    tables: dict[str, pa.Table]
    read_types: Counter = field(default_factory=Counter)
    skipped_types: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0


# --- the Azure CLI's shape --------------------------------------------------------------------
# `az vm list`, `az vmss list`, `az sig list`, `az sig image-definition list`, `az sig
# image-version list`, `az image list` and `az disk list` print each resource with its
# properties lifted to the top level (beside id, name, type, location, resourceGroup, tags),
# some keys in the SDK's spelling, and, with `az vm list -d`, a `powerState` like "VM running".
# Such a resource is known by one of these keys, not null, at its top level, where ARM has none.
CLI_PROPERTY_KEYS = frozenset({
    "storageProfile", "virtualMachineProfile", "hardwareProfile", "osProfile",
    "publishingProfile", "safetyProfile", "identifier", "sourceVirtualMachine", "creationData",
    "replicationStatus", "upgradePolicy", "networkProfile", "sharingProfile"})
# What ARM keeps outside `properties`; everything else an `az` resource holds goes back in.
_ENVELOPE = frozenset({
    "id", "name", "type", "location", "tags", "sku", "plan", "identity", "zones", "kind",
    "resourceGroup", "subscriptionId", "tenantId", "managedBy", "extendedLocation", "etag",
    "systemData", "properties"})
_SDK_SPELLING = {"diskSizeGb": "diskSizeGB", "sizeInGb": "sizeInGB"}


def cli_shaped(resource: dict) -> bool:
    """Whether `resource` is printed as `az ... list` prints it (properties at the top level)."""
    return resource.get("properties") is None and any(
        resource.get(key) is not None for key in CLI_PROPERTY_KEYS)


def lifted(resource: dict) -> dict:
    """An `az`-printed resource in ARM shape: its property keys back under `properties` (in
    the REST API's spelling), `az vm list -d`'s powerState as the instance view's code."""
    properties = {key: _rest_spelling(value) for key, value in resource.items()
                  if key not in _ENVELOPE}
    power = properties.pop("powerState", None)
    if isinstance(power, str) and power.strip():
        properties.setdefault("extended", {"instanceView": {"powerState": {
            "code": "PowerState/" + power.strip().split(" ", 1)[-1].replace(" ", "")}}})
    out = {key: value for key, value in resource.items() if key in _ENVELOPE}
    out["properties"] = properties
    return out


def _rest_spelling(value):
    if isinstance(value, dict):
        return {_SDK_SPELLING.get(k, k): _rest_spelling(v) for k, v in value.items()}
    return [_rest_spelling(v) for v in value] if isinstance(value, list) else value


def without_properties(resource) -> str | None:
    """The type of a gallery, image or machine that carries no properties in any shape (a
    `--query` projection, say), which would be audited as if it had none; else None."""
    if not isinstance(resource, dict) or resource.get("properties") is not None \
            or cli_shaped(resource) or not isinstance(resource.get("id"), str):
        return None
    rtype = (_str(resource.get("type")) or type_from_id(resource["id"])).lower()
    # A lock list, a saved 404 and `az vm image show` have no `properties` of their own.
    return rtype if rtype in _Normalizer.handlers \
        and rtype not in (DISK, LOCK, MARKETPLACE_VERSION) else None


# --- small tolerant readers: Azure data may lack any optional field or carry a wrong type ---

def _obj(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _str(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _int(value) -> int | None:
    """An int that fits the tables' int64 columns, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and -2**63 <= value < 2**63:
        return value
    return None


def _float(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _lower(value) -> str | None:
    text = _str(value)
    return text.lower().rstrip("/") if text else None


def _purchase_plan(plan: dict) -> dict:
    """A definition's `purchasePlan` as its three columns (all missing when it has none)."""
    return {"purchase_plan_name": _str(plan.get("name")),
            "purchase_plan_publisher": _str(plan.get("publisher")),
            "purchase_plan_product": _str(plan.get("product"))}


def region(value) -> str | None:
    """`East US`, `eastus` and `EastUS` all become `eastus`, the ARM short form."""
    text = _str(value)
    return text.replace(" ", "").lower() if text else None


_URL_QUERY = re.compile(r"(https?://[^?\s\"]*)\?[^\s\"]*", re.IGNORECASE)


def _show(value) -> str:
    """A wrong value as a problem message shows it: its JSON, cut short, with any URL's
    query string (a SAS token, perhaps) removed."""
    text = redact_sas(_URL_QUERY.sub(r"\1?...", json.dumps(value, ensure_ascii=False,
                                                          default=str)))
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(value, convert) -> str:
    if convert is _obj:
        return "an object"
    if convert is _list:
        return "a list"
    if convert is _bool:
        return "true or false"
    return "a whole number" if convert is _int else "a number"


_CONTAINERS = {_obj: dict, _list: list}


def _stamps(text: pd.Series, ids: pd.Series, column: str, problems: list[str]) -> pd.Series:
    """ISO 8601 text to UTC timestamps. A value that cannot be read is named in `problems`;
    a date outside 1678-2262 (pandas counts nanoseconds) is clamped to that range and named,
    so `9999-12-31` stays "far future" for the rules instead of becoming missing."""
    # Azure writes 7-digit fractions; cut to microseconds so one batch parses one way.
    text = text.astype("object")
    trimmed = text.str.replace(r"(\.\d{6})\d+", r"\1", regex=True)
    stamps = pd.to_datetime(trimmed, utc=True, format="ISO8601", errors="coerce")
    if stamps.dt.unit != "ns":
        stamps = stamps.astype("datetime64[us, UTC]")
    unread = text.notna() & stamps.isna()
    early = (stamps < _FAR_PAST).fillna(False)
    late = (stamps > _FAR_FUTURE).fillna(False)
    for index in unread[unread].index:
        year = _YEAR.match(str(text[index]))
        late[index] = bool(year) and int(year.group(1)) > 2262
        early[index] = bool(year) and int(year.group(1)) < 1678
        if not (late[index] or early[index]):
            problems.append(f"{ids[index]}: {column}: cannot read {_show(text[index])} as a date")
    for mask, bound, side in ((late, _FAR_FUTURE, "after 2262"), (early, _FAR_PAST, "before 1678")):
        for index in mask[mask].index:
            problems.append(f"{ids[index]}: {column}: {_show(text[index])} is {side}, "
                            f"stored as {bound.date()}")
        stamps = stamps.mask(mask, bound)
    return stamps.astype("datetime64[ns, UTC]")


def strip_query(uri) -> str | None:
    """Blob URIs may carry a SAS token in the query string: never store it."""
    text = _str(uri)
    return text.split("?", 1)[0] if text else None


def type_from_id(arm_id: str) -> str:
    """`/…/providers/Microsoft.Compute/galleries/g/images/i` -> `microsoft.compute/galleries/images`."""
    tail = _PROVIDERS.split(arm_id)[-1].strip("/").split("/")
    if len(tail) > 3 and tail[1].lower() == "locations":  # `…/locations/westus/galleries/…`
        tail = tail[:1] + tail[3:]
    return "/".join([tail[0]] + tail[1::2]).lower() if len(tail) >= 2 else ""


def definition_of(version_id: str | None) -> str | None:
    return _VERSION_SUFFIX.sub("", version_id) if version_id else None


def parent_of(child_id: str, segment: str) -> str:
    """The id up to (not including) `/segment/`: a version's definition, a definition's gallery."""
    cut = child_id.rfind(f"/{segment}/")
    return child_id[:cut] if cut >= 0 else ""


def _capacity(capacity: dict) -> tuple[int | None, int | None, int | None]:
    """(minimum, maximum, default) of a profile; Azure writes them as text ("1")."""
    return (_int(capacity.get("minimum")), _int(capacity.get("maximum")),
            _int(capacity.get("default")))


def scale_out_step(profile: dict, capacity: tuple, lowest_minimum: int | None) -> int | None:
    """The most machines one scale-out of `profile` creates at once: its largest Increase
    rule (ChangeCount: the value; PercentChangeCount: that share of the capacity it scales
    from, at the capacity where it adds most; ExactCount: from the minimum to the value), or
    the jump to the profile's minimum when it starts above the lowest minimum of the setting
    (a scheduled profile). Bounded by the profile's maximum; None when nothing is known."""
    minimum, maximum, _ = capacity
    if minimum is None or maximum is None:
        return None
    steps = [max(minimum - lowest_minimum, 0)] if lowest_minimum is not None else [0]
    for rule in map(_obj, _list(profile.get("rules"))):
        action = _obj(rule.get("scaleAction"))
        if str(_str(action.get("direction")) or "").lower() != "increase":
            continue
        kind = str(_str(action.get("type")) or "ChangeCount").lower()
        value = _float(action.get("value"))
        if kind == "serviceallowednextvalue" or value is None or not math.isfinite(value):
            steps.append(maximum - minimum)  # unknown size: the whole range, the safe bound
        elif kind == "percentchangecount":
            # One term grows with c, the other shrinks: the best c is where they cross.
            cross = int(maximum / (1 + value / 100)) if value > -100 else maximum
            near = {minimum, maximum} | {c for c in range(cross - 1, cross + 3)
                                          if minimum <= c <= maximum}
            steps.append(max(min(-(-value * c // 100), maximum - c) for c in near))
        elif kind == "exactcount":
            steps.append(min(value, maximum) - minimum)
        else:
            steps.append(value)
    return int(max(0, min(max(steps), maximum - min(minimum, lowest_minimum or minimum))))


def chunk_schema(name: str) -> pa.Schema:
    """A table's schema while rows are gathered: timestamps are still text (they are read
    all at once when the table is finished)."""
    schema = TABLE_SCHEMAS[name]
    return pa.schema([(f.name, S if f.name in _TIMESTAMPS else f.type) for f in schema])


def sort_keys(name: str) -> list[tuple[str, str]]:
    """The order of a finished table's rows: by id (unique, as duplicates are skipped), or
    by its first three columns."""
    names = TABLE_SCHEMAS[name].names
    return [(key, "ascending") for key in (["id"] if "id" in names else names[:3])]


class _Rows:
    """Rows for one table, kept as tuples and turned into Arrow every `CHUNK_ROWS` rows, so a
    million-row table never exists as Python objects all at once."""

    CHUNK_ROWS = 65_536

    def __init__(self, name: str):
        self.name = name
        self.schema = TABLE_SCHEMAS[name]
        self._in_order = itemgetter(*self.schema.names)
        self.pending: list[tuple] = []
        self.chunks: list[pa.Table] = []
        self.problems: list[str] = []

    def add(self, **values):
        try:
            row = self._in_order(values)
        except KeyError:
            row = tuple(values.get(col) for col in self.schema.names)
        self.pending.append(row)
        if len(self.pending) >= self.CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        columns = zip(*self.pending, strict=True)
        schema = chunk_schema(self.name)
        arrays = [pa.array(values, type=fld.type, from_pandas=True)
                  for fld, values in zip(schema, columns, strict=True)]
        self.chunks.append(pa.Table.from_arrays(arrays, schema=schema))
        self.pending = []

    def extend(self, rows: pa.Table) -> None:
        """Append rows made elsewhere (in `chunk_schema`) after ours."""
        self.flush()
        self.chunks.append(rows)

    def table(self) -> pa.Table:
        self.flush()
        schema = self.schema
        if self.chunks:
            table = pa.concat_tables(self.chunks)
        else:
            table = chunk_schema(self.name).empty_table()
        self.chunks = []
        for name in _TIMESTAMPS & set(schema.names):
            text = table.column(name).to_pandas().astype("object")
            ids = table.column("arm_id").to_pandas()
            stamps = _stamps(text, ids, name, self.problems)
            stamps = stamps.dt.floor("us").astype("datetime64[us, UTC]")
            table = table.set_column(schema.get_field_index(name), schema.field(name),
                                     pa.array(stamps, type=schema.field(name).type,
                                              from_pandas=True))
        table = table.cast(schema)
        if not table.num_rows:
            return table
        order = pc.sort_indices(table, sort_keys=sort_keys(self.name))
        # Reorder column by column, letting each unsorted column go as soon as it is copied:
        # the peak is the table plus two copies of one column, not two tables (the chunks are
        # joined first, as pyarrow would do inside `take` while still holding them). One
        # column at a time: copying is bound by memory, and a second core would add a third
        # copy to the peak for little time.
        columns = table.columns
        del table
        for index in range(len(columns)):
            column = columns[index].combine_chunks()
            columns[index] = None
            columns[index] = column.take(order)
            del column
        return pa.Table.from_arrays(columns, schema=schema)


def _common(resource: dict, arm_id: str, rid: str) -> dict:
    """The columns every table has: ids, name, subscription, resource group and region (the
    id gives the subscription and group where the row does not)."""
    match = _SUB_RG.search(arm_id)
    return dict(
        id=rid, arm_id=arm_id,
        name=_str(resource.get("name")) or arm_id.rstrip("/").rsplit("/", 1)[-1],
        subscription_id=_lower(resource.get("subscriptionId"))
        or (match.group(1).lower() if match else None),
        resource_group=_str(resource.get("resourceGroup")) or (match and match.group(2)),
        location=region(resource.get("location")))


class _Normalizer:
    def __init__(self, unique_ids: bool = False):
        self.rows = {name: _Rows(name) for name in TABLES}
        # Keys (id_key) of the ids read, to skip a duplicate; None where the caller vouches
        # that no id comes twice (the collector's spill writes an id once).
        self.seen: set[int] | None = None if unique_ids else set()
        self.read: Counter = Counter()
        self.skipped: Counter = Counter()
        self.problems: list[str] = []
        self.problem_count = 0
        self.where = self.arm_id = ""
        # The gallery version of each OS disk, by its owner: Arrow chunks (a million disks as
        # Python objects would take hundreds of megabytes), and the pending (owner, version).
        self.disks: list[pa.Table] = []
        self.pending_disks: list[tuple[str, str]] = []
        self.lock_reads: dict[str, str] = {}  # subscription -> the lock list read

    def _note(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(redact_sas(problem))  # ids and values are free text

    def _read(self, value, convert, path: str):
        """`convert(value)`; a value present but of the wrong type becomes a named problem
        (file, item, id, property path) and reads as missing."""
        out = convert(value)
        kind = _CONTAINERS.get(convert)
        if value is not None and (out is None if kind is None else not isinstance(value, kind)):
            self._note(f"{self.where}: {self.arm_id}: {path}: expected "
                       f"{_expected(value, convert)}, got {_show(value)}")
        return out

    def _object(self, value, path: str) -> dict:
        """`_read(value, _obj, path)` for the common case, kept cheap: it runs several times
        for every resource."""
        if value.__class__ is dict:
            return value
        return self._read(value, _obj, path) if value is not None else {}

    def add(self, resource, where: str = "") -> None:
        if not isinstance(resource, dict):
            self.skipped["(not an object)"] += 1
            self._note(f"{where}: not a JSON object")
            return
        if cli_shaped(resource):
            resource = lifted(resource)
        arm_id = _str(resource.get("id"))
        if not arm_id:
            self.skipped["(no id)"] += 1
            self._note(f"{where}: resource without an id")
            return
        rtype = (_str(resource.get("type")) or type_from_id(arm_id)).lower()
        handler = self.handlers.get(rtype)
        if handler is None:
            self.skipped[rtype or "(no type)"] += 1
            return
        rid = arm_id.lower().rstrip("/")
        if self.seen is not None:
            key = id_key(rid)
            if key in self.seen:
                self.skipped["(duplicate id)"] += 1
                self._note(f"{where}: duplicate id {arm_id}")
                return
            self.seen.add(key)
        self.where, self.arm_id = where, arm_id
        self.read[rtype] += 1
        if rtype == DISK:
            self._disk(resource)
            return
        if rtype == AUTOSCALE:
            self._autoscale(resource, arm_id, rid)
            return
        if rtype in (MARKETPLACE_VERSION, LOCK):
            handler[1](self, _common(resource, arm_id, rid), resource)
            return
        common = dict(_common(resource, arm_id, rid), type=rtype)
        tags = self._tags(self._object(resource.get("tags"), "tags"), rid, handler[0])
        handler[1](self, common, self._object(resource.get("properties"), "properties"),
                   resource, tags)

    def take(self, block) -> bool:
        """Take the rows columnar.py made of a block of resources that follow ours, as if we
        had read them; refused (False) when it holds an id we have read, so the caller reads
        the block here, resource by resource, and the duplicate is named."""
        if self.seen is not None:
            keys = list(map(id_key, block.ids.to_pylist()))
            if not self.seen.isdisjoint(keys):
                return False
            self.seen.update(keys)
        for name, rows in block.tables.items():
            self.rows[name].extend(rows)
        self.read.update(block.read)
        self.skipped.update(block.skipped)
        if block.disks.num_rows:
            self.disks.append(block.disks)
        return True

    def _tags(self, raw, rid: str, table: str) -> str:
        if not raw or not isinstance(raw, dict):
            return "{}"
        tags = {str(k): _str(v) if _str(v) is not None else "" for k, v in raw.items()}
        out = self.rows["resource_tags"]
        out.pending.extend((rid, table, key, key.lower(), value) for key, value in tags.items())
        if len(out.pending) >= out.CHUNK_ROWS:
            out.flush()
        return _TAGS_JSON(tags)

    def _gallery(self, common, props, raw, tags):
        sharing = self._object(props.get("sharingProfile"), "properties.sharingProfile")
        groups = sharing.get("groups")
        for group in map(_obj, self._read(groups, _list, "properties.sharingProfile.groups")):
            for target in _list(group.get("ids")):
                self.rows["gallery_shares"].add(gallery_id=common["id"],
                                                type=_str(group.get("type")), target=_lower(target))
        # The names other tenants reach this gallery by: `sharedGalleries/<uniqueName>` when
        # shared directly, `communityGalleries/<publicName>` when shared with the community.
        public_names = [_lower(n) for n in _list(_obj(sharing.get("communityGalleryInfo")).get(
            "publicNames"))]
        self.rows["galleries"].add(**common, description=_str(props.get("description")),
                                   tags=tags, sharing_permissions=_str(sharing.get("permissions")),
                                   sharing_groups_read=isinstance(groups, list),
                                   unique_name=_lower(_obj(props.get("identifier")).get("uniqueName")),
                                   community_names=",".join(n for n in public_names if n) or None)

    def _role_assignment(self, common, props, raw, tags):
        self.rows["role_assignments"].add(
            id=common["id"], scope=_lower(props.get("scope")),
            principal_id=_lower(props.get("principalId")),
            principal_type=_str(props.get("principalType")),
            role_definition_id=_lower(props.get("roleDefinitionId")))

    def _definition(self, common, props, raw, tags):
        ident = _obj(props.get("identifier"))
        self.rows["image_definitions"].add(
            **common, gallery_id=parent_of(common["id"], "images"),
            os_type=_str(props.get("osType")), os_state=_str(props.get("osState")),
            hyper_v_generation=_str(props.get("hyperVGeneration")),
            architecture=_str(props.get("architecture")),
            publisher=_str(ident.get("publisher")), offer=_str(ident.get("offer")),
            sku=_str(ident.get("sku")), end_of_life_date=_str(props.get("endOfLifeDate")),
            provisioning_state=_str(props.get("provisioningState")), tags=tags,
            security_type=_security_type(props.get("features")),
            **_purchase_plan(_obj(props.get("purchasePlan"))))

    def _version(self, common, props, raw, tags):
        vid = common["id"]
        read = self._read
        publishing = self._object(props.get("publishingProfile"), "properties.publishingProfile")
        storage = self._object(props.get("storageProfile"), "properties.storageProfile")
        safety = _obj(props.get("safetyProfile"))
        os_image = self._object(storage.get("osDiskImage"),
                                "properties.storageProfile.osDiskImage")
        if "/" in (common["name"] or ""):
            # A nested name given in full (`gallery/image/1.0.0`, as ARM templates and some
            # exports write it): the version is the id's last segment, in its own casing.
            common = dict(common, name=common["arm_id"].rstrip("/").rsplit("/", 1)[-1])
        semver = _SEMVER.match(common["name"] or "")
        if not semver:
            self._note(f"{self.where}: {self.arm_id}: name: expected MAJOR.MINOR.PATCH, "
                       f"got {_show(common['name'])}")
        replica_count = read(publishing.get("replicaCount"), _int,
                             "properties.publishingProfile.replicaCount")
        # Absent, the API's default is Standard_LRS; with the strategy PreferStandard_ZRS (API
        # 2025-03-03) each region gets ZRS where it has zones, so it stays unset here.
        storage_type = _str(publishing.get("storageAccountType")) or (
            None if _lower(publishing.get("storageAccountStrategy")) == "preferstandard_zrs"
            else DEFAULT_STORAGE_TYPE)
        # `sizedInGB`: the spelling of API 2018-06-01's preview.
        data_sizes = [_float(_obj(d).get("sizeInGB")) if _obj(d).get("sizeInGB") is not None
                      else _float(_obj(d).get("sizedInGB"))
                      for d in _list(storage.get("dataDiskImages"))]
        targets = [_obj(t) for t in read(publishing.get("targetRegions"), _list,
                                          "properties.publishingProfile.targetRegions")]
        if publishing.get("targetRegions") is None:
            # API 2018-06-01 preview: `regions`, a list of region names, before targetRegions.
            targets = [{"name": t} if isinstance(t, str) else _obj(t) for t in read(
                publishing.get("regions"), _list, "properties.publishingProfile.regions")]
        misshapen = any(value is not None and not isinstance(value, kind) for value, kind in (
            (raw.get("properties"), dict), (props.get("publishingProfile"), dict),
            (publishing.get("targetRegions"), list)))
        if not targets and not misshapen:  # (a misshapen one is named already)
            self._note(f"{self.where}: {self.arm_id}: properties.publishingProfile.targetRegions: "
                       "no target region (every version is replicated at least to its own)")
        for target in targets:
            target_region = region(target.get("name"))
            if not target_region:
                self._note(f"{self.where}: {self.arm_id}: "
                           "properties.publishingProfile.targetRegions[]: region without a name")
                continue
            regional = read(target.get("regionalReplicaCount"), _int,
                            "properties.publishingProfile.targetRegions[].regionalReplicaCount")
            self.rows["version_regions"].add(
                version_id=vid, region=target_region,
                regional_replica_count=regional if regional is not None else replica_count,
                storage_account_type=_str(target.get("storageAccountType")) or storage_type,
                exclude_from_latest=_regional_exclusion(target), **_region_encryption(target))
        # Only an ARM GET with $expand=ReplicationStatus (`collect --deep`) carries this.
        for status in map(_obj, _list(_obj(props.get("replicationStatus")).get("summary"))):
            self.rows["version_replication"].add(
                version_id=vid, region=region(status.get("region")), state=_str(status.get("state")),
                progress=_int(status.get("progress")), details=_str(status.get("details")))
        self._replica_sets(vid, targets, publishing)
        source = _obj(storage.get("source"))
        # Where the source lived: storageProfile.source (API 2019-07-01 on), the OS disk image's
        # source (snapshots, VHDs), publishingProfile.source.managedImage (2018-06-01, 2019-03-01).
        source_id = source.get("id") or _obj(os_image.get("source")).get("id") or _obj(
            _obj(publishing.get("source")).get("managedImage")).get("id")
        self.rows["image_versions"].add(
            **common, definition_id=parent_of(vid, "versions"),
            gallery_id=parent_of(vid, "images"),
            major=int(semver.group(1)) if semver else None,
            minor=int(semver.group(2)) if semver else None,
            patch=int(semver.group(3)) if semver else None,
            published_date=_str(publishing.get("publishedDate")),
            end_of_life_date=_str(publishing.get("endOfLifeDate")),
            exclude_from_latest=bool(_bool(publishing.get("excludeFromLatest"))),
            replica_count=replica_count, storage_account_type=storage_type,
            replication_mode=_str(publishing.get("replicationMode")),
            target_region_count=len(targets),
            os_disk_size_gb=read(os_image.get("sizeInGB"), _float,
                                 "properties.storageProfile.osDiskImage.sizeInGB")
            if os_image.get("sizeInGB") is not None else _float(os_image.get("sizedInGB")),
            data_disk_size_gb=sum(s for s in data_sizes if s is not None) if data_sizes else 0.0,
            source_id=_lower(source_id),
            source_uri=strip_query(source.get("uri") or _obj(os_image.get("source")).get("uri")),
            provisioning_state=_str(props.get("provisioningState")),
            allow_deletion_of_replicated_locations=_bool(
                safety.get("allowDeletionOfReplicatedLocations")),
            block_deletion_before_end_of_life=_bool(safety.get("blockDeletionBeforeEndOfLife")),
            tags=tags, storage_account_strategy=_str(publishing.get("storageAccountStrategy")),
            reported_for_policy_violation=_bool(safety.get("reportedForPolicyViolation")),
            policy_violations=_policy_violations(safety.get("policyViolations")),
            data_disk_count=len(_list(storage.get("dataDiskImages"))))

    def _replica_sets(self, vid: str, targets: list[dict], publishing: dict) -> None:
        """Replicas beside the regions' ordinary ones: additional replica sets of a target
        region (a target without a name has been named as a problem already), then Edge
        Zone targets."""
        for target in targets:
            target_region = region(target.get("name"))
            for extra in map(_obj, _list(target.get("additionalReplicaSets"))):
                if target_region:
                    self.rows["version_replica_sets"].add(
                        version_id=vid, region=target_region,
                        storage_account_type=_str(extra.get("storageAccountType")),
                        regional_replica_count=_int(extra.get("regionalReplicaCount")),
                        extended_location=None)
        for edge in map(_obj, _list(publishing.get("targetExtendedLocations"))):
            self.rows["version_replica_sets"].add(
                version_id=vid, region=region(edge.get("name")),
                storage_account_type=_str(edge.get("storageAccountType")),
                regional_replica_count=_int(edge.get("extendedLocationReplicaCount")),
                extended_location=_str(_obj(edge.get("extendedLocation")).get("name")))

    def _managed_image(self, common, props, raw, tags):
        storage = self._object(props.get("storageProfile"), "properties.storageProfile")
        os_disk = self._object(storage.get("osDisk"), "properties.storageProfile.osDisk")
        data_sizes = [_float(_obj(d).get("diskSizeGB")) for d in _list(storage.get("dataDisks"))]
        self.rows["managed_images"].add(
            **common, os_type=_str(os_disk.get("osType")), os_state=_str(os_disk.get("osState")),
            hyper_v_generation=_str(props.get("hyperVGeneration")),
            source_vm_id=_lower(_obj(props.get("sourceVirtualMachine")).get("id")),
            os_disk_size_gb=self._read(os_disk.get("diskSizeGB"), _float,
                                       "properties.storageProfile.osDisk.diskSizeGB"),
            data_disk_size_gb=sum(s for s in data_sizes if s is not None) if data_sizes else 0.0,
            storage_account_type=_str(os_disk.get("storageAccountType")),
            blob_uri=strip_query(os_disk.get("blobUri")),
            os_snapshot_id=_lower(_obj(os_disk.get("snapshot")).get("id")),
            os_managed_disk_id=_lower(_obj(os_disk.get("managedDisk")).get("id")),
            zone_resilient=_bool(storage.get("zoneResilient")),
            provisioning_state=_str(props.get("provisioningState")), tags=tags)

    def _machine(self, common, props, raw, tags):
        is_vmss = common["type"] == VMSS
        sku = _obj(raw.get("sku"))
        if is_vmss:
            vm_profile = self._object(props.get("virtualMachineProfile"),
                                      "properties.virtualMachineProfile")
            storage = self._object(vm_profile.get("storageProfile"),
                                   "properties.virtualMachineProfile.storageProfile")
            capacity = self._read(sku.get("capacity"), _int, "sku.capacity")
            capacity = capacity if capacity is not None else 0
            vm_size = _str(sku.get("name"))
            os_profile = _obj(vm_profile.get("osProfile"))
            upgrade = _obj(props.get("upgradePolicy"))
            automatic = _bool(_obj(upgrade.get("automaticOSUpgradePolicy")).get(
                "enableAutomaticOSUpgrade"))
            rolling = _obj(upgrade.get("rollingUpgradePolicy"))
            scale_set = dict(
                scale_set_id=None, orchestration_mode=_str(props.get("orchestrationMode")),
                upgrade_mode=_str(upgrade.get("mode")),
                # API 2017-03-30 to 2018-06-01 spelled it `upgradePolicy.automaticOSUpgrade`.
                automatic_os_upgrade=automatic if automatic is not None
                else _bool(upgrade.get("automaticOSUpgrade")),
                health_probe_id=_lower(_obj(_obj(vm_profile.get("networkProfile")).get(
                    "healthProbe")).get("id")),
                health_extension=_health_extension(vm_profile),
                # As recorded (absent stays null): REP002 applies the API's defaults.
                overprovision=_bool(props.get("overprovision")),
                rolling_max_batch_percent=_int(rolling.get("maxBatchInstancePercent")),
                rolling_max_surge=_bool(rolling.get("maxSurge")))
        else:
            vm_profile = None
            storage = self._object(props.get("storageProfile"), "properties.storageProfile")
            capacity = 1
            vm_size = _str(_obj(props.get("hardwareProfile")).get("vmSize"))
            os_profile = _obj(props.get("osProfile"))
            # A Flexible scale set's member is an ordinary VM that names its set.
            scale_set = dict(
                scale_set_id=_lower(_obj(props.get("virtualMachineScaleSet")).get("id")),
                orchestration_mode=None, upgrade_mode=None, automatic_os_upgrade=None,
                health_probe_id=None, health_extension=None, overprovision=None,
                rolling_max_batch_percent=None, rolling_max_surge=None)
        ref = self._object(storage.get("imageReference"), "storageProfile.imageReference")
        os_disk = _obj(storage.get("osDisk"))
        # An unmanaged OS disk is a page blob: a VM's `vhd` (and, from a user image VHD, its
        # `image`), a scale set's `vhdContainers`; whatever its imageReference says.
        blobs = [_str(_obj(os_disk.get("vhd")).get("uri")), _str(_obj(os_disk.get("image")).get("uri")),
                 _str((_list(os_disk.get("vhdContainers")) or [None])[0])]
        vhd_uri = strip_query(next((blob for blob in blobs if blob), None))
        image = _image_reference(ref, vhd_uri)
        plan = _obj(raw.get("plan"))
        power = _str(_obj(_obj(_obj(props.get("extended")).get("instanceView")).get("powerState"))
                     .get("code"))
        os_type = _str(os_disk.get("osType")) or (
            "Windows" if "windowsConfiguration" in os_profile
            else "Linux" if "linuxConfiguration" in os_profile else None)
        self.rows["machines"].add(
            **common, kind="vmss" if is_vmss else "vm", capacity=capacity, vm_size=vm_size,
            os_type=os_type, **image, vhd_uri=vhd_uri, os_disk_unmanaged=vhd_uri is not None,
            os_disk_create_option=_str(os_disk.get("createOption")),
            license_type=_str((vm_profile if is_vmss else props).get("licenseType")),
            plan_name=_str(plan.get("name")), plan_publisher=_str(plan.get("publisher")),
            plan_product=_str(plan.get("product")),
            power_state=power.split("/", 1)[-1].lower() if power else None,
            running_version_id=None, running_versions=None, tags=tags,
            managed_by=_lower(raw.get("managedBy")), **scale_set,
            security_type=_str(_obj((vm_profile if is_vmss else props).get(
                "securityProfile")).get("securityType")),
            hyper_v_generation=None if is_vmss else _str(_obj(_obj(props.get("extended")).get(
                "instanceView")).get("hyperVGeneration")))

    def _instance(self, common, props, raw, tags):
        storage = self._object(props.get("storageProfile"), "properties.storageProfile")
        ref = self._object(storage.get("imageReference"), "storageProfile.imageReference")
        power = _str(_obj(_obj(_obj(props.get("extended")).get("instanceView")).get("powerState"))
                     .get("code"))
        self.rows["instances"].add(
            **common, scale_set_id=parent_of(common["id"], "virtualmachines") or None,
            instance_id=_str(raw.get("instanceId")) or _str(props.get("instanceId")),
            **_image_reference(ref, None),
            latest_model_applied=self._read(props.get("latestModelApplied"), _bool,
                                            "properties.latestModelApplied"),
            power_state=power.split("/", 1)[-1].lower() if power else None, tags=tags)

    def _disk(self, raw):
        props = self._object(raw.get("properties"), "properties")
        gallery_ref = _obj(_obj(props.get("creationData")).get("galleryImageReference"))
        owner = _lower(raw.get("managedBy"))
        version_id = _lower(gallery_ref.get("id"))
        if owner and version_id:
            # A scale set's instance disks are managed by `<vmss id>/virtualMachines/<n>`.
            owner = re.sub(r"/virtualmachines/[^/]+$", "", owner) \
                if "/virtualmachinescalesets/" in owner else owner
            self._running(owner, version_id)

    def _autoscale(self, raw, arm_id: str, rid: str):
        """An autoscale setting: what it scales and the most machines it creates at once."""
        props = self._object(raw.get("properties"), "properties")
        profiles = [_obj(p) for p in _list(props.get("profiles"))]
        capacities = [_capacity(_obj(p.get("capacity"))) for p in profiles]
        minimums = [c[0] for c in capacities if c[0] is not None]
        maximums = [c[1] for c in capacities if c[1] is not None]
        steps = [scale_out_step(p, c, min(minimums, default=None))
                 for p, c in zip(profiles, capacities, strict=True)]
        steps = [s for s in steps if s is not None]
        self.rows["autoscale_settings"].add(
            **_common(raw, arm_id, rid),
            target_id=_lower(props.get("targetResourceUri")),
            enabled=_bool(props.get("enabled")),
            min_capacity=min(minimums, default=None), max_capacity=max(maximums, default=None),
            default_capacity=capacities[0][2] if capacities else None,
            max_scale_out_step=max(steps, default=None), profiles=len(profiles))

    def _marketplace_version(self, common: dict, raw: dict) -> None:
        """A Marketplace version GET body (REST, or `az vm image show` with the properties at
        the top level); a saved 404 is its error body with the request path as `id`."""
        props = self._object(raw.get("properties"), "properties")
        status = _obj(props.get("imageDeprecationStatus") or raw.get("imageDeprecationStatus"))
        alternative = _obj(status.get("alternativeOption"))
        path = dict(zip(*[iter(common["arm_id"].strip("/").split("/"))] * 2, strict=False))
        path = {key.lower(): value for key, value in path.items()}
        found = "error" not in raw
        self.rows["marketplace_versions"].add(
            **dict(common, location=common["location"] or region(path.get("locations"))),
            publisher=path.get("publishers"), offer=path.get("offers"), sku=path.get("skus"),
            version=path.get("versions"), found=found,
            image_state=_str(status.get("imageState")) if found else None,
            scheduled_deprecation_time=_str(status.get("scheduledDeprecationTime")),
            alternative_type=_str(alternative.get("type")),
            alternative_value=_str(alternative.get("value")))

    def _lock(self, common: dict, raw: dict) -> None:
        """A management lock; or a whole `Management Locks - List At Subscription Level` body
        named by its request path (`/subscriptions/S/providers/Microsoft.Authorization/locks`),
        which also says the subscription's list was read, empty or not. A lock on its own
        says nothing of the locks beside it."""
        props = self._object(raw.get("properties"), "properties")
        items = raw.get("value")
        if isinstance(items, list):
            self.lock_reads[common["subscription_id"]] = common["arm_id"]
            for index, item in enumerate(items):
                self.add(item, where=f"{self.where} value[{index}]")
            return
        self.rows["locks"].add(
            **common, scope=common["id"].rsplit("/providers/microsoft.authorization/locks/", 1)[0],
            level=_str(props.get("level")))

    def _running(self, owner: str, version_id: str) -> None:
        """A machine's OS disk (one per instance of a scale set) came from `version_id`."""
        self.pending_disks.append((owner, version_id))
        if len(self.pending_disks) >= _Rows.CHUNK_ROWS:
            self._flush_disks()

    def _flush_disks(self) -> None:
        if self.pending_disks:
            owners, versions = zip(*self.pending_disks, strict=True)
            self.disks.append(pa.table({"owner": pa.array(owners, S), "version": pc.dictionary_encode(
                pa.array(versions, S))}))
            self.pending_disks = []

    handlers = {
        GALLERY: ("galleries", _gallery),
        DEFINITION: ("image_definitions", _definition),
        VERSION: ("image_versions", _version),
        MANAGED_IMAGE: ("managed_images", _managed_image),
        VM: ("machines", _machine),
        VMSS: ("machines", _machine),
        AUTOSCALE: ("autoscale_settings", None),
        DISK: ("disks", None),
        ROLE_ASSIGNMENT: ("role_assignments", _role_assignment),
        MARKETPLACE_VERSION: ("marketplace_versions", _marketplace_version),
        LOCK: ("locks", _lock),
        INSTANCE: ("instances", _instance),
    }

    def finish(self, scope: Iterable[dict] | None) -> Normalized:
        self.seen = None  # every id read: no longer needed, and freed before the tables' peak
        for row in scope or ():
            self.rows["scope"].add(**{k: row.get(k) for k in TABLE_SCHEMAS["scope"].names})
        for subscription in sorted(s for s in self.lock_reads if s):
            self.rows["lock_reads"].add(subscription_id=subscription,
                                        list_id=self.lock_reads[subscription])
        tables = {name: rows.table() for name, rows in self.rows.items()}
        for rows in self.rows.values():
            for problem in rows.problems:
                self._note(problem)
        self._flush_disks()
        if self.disks:
            machines = tables["machines"]
            running = _running_versions(pa.concat_tables(self.disks))
            self.disks = []
            at = pc.index_in(machines.column("id"), value_set=running["owner"])
            for column in ("running_version_id", "running_versions"):
                index = machines.schema.get_field_index(column)
                machines = machines.set_column(index, machines.schema.field(index),
                                               running[column].take(at).cast(S))
            tables["machines"] = machines
        return Normalized(tables=tables, read_types=self.read, skipped_types=self.skipped,
                          problems=self.problems, problem_count=self.problem_count)


def _regional_exclusion(target: dict) -> bool | None:
    """A target region's own excludeFromLatest (tri-state: absent is None, so the version's
    flag applies there). Microsoft's best-practice text also spells it
    `regionalExcludeFromLatest`."""
    flag = _bool(target.get("excludeFromLatest"))
    return flag if flag is not None else _bool(target.get("regionalExcludeFromLatest"))


APPLICATION_HEALTH = {"applicationhealthlinux", "applicationhealthwindows"}


def _security_type(features) -> str | None:
    """The value of a definition's SecurityType feature (its name in any casing)."""
    for feature in map(_obj, _list(features)):
        if (_str(feature.get("name")) or "").lower() == "securitytype":
            return _str(feature.get("value"))
    return None


def _policy_violations(violations) -> str | None:
    """`category: details` of each policy violation, joined with "; "."""
    texts = []
    for violation in map(_obj, _list(violations)):
        category, details = _str(violation.get("category")) or "?", _str(violation.get("details"))
        texts.append(f"{category}: {details}" if details else category)
    return "; ".join(texts) or None


def _region_encryption(target: dict) -> dict:
    """A target region's OS disk image encryption: its disk encryption set and, for a
    confidential VM image, the confidential encryption type and secure disk encryption set."""
    encryption = _obj(target.get("encryption"))
    os_image = _obj(encryption.get("osDiskImage"))
    security = _obj(os_image.get("securityProfile"))
    return dict(disk_encryption_set_id=_lower(os_image.get("diskEncryptionSetId")),
                confidential_vm_encryption_type=_str(security.get("confidentialVMEncryptionType")),
                secure_vm_disk_encryption_set_id=_lower(security.get("secureVMDiskEncryptionSetId")),
                encrypted_data_disks=sum(1 for disk in map(_obj, _list(encryption.get(
                    "dataDiskImages"))) if _lower(disk.get("diskEncryptionSetId"))))


def _health_extension(vm_profile: dict) -> str | None:
    """The type of the scale set model's Application Health extension, if it has one."""
    for extension in _list(_obj(vm_profile.get("extensionProfile")).get("extensions")):
        kind = _str(_obj(_obj(extension).get("properties")).get("type"))
        if kind and kind.lower() in APPLICATION_HEALTH:
            return kind
    return None


def id_key(rid: str) -> int:
    """A lower-cased id as a 128-bit number (two independent 64-bit string hashes): the ids
    read are a set of a million and a half at 1M machines, a third of the memory as numbers.
    Two ids share a key with a chance near 10^-26 at that size."""
    return (hash(rid) << 64) ^ (hash(rid + "\0") & 0xFFFF_FFFF_FFFF_FFFF)


def version_order(version_id: str) -> tuple:
    """A version id's sort key: MAJOR.MINOR.PATCH compared as numbers (1.10.0 after 1.9.0);
    a name of another form after every numbered one, by its text."""
    name = version_id.rsplit("/", 1)[-1]
    semver = _SEMVER.match(name)
    return (0, *map(int, semver.groups()), "") if semver else (1, 0, 0, 0, name)


def _running_versions(disks: pa.Table) -> pa.Table:
    """For each owner of OS disks (`owner`, `version`: one row a disk): the lowest version (as
    numbers) and every version with its disk count, as a JSON object in version order (the
    text `json.dumps` gives). Column by column, by sorting (no hash table of a million
    owners). An estate has a million disks but few versions, and most owners run one: the
    two columns come back dictionary-encoded, each distinct version and `{"version": count}`
    made once, so they take megabytes rather than hundreds until cast."""
    if not pa.types.is_dictionary(disks.schema.field("version").type):
        disks = disks.set_column(1, "version", pc.dictionary_encode(disks["version"]))
    disks = disks.unify_dictionaries()  # one dictionary of the versions for every chunk
    chunks = disks["version"].chunks
    versions = chunks[0].dictionary if chunks else pa.array([], S)
    names = versions.to_pylist()
    rank = np.empty(len(names), np.int64)
    # Ties (the same number in two definitions) go by the id's text: a rank names a version.
    rank[sorted(range(len(names)), key=lambda i: (version_order(names[i]), names[i]))] = \
        np.arange(len(names))
    by_rank = versions.take(pa.array(np.argsort(rank)))
    names = by_rank.to_pylist()
    ranks = rank[np.concatenate([chunk.indices.to_numpy() for chunk in chunks])]
    order = pc.sort_indices(pa.table({"owner": disks["owner"], "rank": ranks}),
                            [("owner", "ascending"), ("rank", "ascending")])
    owners = disks["owner"].take(order).combine_chunks()
    ranks = ranks[order.to_numpy()]
    new_owner = np.r_[True, pc.not_equal(owners[1:], owners[:-1]).to_numpy(
        zero_copy_only=False)]
    pair = np.flatnonzero(new_owner | np.r_[True, ranks[1:] != ranks[:-1]])
    counts = np.diff(np.r_[pair, len(ranks)])
    first = new_owner[pair]  # each owner's first pair
    owners = owners.take(pa.array(pair[first]))
    starts = np.r_[np.flatnonzero(first), len(pair)]  # each owner's pairs: starts[i]:starts[i+1]
    alone = np.diff(starts) == 1
    # An owner of one version: its text is that of its (version, count), made once each.
    combos, which = np.unique(np.c_[ranks[pair[starts[:-1]]], counts[starts[:-1]]][alone],
                              axis=0, return_inverse=True)
    texts = [json.dumps({names[r]: int(n)}) for r, n in combos]
    code = np.empty(len(owners), np.int64)
    code[alone] = which.reshape(-1)
    for at in np.flatnonzero(~alone):  # owners of several versions: few, each its own text
        span = range(starts[at], starts[at + 1])
        code[at] = len(texts)
        texts.append(json.dumps({names[ranks[pair[i]]]: int(counts[i]) for i in span}))
    return pa.table({
        "owner": owners,
        "running_version_id": pa.DictionaryArray.from_arrays(
            pa.array(ranks[pair[first]].astype(np.int32)), by_rank),
        "running_versions": pa.DictionaryArray.from_arrays(
            pa.array(code.astype(np.int32)), pa.array(texts, S))})


def _image_reference(ref: dict, vhd_uri: str | None) -> dict:
    """Classify a VM or scale set imageReference into the machines table's image columns."""
    out = dict(image_kind="unknown", image_publisher=None, image_offer=None, image_sku=None,
               image_version=None, exact_version=_str(ref.get("exactVersion")), image_id=None,
               image_definition_id=None)
    ref_id = _lower(ref.get("id"))
    shared = _lower(ref.get("sharedGalleryImageId"))
    community = _lower(ref.get("communityGalleryImageId"))
    if ref_id and "/providers/microsoft.compute/images/" in ref_id:
        out.update(image_kind="managed", image_id=ref_id)
    elif ref_id and "/galleries/" in ref_id:
        version = _VERSION_SUFFIX.search(ref_id)
        out.update(image_kind="gallery", image_id=ref_id, image_definition_id=definition_of(ref_id),
                   image_version=version.group(1) if version else None)
    elif shared or community:
        gallery_id = shared or community
        version = _VERSION_SUFFIX.search(gallery_id)
        out.update(image_kind="shared" if shared else "community", image_id=gallery_id,
                   image_definition_id=definition_of(gallery_id),
                   image_version=version.group(1) if version else None)
    elif ref.get("publisher") or ref.get("offer"):
        out.update(image_kind="marketplace", image_publisher=_str(ref.get("publisher")),
                   image_offer=_str(ref.get("offer")), image_sku=_str(ref.get("sku")),
                   image_version=_str(ref.get("version")))
    elif ref_id:
        out.update(image_id=ref_id)
    elif vhd_uri:
        out.update(image_kind="vhd")
    return out


@dataclass
class JsonLines:
    """A block of whole JSON lines, and the way to read its resources one by one (with where
    each is in its file) should the block not be taken column by column."""

    data: bytes
    again: Callable[[], Iterable]


@contextmanager
def _collector_paused():
    """Bulk loading allocates millions of acyclic objects; the cyclic collector would rescan
    the growing heap again and again (3x slower), so it is paused for the load."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextmanager
def _memory_handed_back():
    """pyarrow's default allocator keeps freed memory for its own reuse, which a bulk load
    rarely makes (finishing a table copies each column once, in its sorted order): its peak
    would grow by a table. jemalloc, told to hand freed memory back at once, keeps the peak
    near what is alive. Where pyarrow is built without jemalloc, the default stays."""
    previous = pa.default_memory_pool()
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:
        pass
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def normalize(resources: Iterable, scope: Iterable[dict] | None = None,
              columns: Callable[[bytes], object] | None = None,
              unique_ids: bool = False) -> Normalized:
    """Turn raw resources (any mix of supported types, any casing) into snapshot tables.

    Items are resource dicts, `(where, resource)` pairs whose `where` (file and position)
    names the item in problems reported about it, or `JsonLines` blocks, normalised column by
    column by `columns` (columnar.normalize_lines) where it can, here resource by resource
    where it cannot or where no `columns` is given.
    """
    normalizer = _Normalizer(unique_ids)
    with _collector_paused(), _memory_handed_back():
        for index, item in enumerate(_blocks_read_ahead(resources, columns)):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], JsonLines):
                lines, block = item[0], item[1].result()
                if block is None or not normalizer.take(block):
                    for where, resource in lines.again():
                        normalizer.add(resource, where=where)
                elif len(block.by_reference):  # ARM GET bodies the columns left to us
                    wanted = set(block.by_reference.tolist())
                    for at, (where, resource) in enumerate(lines.again()):
                        if at in wanted:
                            normalizer.add(resource, where=where)
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                normalizer.add(item[1], where=item[0])
            else:
                normalizer.add(item, where=f"item {index}")
        return normalizer.finish(scope)


def _none(data: bytes) -> None:
    """No columns: the block is read resource by resource."""
    return None


def _blocks_read_ahead(resources: Iterable, columns: Callable | None) -> Iterator:
    """The items in order, each `JsonLines` block paired with the future of its columns:
    pyarrow works without the interpreter lock, so blocks are normalised on every core
    while earlier ones are taken in, in order; a few at a time, so memory stays bounded."""
    workers = _CORES
    with ThreadPoolExecutor(workers) as pool:
        ahead: deque = deque()
        for item in resources:
            if isinstance(item, JsonLines):
                ahead.append((item, pool.submit(columns or _none, item.data)))
                if len(ahead) > workers:
                    yield ahead.popleft()
                continue
            yield from ahead
            ahead.clear()
            yield item
        yield from ahead
