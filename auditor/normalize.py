"""Raw Azure resource objects (ARM or Resource Graph shape) into the snapshot tables.

This is the one code path every input goes through: `import`, the collector, the sample
estate and synthetic estates. Azure's untidiness is absorbed here and nowhere else: type and
id casing, region display names, ids without subscriptionId/resourceGroup fields, optional
properties that are absent or of the wrong type, timestamps with 7-digit fractions.
"""

from __future__ import annotations

import gc
import json
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter

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
DISK = "microsoft.compute/disks"

S, INT, F, B, T = pa.string(), pa.int64(), pa.float64(), pa.bool_(), pa.timestamp("us", tz="UTC")

_COMMON = [("id", S), ("arm_id", S), ("name", S), ("subscription_id", S),
           ("resource_group", S), ("location", S)]

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "galleries": pa.schema(_COMMON + [("description", S), ("tags", S)]),
    "image_definitions": pa.schema(_COMMON + [
        ("gallery_id", S), ("os_type", S), ("os_state", S), ("hyper_v_generation", S),
        ("architecture", S), ("publisher", S), ("offer", S), ("sku", S),
        ("end_of_life_date", T), ("provisioning_state", S), ("tags", S)]),
    "image_versions": pa.schema(_COMMON + [
        ("definition_id", S), ("gallery_id", S), ("major", INT), ("minor", INT), ("patch", INT),
        ("published_date", T), ("end_of_life_date", T), ("exclude_from_latest", B),
        ("replica_count", INT), ("storage_account_type", S), ("replication_mode", S),
        ("target_region_count", INT), ("os_disk_size_gb", F), ("data_disk_size_gb", F),
        ("source_id", S), ("source_uri", S), ("provisioning_state", S),
        ("allow_deletion_of_replicated_locations", B),
        ("block_deletion_before_end_of_life", B), ("tags", S)]),
    "version_regions": pa.schema([
        ("version_id", S), ("region", S), ("regional_replica_count", INT),
        ("storage_account_type", S), ("exclude_from_latest", B)]),
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
        ("plan_name", S), ("plan_publisher", S), ("plan_product", S), ("power_state", S),
        ("running_version_id", S), ("tags", S)]),
    "resource_tags": pa.schema([
        ("resource_id", S), ("resource_table", S), ("key", S), ("key_lower", S), ("value", S)]),
    "scope": pa.schema([
        ("subscription_id", S), ("display_name", S), ("status", S), ("detail", S)]),
}
TABLES = list(TABLE_SCHEMAS)
_TIMESTAMPS = {"published_date", "end_of_life_date"}

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


@dataclass
class Normalized:
    """Snapshot tables plus what was left out and why (a coverage record, never silent)."""

    tables: dict[str, pa.Table]
    read_types: Counter = field(default_factory=Counter)
    skipped_types: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0


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
    tail = arm_id.rsplit("/providers/", 1)[-1].strip("/").split("/")
    if len(tail) > 3 and tail[1].lower() == "locations":  # `…/locations/westus/galleries/…`
        tail = tail[:1] + tail[3:]
    return "/".join([tail[0]] + tail[1::2]).lower() if len(tail) >= 2 else ""


def definition_of(version_id: str | None) -> str | None:
    return _VERSION_SUFFIX.sub("", version_id) if version_id else None


def parent_of(child_id: str, segment: str) -> str:
    """The id up to (not including) `/segment/`: a version's definition, a definition's gallery."""
    cut = child_id.rfind(f"/{segment}/")
    return child_id[:cut] if cut >= 0 else ""


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
        # Reorder column by column, letting each unsorted column go as soon as it is copied
        # (the peak is one table plus two copies of a column per core, not two tables: the
        # chunks are joined first, as pyarrow would do inside `take` while still holding
        # them); pyarrow copies without the interpreter lock, so the cores share the columns.
        columns = table.columns
        del table

        def reorder(index: int) -> None:
            column = columns[index].combine_chunks()
            columns[index] = None
            columns[index] = column.take(order)

        with ThreadPoolExecutor(_CORES) as pool:
            list(pool.map(reorder, range(len(columns))))
        return pa.Table.from_arrays(columns, schema=schema)


class _Normalizer:
    def __init__(self):
        self.rows = {name: _Rows(name) for name in TABLES}
        self.seen: set[str] = set()
        self.read: Counter = Counter()
        self.skipped: Counter = Counter()
        self.problems: list[str] = []
        self.problem_count = 0
        self.where = self.arm_id = ""
        self.disk_versions: dict[str, str] = {}

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
        if rid in self.seen:
            self.skipped["(duplicate id)"] += 1
            self._note(f"{where}: duplicate id {arm_id}")
            return
        self.seen.add(rid)
        self.where, self.arm_id = where, arm_id
        self.read[rtype] += 1
        if rtype == DISK:
            self._disk(resource)
            return
        match = _SUB_RG.search(arm_id)
        common = dict(
            id=rid, arm_id=arm_id,
            name=_str(resource.get("name")) or arm_id.rstrip("/").rsplit("/", 1)[-1],
            subscription_id=_lower(resource.get("subscriptionId"))
            or (match.group(1).lower() if match else None),
            resource_group=_str(resource.get("resourceGroup")) or (match and match.group(2)),
            location=region(resource.get("location")),
            type=rtype,
        )
        tags = self._tags(self._object(resource.get("tags"), "tags"), rid, handler[0])
        handler[1](self, common, self._object(resource.get("properties"), "properties"),
                   resource, tags)

    def take(self, block) -> bool:
        """Take the rows columnar.py made of a block of resources that follow ours, as if we
        had read them; refused (False) when it holds an id we have read, so the caller reads
        the block here, resource by resource, and the duplicate is named."""
        ids = block.ids.to_pylist()
        if not self.seen.isdisjoint(ids):
            return False
        self.seen.update(ids)
        for name, rows in block.tables.items():
            self.rows[name].extend(rows)
        self.read.update(block.read)
        self.skipped.update(block.skipped)
        disks = block.disks
        for owner, version_id in zip(disks["owner"].to_pylist(), disks["version"].to_pylist(),
                                     strict=True):
            self._running(owner, version_id)
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
        self.rows["galleries"].add(**common, description=_str(props.get("description")),
                                   tags=tags)

    def _definition(self, common, props, raw, tags):
        ident = _obj(props.get("identifier"))
        self.rows["image_definitions"].add(
            **common, gallery_id=parent_of(common["id"], "images"),
            os_type=_str(props.get("osType")), os_state=_str(props.get("osState")),
            hyper_v_generation=_str(props.get("hyperVGeneration")),
            architecture=_str(props.get("architecture")),
            publisher=_str(ident.get("publisher")), offer=_str(ident.get("offer")),
            sku=_str(ident.get("sku")), end_of_life_date=_str(props.get("endOfLifeDate")),
            provisioning_state=_str(props.get("provisioningState")), tags=tags)

    def _version(self, common, props, raw, tags):
        vid = common["id"]
        read = self._read
        publishing = self._object(props.get("publishingProfile"), "properties.publishingProfile")
        storage = self._object(props.get("storageProfile"), "properties.storageProfile")
        safety = _obj(props.get("safetyProfile"))
        os_image = self._object(storage.get("osDiskImage"),
                                "properties.storageProfile.osDiskImage")
        semver = _SEMVER.match(common["name"] or "")
        if not semver:
            self._note(f"{self.where}: {self.arm_id}: name: expected MAJOR.MINOR.PATCH, "
                       f"got {_show(common['name'])}")
        replica_count = read(publishing.get("replicaCount"), _int,
                             "properties.publishingProfile.replicaCount")
        storage_type = _str(publishing.get("storageAccountType"))
        data_sizes = [_float(_obj(d).get("sizeInGB")) for d in _list(storage.get("dataDiskImages"))]
        targets = [_obj(t) for t in read(publishing.get("targetRegions"), _list,
                                          "properties.publishingProfile.targetRegions")]
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
                exclude_from_latest=bool(_bool(target.get("excludeFromLatest"))))
        # Only an ARM GET with $expand=ReplicationStatus (`collect --deep`) carries this.
        for status in map(_obj, _list(_obj(props.get("replicationStatus")).get("summary"))):
            self.rows["version_replication"].add(
                version_id=vid, region=region(status.get("region")), state=_str(status.get("state")),
                progress=_int(status.get("progress")), details=_str(status.get("details")))
        source = _obj(storage.get("source"))
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
                                 "properties.storageProfile.osDiskImage.sizeInGB"),
            data_disk_size_gb=sum(s for s in data_sizes if s is not None) if data_sizes else 0.0,
            source_id=_lower(source.get("id") or _obj(os_image.get("source")).get("id")),
            source_uri=strip_query(source.get("uri") or _obj(os_image.get("source")).get("uri")),
            provisioning_state=_str(props.get("provisioningState")),
            allow_deletion_of_replicated_locations=_bool(
                safety.get("allowDeletionOfReplicatedLocations")),
            block_deletion_before_end_of_life=_bool(safety.get("blockDeletionBeforeEndOfLife")),
            tags=tags)

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
        else:
            storage = self._object(props.get("storageProfile"), "properties.storageProfile")
            capacity = 1
            vm_size = _str(_obj(props.get("hardwareProfile")).get("vmSize"))
            os_profile = _obj(props.get("osProfile"))
        ref = self._object(storage.get("imageReference"), "storageProfile.imageReference")
        os_disk = _obj(storage.get("osDisk"))
        vhd_uri = strip_query(_obj(os_disk.get("image")).get("uri")
                              or _obj(os_disk.get("vhd")).get("uri"))
        image = _image_reference(ref, vhd_uri)
        plan = _obj(raw.get("plan"))
        power = _str(_obj(_obj(_obj(props.get("extended")).get("instanceView")).get("powerState"))
                     .get("code"))
        os_type = _str(os_disk.get("osType")) or (
            "Windows" if "windowsConfiguration" in os_profile
            else "Linux" if "linuxConfiguration" in os_profile else None)
        self.rows["machines"].add(
            **common, kind="vmss" if is_vmss else "vm", capacity=capacity, vm_size=vm_size,
            os_type=os_type, **image, vhd_uri=vhd_uri,
            plan_name=_str(plan.get("name")), plan_publisher=_str(plan.get("publisher")),
            plan_product=_str(plan.get("product")),
            power_state=power.split("/", 1)[-1].lower() if power else None,
            running_version_id=None, tags=tags)

    def _disk(self, raw):
        props = _obj(raw.get("properties"))
        gallery_ref = _obj(_obj(props.get("creationData")).get("galleryImageReference"))
        owner = _lower(raw.get("managedBy"))
        version_id = _lower(gallery_ref.get("id"))
        if owner and version_id:
            # A scale set's instance disks are managed by `<vmss id>/virtualMachines/<n>`.
            owner = re.sub(r"/virtualmachines/[^/]+$", "", owner) \
                if "/virtualmachinescalesets/" in owner else owner
            self._running(owner, version_id)

    def _running(self, owner: str, version_id: str) -> None:
        """A machine's OS disk came from `version_id`: of several, the lowest is kept."""
        current = self.disk_versions.get(owner)
        self.disk_versions[owner] = min(current, version_id) if current else version_id

    handlers = {
        GALLERY: ("galleries", _gallery),
        DEFINITION: ("image_definitions", _definition),
        VERSION: ("image_versions", _version),
        MANAGED_IMAGE: ("managed_images", _managed_image),
        VM: ("machines", _machine),
        VMSS: ("machines", _machine),
        DISK: ("disks", None),
    }

    def finish(self, scope: Iterable[dict] | None) -> Normalized:
        self.seen = set()  # every id read: no longer needed, and freed before the tables' peak
        for row in scope or ():
            self.rows["scope"].add(**{k: row.get(k) for k in TABLE_SCHEMAS["scope"].names})
        tables = {name: rows.table() for name, rows in self.rows.items()}
        for rows in self.rows.values():
            for problem in rows.problems:
                self._note(problem)
        if self.disk_versions:
            machines = tables["machines"]
            owners = pa.array(list(self.disk_versions), type=S)
            running = pa.array(list(self.disk_versions.values()), type=S).take(
                pc.index_in(machines.column("id"), value_set=owners))
            index = machines.schema.get_field_index("running_version_id")
            tables["machines"] = machines.set_column(index, machines.schema.field(index), running)
        return Normalized(tables=tables, read_types=self.read, skipped_types=self.skipped,
                          problems=self.problems, problem_count=self.problem_count)


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


def normalize(resources: Iterable, scope: Iterable[dict] | None = None) -> Normalized:
    """Turn raw resources (any mix of supported types, any casing) into snapshot tables.

    Items are resource dicts, `(where, resource)` pairs whose `where` (file and position)
    names the item in problems reported about it, or `JsonLines` blocks, normalised column by
    column where columnar.py can, here resource by resource where it cannot.
    """
    normalizer = _Normalizer()
    with _collector_paused(), _memory_handed_back():
        for index, item in enumerate(_blocks_read_ahead(resources)):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], JsonLines):
                lines, block = item[0], item[1].result()
                if block is None or not normalizer.take(block):
                    for where, resource in lines.again():
                        normalizer.add(resource, where=where)
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                normalizer.add(item[1], where=item[0])
            else:
                normalizer.add(item, where=f"item {index}")
        return normalizer.finish(scope)


def _blocks_read_ahead(resources: Iterable) -> Iterator:
    """The items in order, each `JsonLines` block paired with the future of its columns:
    pyarrow works without the interpreter lock, so blocks are normalised on every core
    while earlier ones are taken in, in order; a few at a time, so memory stays bounded."""
    from auditor.columnar import normalize_lines  # built on this module's tables and names

    workers = _CORES
    with ThreadPoolExecutor(workers) as pool:
        ahead: deque = deque()
        for item in resources:
            if isinstance(item, JsonLines):
                ahead.append((item, pool.submit(normalize_lines, item.data)))
                if len(ahead) > workers:
                    yield ahead.popleft()
                continue
            yield from ahead
            ahead.clear()
            yield item
        yield from ahead
