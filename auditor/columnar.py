"""JSON lines normalised a block at a time, column by column: the rows normalize.py's
per-resource code makes, built by pyarrow.json and pyarrow.compute instead of a Python loop.

normalize.py stays the reference. A block this module cannot take exactly (a line that is
not an object, a value of another JSON type than Azure gives, a duplicate id, anything the
reference would report as a problem, text it would read or lower-case differently) is
refused (None) and normalised there, resource by resource, with its problems named.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from auditor import normalize as reference  # reads autoscale settings (few, deeply nested)
from auditor.normalize import (
    APPLICATION_HEALTH,
    CLI_PROPERTY_KEYS,
    DEFAULT_STORAGE_TYPE,
    DEFINITION,
    DISK,
    GALLERY,
    INSTANCE,
    INT,
    MANAGED_IMAGE,
    ROLE_ASSIGNMENT,
    VERSION,
    VM,
    VMSS,
    B,
    F,
    S,
    _lower,
    chunk_schema,
)


def _struct(**fields) -> pa.DataType:
    return pa.struct(list(fields.items()))


# Only the paths the tables are made of: pyarrow.json skips everything else, and refuses a
# block where one of these holds another JSON type than declared here.
_ID, _URI, _SOURCE = _struct(id=S), _struct(uri=S), _struct(id=S, uri=S)
_PRESENT = pa.struct([])  # an object whose content does not matter, only that it is there
_OS_PROFILE = _struct(windowsConfiguration=_PRESENT, linuxConfiguration=_PRESENT)
_REFERENCE = _struct(id=S, sharedGalleryImageId=S, communityGalleryImageId=S, publisher=S,
                     offer=S, sku=S, version=S, exactVersion=S)
_STORAGE = _struct(
    imageReference=_REFERENCE,
    osDisk=_struct(osType=S, osState=S, diskSizeGB=F, storageAccountType=S, blobUri=S,
                   snapshot=_ID, managedDisk=_ID, image=_URI, vhd=_URI, vhdContainers=pa.list_(S)),
    osDiskImage=_struct(sizeInGB=F, sizedInGB=F, source=_SOURCE),  # sizedInGB: 2018-06-01 preview
    dataDiskImages=pa.list_(_struct(sizeInGB=F, sizedInGB=F)),
    dataDisks=pa.list_(_struct(diskSizeGB=F)),
    source=_SOURCE, zoneResilient=B)
_MACHINE_PROPERTIES = dict(
    storageProfile=_struct(imageReference=_REFERENCE,
                           osDisk=_struct(osType=S, createOption=S, image=_URI, vhd=_URI,
                                          vhdContainers=pa.list_(S))),
    hardwareProfile=_struct(vmSize=S),
    licenseType=S,
    osProfile=_OS_PROFILE,
    extended=_struct(instanceView=_struct(powerState=_struct(code=S), hyperVGeneration=S)),
    creationData=_struct(galleryImageReference=_ID),  # a disk's
    orchestrationMode=S, virtualMachineScaleSet=_ID, overprovision=B,
    latestModelApplied=B, instanceId=S,  # a scale set instance's
    upgradePolicy=_struct(mode=S, automaticOSUpgrade=B,
                          automaticOSUpgradePolicy=_struct(enableAutomaticOSUpgrade=B),
                          rollingUpgradePolicy=_struct(maxBatchInstancePercent=INT, maxSurge=B)),
    securityProfile=_struct(securityType=S))
_MACHINE_PROPERTIES["virtualMachineProfile"] = _struct(
    storageProfile=_MACHINE_PROPERTIES["storageProfile"], osProfile=_OS_PROFILE, licenseType=S,
    securityProfile=_MACHINE_PROPERTIES["securityProfile"],
    networkProfile=_struct(healthProbe=_ID),
    extensionProfile=_struct(extensions=pa.list_(_struct(properties=_struct(type=S)))))
_PROPERTIES = dict(
    _MACHINE_PROPERTIES,
    description=S, provisioningState=S, osType=S, osState=S, hyperVGeneration=S,
    architecture=S, endOfLifeDate=S,
    identifier=_struct(publisher=S, offer=S, sku=S, uniqueName=S),
    purchasePlan=_struct(name=S, publisher=S, product=S),  # a definition's (LIC002)
    publishingProfile=_struct(
        replicaCount=INT, storageAccountType=S, publishedDate=S, endOfLifeDate=S,
        excludeFromLatest=B, replicationMode=S, storageAccountStrategy=S,
        targetRegions=pa.list_(_struct(
            name=S, regionalReplicaCount=INT, storageAccountType=S, excludeFromLatest=B,
            regionalExcludeFromLatest=B,
            encryption=_struct(osDiskImage=_struct(diskEncryptionSetId=S, securityProfile=_struct(
                confidentialVMEncryptionType=S, secureVMDiskEncryptionSetId=S)),
                dataDiskImages=pa.list_(_struct(diskEncryptionSetId=S))),
            additionalReplicaSets=pa.list_(_struct(storageAccountType=S,
                                                   regionalReplicaCount=INT)))),
        targetExtendedLocations=pa.list_(_struct(
            name=S, extendedLocation=_struct(name=S), extendedLocationReplicaCount=INT,
            storageAccountType=S)),
        regions=pa.list_(S), source=_struct(managedImage=_ID)),  # API 2018-06-01 (preview)
    sharingProfile=_struct(permissions=S, groups=pa.list_(_struct(type=S, ids=pa.list_(S))),
                           communityGalleryInfo=_struct(publicNames=pa.list_(S))),
    scope=S, principalId=S, principalType=S, roleDefinitionId=S,  # a role assignment's
    storageProfile=_STORAGE,
    safetyProfile=_struct(allowDeletionOfReplicatedLocations=B, blockDeletionBeforeEndOfLife=B,
                          reportedForPolicyViolation=B,
                          policyViolations=pa.list_(_struct(category=S, details=S))),
    features=pa.list_(_struct(name=S, value=S)),
    replicationStatus=_struct(summary=pa.list_(_struct(region=S, state=S, progress=INT,
                                                      details=S))),
    sourceVirtualMachine=_ID,
    virtualMachineProfile=_struct(storageProfile=_STORAGE, osProfile=_OS_PROFILE, licenseType=S))
_TOP = [("id", S), ("instanceId", S), ("name", S), ("type", S), ("location", S), ("subscriptionId", S),
        ("resourceGroup", S), ("managedBy", S), ("tags", _PRESENT),
        ("sku", _struct(name=S, capacity=INT)), ("plan", _struct(name=S, publisher=S, product=S))]
# Keys only the Azure CLI's shape has at the top level: such a line is lifted by normalize.py.
_TOP += [(key, _PRESENT) for key in sorted(CLI_PROPERTY_KEYS)]
# Machines and their disks are nearly every line: they are read with their own few paths
# (pyarrow's cost grows with the paths it fills), the other resources again with all of them.
_MACHINE_PARSE = pj.ParseOptions(explicit_schema=pa.schema(
    _TOP + [("properties", _struct(**_MACHINE_PROPERTIES))]), unexpected_field_behavior="ignore")
_PARSE = pj.ParseOptions(explicit_schema=pa.schema(
    _TOP + [("properties", _struct(**_PROPERTIES))]), unexpected_field_behavior="ignore")

_TABLE_OF = {GALLERY: "galleries", DEFINITION: "image_definitions", VERSION: "image_versions",
            MANAGED_IMAGE: "managed_images", VM: "machines", VMSS: "machines",
            ROLE_ASSIGNMENT: "role_assignments", INSTANCE: "instances"}
# Tables as large as the estate's machines: read with the machines' few paths, left by id.
_MACHINE_SIZED = ("machines", "instances")
# A line's tags object, when it holds no nested braces (tag values are strings), or null.
_TAGS = r'"tags"\s*:\s*(?:(?P<tags>\{[^{}]*\})|null)'
_SUB_RG = r"(?i)/subscriptions/(?P<sub>[^/]+)(?:/resourcegroups/(?P<rg>[^/]+))?"
_SEMVER = r"^(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)\n?$"
_VERSIONED = r"(?s)^(?P<definition>.*)/versions/(?P<version>[^/]+)$"
# Ids of ARM GET bodies without a `type`: a Marketplace version, a subscription's lock list.
_UNTYPED_ARM_BODY = (r"/providers/microsoft\.compute/locations/[^/]+/publishers/.*/versions/[^/]+$"
                     r"|/providers/microsoft\.authorization/locks$")
_NULL_CONFIGURATION = re.compile(rb'Configuration"\s*:\s*null')
# NaN or Inf(inity) where a JSON value starts (the words inside names, such as Azure's
# `communityGalleryInfo`, are no reason to refuse a block).
_NAN_OR_INF = re.compile(rb"[:\[,]\s*[-+]?(?:NaN|Inf)")


class _Refused(Exception):
    """The block holds something only the per-resource normaliser reproduces exactly."""


def _require(condition) -> None:
    if not condition:
        raise _Refused


@dataclass
class Block:
    """A block's rows for each table (timestamps still text, as normalize.py keeps them until
    the tables are finished), and what the normaliser counts and remembers of them."""

    tables: dict[str, pa.Table]
    ids: pa.Array  # every id read, for the duplicate check across blocks
    read: Counter
    skipped: Counter
    disks: pa.Table  # owner, version: the gallery version an OS disk was created from
    # Positions (among the block's lines) of ARM GET bodies the reference reads instead.
    by_reference: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


def normalize_lines(data: bytes) -> Block | None:
    """The rows of a block of whole JSON lines, or None where normalize.py must make them."""
    try:
        return _block(data)
    except (_Refused, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


# --- column helpers, each the vectorised twin of a reader in normalize.py ------------------

class _Fields:
    """A parsed block's fields by dotted path (null wherever a step is missing), for the
    rows at `rows`, in that order: only the leaves a table needs are taken, never the block."""

    def __init__(self, table: pa.Table, rows: pa.Array | None = None):
        self.table, self.at = table, rows

    def __call__(self, path: str) -> pa.Array:
        head, *rest = path.split(".")
        column = self.table[head]
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        column = pc.struct_field(column, rest) if rest else column
        return column if self.at is None else pc.take(column, self.at)

    def rows(self, rows: pa.Array) -> _Fields:
        return _Fields(self.table, rows)


def _true(values: pa.Array) -> pa.Array:
    """Text where Python would find it true: empty strings become null."""
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)


def _or(first: pa.Array, second: pa.Array) -> pa.Array:
    """`first or second`."""
    return pc.coalesce(_true(first), second)


def _any(mask: pa.Array) -> bool:
    return bool(pc.any(mask).as_py())


def _lowered(values: pa.Array) -> pa.Array:
    """`str.lower()`: ASCII in C; the rare non-ASCII text by Python, whose Unicode rules
    differ from utf8proc's for a few letters."""
    lowered = pc.ascii_lower(values)
    other = pc.invert(pc.string_is_ascii(values)).fill_null(False)
    if _any(other):
        texts = [text.lower() for text in pc.filter(values, other).to_pylist()]
        lowered = pc.replace_with_mask(lowered, other, pa.array(texts, S))
    return lowered


def _lower_id(values: pa.Array) -> pa.Array:
    """normalize._lower: lower case without trailing slashes; null when missing or empty."""
    return pc.utf8_rtrim(_lowered(_true(values)), characters="/")


def _region(values: pa.Array) -> pa.Array:
    return _lowered(pc.replace_substring(_true(values), " ", ""))


def _strip_query(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(_true(values), r"(?s)\?.*", "", max_replacements=1)


def _parent(ids: pa.Array, segment: str) -> pa.Array:
    """normalize.parent_of: the id up to its last `/segment/`, or "" without one."""
    cut = pc.struct_field(pc.extract_regex(ids, rf"(?s)^(?P<p>.*)/{segment}/"), "p")
    return pc.fill_null(cut, "")


def _group(values: pa.Array, pattern: str, name: str) -> pa.Array:
    """A named group of `pattern` searched in `values`; null without a match."""
    return pc.struct_field(pc.extract_regex(values, pattern), name)


def _flag(values: pa.Array) -> pa.Array:
    """`bool(_bool(x))`: missing is false."""
    return pc.fill_null(values, False)


def _list_sum(lists: pa.Array, field: str, *fallbacks: str) -> pa.Array:
    """normalize's `sum(sizes) if sizes else 0.0`, added left to right as Python does (each
    size from `field`, else the first of `fallbacks` present)."""
    totals = np.zeros(len(lists))
    items = pc.list_flatten(lists)
    values = pc.coalesce(*(pc.struct_field(items, name) for name in (field, *fallbacks)))
    if len(values):
        parents = pc.list_parent_indices(lists).to_numpy()
        present = pc.is_valid(values).to_numpy(zero_copy_only=False)
        values = values.fill_null(0.0).to_numpy()
        position = np.arange(len(parents)) - np.searchsorted(parents, parents)
        for at in range(position.max() + 1):
            take = (position == at) & present
            totals[parents[take]] += values[take]
    return pa.array(totals, F)


# --- the block ----------------------------------------------------------------------------

def _lines(data: bytes) -> pa.Array:
    """The block's non-empty lines as strings over its bytes (no copy). Refused unless every
    one opens an object, the bytes are UTF-8 and hold no NaN or Infinity: pyarrow would take
    `null`, a byte order mark, two objects on one line, NaN and bytes in fields it skips,
    the reference's JSON parser not."""
    raw = np.frombuffer(data, np.uint8)
    _require(len(raw) < 2**31 and not (
        (_spelled(raw, b"NaN") or _spelled(raw, b"Inf")) and _NAN_OR_INF.search(data)))
    starts = np.concatenate(([0], np.flatnonzero(raw == ord("\n")) + 1))
    starts = starts[starts < len(raw)]
    starts = starts[raw[starts] != ord("\n")]
    _require(len(starts) and (raw[starts] == ord("{")).all())
    offsets = np.append(starts, len(raw)).astype(np.int32)
    lines = pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(data))
    lines.validate(full=True)
    return lines


def _spelled(raw: np.ndarray, word: bytes) -> bool:
    """Whether `word` is in the bytes (numpy finds its rare first letter, then the rest)."""
    at = np.flatnonzero(raw[:len(raw) - len(word) + 1] == word[0])
    return bool(np.logical_and.reduce([raw[at + i] == c for i, c in enumerate(word)]).any())


def _read(text: pa.Buffer, options: pj.ParseOptions, rows: int) -> pa.Table:
    table = pj.read_json(pa.BufferReader(text), parse_options=options, read_options=pj.ReadOptions(
        use_threads=False, block_size=max(len(text), 1))).combine_chunks()
    _require(table.num_rows == rows)
    return table


def _block(data: bytes) -> Block:
    lines = _lines(data)
    raw = _Fields(_read(pa.py_buffer(data), _MACHINE_PARSE, len(lines)))
    # A resource as `az ... list` prints it is put back in ARM shape by the reference.
    _require(not any(raw.table[key].null_count < raw.table.num_rows for key in CLI_PROPERTY_KEYS))
    arm_ids, types = raw("id"), raw("type")
    # ARM GET bodies (a Marketplace version has no `type`; locks and lock lists) are few:
    # the rest of the block is taken by columns and they are left to the reference.
    by_reference = pc.or_(
        pc.and_(pc.is_null(_true(types)), pc.match_substring_regex(
            arm_ids, _UNTYPED_ARM_BODY, ignore_case=True).fill_null(False)),
        pc.equal(_lowered(types), reference.LOCK).fill_null(False))
    if _any(by_reference):
        kept = pc.filter(lines, pc.invert(by_reference))
        _require(len(kept))
        block = _block(_concat_buffer(kept).to_pybytes())
        block.by_reference = pc.indices_nonzero(by_reference).to_numpy()
        return block
    _require(not _any(pc.is_null(_true(arm_ids))) and not _any(pc.is_null(_true(types))))
    # Ids are cut by regular expressions below; kept to ASCII, as Azure's are.
    _require(pc.all(pc.string_is_ascii(arm_ids)).as_py())
    rtypes = _lowered(types)
    handled = pc.is_in(rtypes, value_set=pa.array([*_TABLE_OF, DISK, reference.AUTOSCALE]))
    ids = pc.utf8_rtrim(pc.ascii_lower(arm_ids), characters="/")
    read_ids = pc.filter(ids, handled)
    _require(pc.count_distinct(read_ids).as_py() == len(read_ids))
    table_names = pc.take(pa.array(list(_TABLE_OF.values()) + [None], S),
                          pc.index_in(rtypes, value_set=pa.array(list(_TABLE_OF))).fill_null(
                              len(_TABLE_OF)))
    # The images and galleries' lines, read again with every path (few: a tenant has many
    # more machines and disks than images).
    others = pc.and_(pc.is_valid(table_names), pc.invert(
        pc.is_in(table_names, value_set=pa.array(_MACHINE_SIZED)).fill_null(False)))
    full = _Fields(_read(_concat_buffer(pc.filter(lines, others)), _PARSE, pc.sum(others).as_py())
                   if _any(others) else _PARSE.explicit_schema.empty_table())

    # The big tables leave a block in the order the finished table will have (by id), so
    # finishing a million rows sorts and reads runs of sorted rows. (The other tables keep
    # the order of the file: the problems their dates may raise are named in that order.)
    by_id = pc.sort_indices(ids)
    rank = np.empty(len(ids), np.int64)
    rank[by_id.to_numpy()] = np.arange(len(ids))
    tag_json, resource_tags = _tags(_tags_texts(data, lines, raw("tags")), ids, table_names,
                                    rank)
    tables: dict[str, list] = {"resource_tags": [resource_tags]}
    common = _common(raw, ids)
    for name, build in _BUILDERS.items():
        mask = pc.equal(table_names, name).fill_null(False)
        if not _any(mask):
            continue
        if name in _MACHINE_SIZED:
            rows = pc.filter(by_id, pc.take(mask, by_id))
            fields = raw.rows(rows)
        else:
            rows = pc.indices_nonzero(mask)
            fields = full.rows(pc.indices_nonzero(pc.filter(mask, others)))
        columns = {k: pc.take(v, rows) for k, v in common.items()}
        columns["tags"] = pc.take(tag_json, rows)
        for table, built in build(fields, columns, pc.take(rtypes, rows), data).items():
            tables.setdefault(table, []).append(built)
    settings = pc.equal(rtypes, reference.AUTOSCALE)
    if _any(settings):
        tables["autoscale_settings"] = [_autoscale_settings(pc.filter(lines, settings))]
    out = {}
    for name, parts in tables.items():
        schema = chunk_schema(name)
        out[name] = pa.concat_tables(
            pa.Table.from_arrays([p[c] for c in schema.names], schema=schema) for p in parts)
    disks = pc.indices_nonzero(pc.equal(rtypes, DISK))
    return Block(tables=out, ids=read_ids, read=_counts(pc.filter(rtypes, handled)),
                 skipped=_counts(pc.filter(rtypes, pc.invert(handled))),
                 disks=_disks(raw.rows(disks)))


def _counts(values: pa.Array) -> Counter:
    counts = pc.value_counts(values)
    return Counter(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                            strict=True)))


def _common(raw: _Fields, ids: pa.Array) -> dict[str, pa.Array]:
    arm_ids = raw("id")
    name = _where_null(_true(raw("name")), pc.utf8_rtrim(arm_ids, characters="/"),
                       lambda ids: _group(ids, r"(?s)(?P<t>[^/]*)$", "t"))
    subscription = _true(_lower_id(raw("subscriptionId")))
    subscription = _where_null(subscription, arm_ids, lambda ids: pc.ascii_lower(
        _group(ids, _SUB_RG, "sub")))
    group = _where_null(_true(raw("resourceGroup")), arm_ids,
                        lambda ids: _true(_group(ids, _SUB_RG, "rg")))
    return {"id": ids, "arm_id": arm_ids, "name": name, "subscription_id": subscription,
            "resource_group": group, "location": _region(raw("location"))}


def _where_null(values: pa.Array, source: pa.Array, derive) -> pa.Array:
    """`values`, with `derive(source)` where they are null, derived for those rows only
    (ARM lists lack subscriptionId and resourceGroup: they are read from the id)."""
    missing = pc.is_null(values)
    if not values.null_count:
        return values
    return pc.replace_with_mask(values, missing, derive(pc.filter(source, missing)))


# --- tags ---------------------------------------------------------------------------------

def _tags_texts(data: bytes, lines: pa.Array, parsed: pa.Array) -> pa.Array:
    """Each line's tags object as text ("{}" without one). Refused unless every `"tags"` in
    the block is a match, one per line, found where pyarrow saw an object: so no other object
    holds a `tags` key that could be taken for the resource's own."""
    found = pc.extract_regex(lines, _TAGS)
    matched = pc.is_valid(found)
    texts = _true(pc.struct_field(found, "tags"))
    _require(data.count(b'"tags"') == pc.sum(pc.cast(matched, INT)).as_py())
    _require(pc.all(pc.equal(pc.is_valid(texts), pc.is_valid(parsed))).as_py())
    # A null tag value reads as "" in the reference; pyarrow cannot tell it from no key.
    _require(not _any(pc.match_substring(texts, "null")))
    return pc.fill_null(texts, "{}")


def _json_text(values: pa.Array) -> pa.Array:
    """Text as json.dumps writes it between quotes."""
    values = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    if _any(pc.match_substring_regex(values, r"[\x00-\x1f]")):
        for code in range(0x20):
            values = pc.replace_substring(values, chr(code), json.dumps(chr(code))[1:-1])
    return values


def _tags(texts: pa.Array, ids: pa.Array, table_names: pa.Array,
          rank: np.ndarray) -> tuple[pa.Array, pa.Table]:
    """The `tags` JSON column (sorted keys, as normalize's encoder writes it) and the long
    `resource_tags` rows (by id, then key: `rank` is each row's place in id order), from each
    resource's tags object read as a struct of strings."""
    texts = pc.if_else(pc.is_valid(table_names), texts, "{}")  # disks' tags are not read
    values = _read_tags(_concat_buffer(pc.binary_join_element_wise(texts, "", "\n")),
                        len(texts))
    # Without a backslash in any tag, the values are their JSON text as it stands.
    escaped = _any(pc.match_substring(texts, "\\"))
    keys = [key for key in sorted(values.column_names)
            if values[key].null_count < values.num_rows]
    joined, rows, values_at = pa.nulls(len(texts), S), [], []
    for key in keys:
        value = values[key].combine_chunks()
        text = _json_text(value) if escaped else value
        piece = pc.binary_join_element_wise(json.dumps(key, ensure_ascii=False) + ': "', text,
                                            '"', "")
        # Joined pair by pair (pyarrow's null_handling="skip" drops rows that are all null).
        joined = pc.coalesce(pc.binary_join_element_wise(joined, piece, ", "), joined, piece)
        at = pc.indices_nonzero(pc.is_valid(value))
        rows.append(at.to_numpy())
        values_at.append(pc.take(value, at))
    tag_json = pc.binary_join_element_wise("{", pc.fill_null(joined, ""), "}", "")
    rows = np.concatenate(rows) if rows else np.zeros(0, np.uint64)
    codes = np.repeat(np.arange(len(keys)), [len(v) for v in values_at])
    order = np.lexsort((codes, rank[rows])) if len(rows) else rows
    codes, rows = codes[order], rows[order]
    return tag_json, pa.Table.from_arrays([
        pc.take(ids, rows), pc.take(table_names, rows),
        pc.take(pa.array(keys, S), codes),
        pc.take(pa.array([key.lower() for key in keys], S), codes),
        pc.take(pa.concat_arrays(values_at) if values_at else pa.array([], S), order)],
        schema=chunk_schema("resource_tags"))


# Tag keys of the blocks read so far: a block whose keys are all among them is read once.
# (Shared by the block threads: only ever replaced, never changed in place.)
_tag_keys: frozenset[str] = frozenset()


def _read_tags(text: pa.Buffer, rows: int) -> pa.Table:
    """Tags objects, one a line, as a table of string columns, one per key. pyarrow names new
    keys by inferring a schema, but would read date-like values as timestamps: the values are
    read with every key declared as text (a value of another type is refused)."""
    global _tag_keys

    def read() -> pa.Table:
        return _read(text, pj.ParseOptions(unexpected_field_behavior="error", explicit_schema=pa.schema(
            [(key, S) for key in sorted(_tag_keys)])), rows)

    try:
        return read()
    except pa.ArrowInvalid:  # a key no earlier block had, or a value that is not text
        keys = frozenset(pj.read_json(pa.BufferReader(text)).column_names)
        # Every key read stays known, up to a bound: pyarrow fills every declared one.
        _tag_keys = keys if len(_tag_keys) > 1000 else _tag_keys | keys
        return read()


def _concat_buffer(texts: pa.Array) -> pa.Buffer:
    """The bytes of a string array's values, end to end."""
    offsets = np.frombuffer(texts.buffers()[1], np.int32)[texts.offset:texts.offset + len(texts) + 1]
    return texts.buffers()[2][offsets[0]:offsets[-1]]


# --- one builder per table ----------------------------------------------------------------

def _galleries(raw, common, rtypes, data):
    groups = raw("properties.sharingProfile.groups")
    group = pc.list_flatten(groups)
    ids = pc.struct_field(group, "ids")
    of_group = pc.list_parent_indices(ids)
    of_gallery = pc.take(pc.list_parent_indices(groups), of_group)
    names = raw("properties.sharingProfile.communityGalleryInfo.publicNames")
    return {
        "galleries": {**common, "description": raw("properties.description"),
                      "sharing_permissions": raw("properties.sharingProfile.permissions"),
                      "sharing_groups_read": pc.is_valid(groups),
                      "unique_name": _lower_id(raw("properties.identifier.uniqueName")),
                      "community_names": _community_names(names)},
        "gallery_shares": {"gallery_id": pc.take(common["id"], of_gallery),
                           "type": pc.take(pc.struct_field(group, "type"), of_group),
                           "target": _lower_id(pc.list_flatten(ids))}}


def _community_names(names: pa.Array) -> pa.Array:
    """normalize's joined, lower-cased public names. Only community galleries have them (a
    few rows), so they are joined in Python exactly as the reference does."""
    if not _any(pc.is_valid(names)):
        return pa.nulls(len(names), S)
    joined = [None if row is None else ",".join(n for n in map(_lower, row) if n) or None
              for row in names.to_pylist()]
    return pa.array(joined, S)


def _role_assignments(raw, common, rtypes, data):
    p = "properties."
    return {"role_assignments": {
        "id": common["id"], "scope": _lower_id(raw(p + "scope")),
        "principal_id": _lower_id(raw(p + "principalId")),
        "principal_type": raw(p + "principalType"),
        "role_definition_id": _lower_id(raw(p + "roleDefinitionId"))}}


def _definitions(raw, common, rtypes, data):
    p = "properties."
    return {"image_definitions": {
        **common, "gallery_id": _parent(common["id"], "images"),
        "os_type": raw(p + "osType"), "os_state": raw(p + "osState"),
        "hyper_v_generation": raw(p + "hyperVGeneration"),
        "architecture": raw(p + "architecture"),
        "publisher": raw(p + "identifier.publisher"),
        "offer": raw(p + "identifier.offer"), "sku": raw(p + "identifier.sku"),
        "end_of_life_date": raw(p + "endOfLifeDate"),
        "provisioning_state": raw(p + "provisioningState"),
        "security_type": _security_type(raw(p + "features")),
        "purchase_plan_name": raw(p + "purchasePlan.name"),
        "purchase_plan_publisher": raw(p + "purchasePlan.publisher"),
        "purchase_plan_product": raw(p + "purchasePlan.product")}}


def _security_type(features: pa.Array) -> pa.Array:
    """normalize._security_type: the value of each list's first SecurityType feature."""
    feature = pc.list_flatten(features)
    parents = pc.list_parent_indices(features).to_numpy()
    named = pc.equal(_lowered(pc.fill_null(pc.struct_field(feature, "name"), "")),
                     "securitytype").fill_null(False).to_numpy(zero_copy_only=False)
    at = np.full(len(features), -1)
    hits = np.flatnonzero(named)[::-1]  # the first of a list's hits is written last
    at[parents[hits]] = hits
    return _taken(pc.struct_field(feature, "value"), at)


def _taken(values: pa.Array, at: np.ndarray) -> pa.Array:
    """`values[at]`, null where `at` is -1."""
    return pc.take(values, pa.array(at, pa.int64(), mask=at < 0))


def _policy_violations(violations: pa.Array) -> pa.Array:
    """normalize._policy_violations: `category: details` joined with "; " (null for none)."""
    violation = pc.list_flatten(violations)
    category = pc.coalesce(_true(pc.struct_field(violation, "category")), pa.scalar("?"))
    details = _true(pc.struct_field(violation, "details"))
    texts = pc.coalesce(pc.binary_join_element_wise(category, details, ": "), category)
    lengths = pc.fill_null(pc.list_value_length(violations), 0).to_numpy(zero_copy_only=False)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), texts), "; ")
    return _true(joined)


def _versions(raw, common, rtypes, data):
    publishing, storage = "properties.publishingProfile.", "properties.storageProfile."
    vids = common["id"]
    # normalize._Normalizer._version: a nested name given in full takes the id's last segment.
    nested = pc.fill_null(pc.match_substring(common["name"], "/"), False)
    last = _group(pc.utf8_rtrim(common["arm_id"], characters="/"), r"(?s)(?P<t>[^/]*)$", "t")
    common = dict(common, name=pc.if_else(nested, last, common["name"]))
    semver = pc.extract_regex(common["name"], _SEMVER)
    _require(not semver.null_count)  # the reference names a version without one
    replica_count = raw(publishing + "replicaCount")
    by_zone = pc.equal(_lower_id(raw(publishing + "storageAccountStrategy")), "preferstandard_zrs")
    storage_type = pc.coalesce(_true(raw(publishing + "storageAccountType")), pc.if_else(
        pc.fill_null(by_zone, False), pa.scalar(None, S), pa.scalar(DEFAULT_STORAGE_TYPE)))
    targets = raw(publishing + "targetRegions")
    # API 2018-06-01 (preview): `regions`, region names only, where targetRegions is absent.
    named = pc.indices_nonzero(pc.is_null(targets))
    names_only = pc.take(raw(publishing + "regions"), named)
    region_count = pc.fill_null(pc.coalesce(pc.list_value_length(targets), pc.list_value_length(
        raw(publishing + "regions"))), 0).cast(INT)
    _require(pc.all(pc.greater(region_count, 0)).as_py())  # the reference names a version without
    target = pc.list_flatten(targets)
    names = pc.list_flatten(names_only)
    parents = pa.concat_arrays([pc.list_parent_indices(targets).cast(pa.int64()),
                                pc.take(named, pc.list_parent_indices(names_only)).cast(pa.int64())])

    def field(name: str | list[str], kind) -> pa.Array:
        return pa.concat_arrays([pc.struct_field(target, name), pa.nulls(len(names), kind)])

    os_image = ["encryption", "osDiskImage"]

    regions = _region(pa.concat_arrays([pc.struct_field(target, "name"), names]))
    _require(not _any(pc.is_null(_true(regions))))  # the reference names a region without one
    extras = pc.struct_field(target, "additionalReplicaSets")
    extra = pc.list_flatten(extras)
    extra_parents = pc.take(parents, pc.list_parent_indices(extras))
    edges = raw(publishing + "targetExtendedLocations")
    edge = pc.list_flatten(edges)
    summary = raw("properties.replicationStatus.summary")
    status = pc.list_flatten(summary)
    status_parents = pc.list_parent_indices(summary)
    source = raw(storage + "source")
    image_source = raw(storage + "osDiskImage.source")
    return {
        "version_regions": {
            "version_id": pc.take(vids, parents), "region": regions,
            "regional_replica_count": pc.coalesce(field("regionalReplicaCount", INT),
                                                  pc.take(replica_count, parents)),
            "storage_account_type": _or(field("storageAccountType", S),
                                        pc.take(storage_type, parents)),
            "exclude_from_latest": pc.coalesce(field("excludeFromLatest", B),
                                               field("regionalExcludeFromLatest", B)),
            "disk_encryption_set_id": _lower_id(field(os_image + ["diskEncryptionSetId"], S)),
            "confidential_vm_encryption_type": field(
                os_image + ["securityProfile", "confidentialVMEncryptionType"], S),
            "secure_vm_disk_encryption_set_id": _lower_id(field(
                os_image + ["securityProfile", "secureVMDiskEncryptionSetId"], S)),
            "encrypted_data_disks": pa.concat_arrays([
                _count_with_value(pc.struct_field(target, ["encryption", "dataDiskImages"]),
                                  "diskEncryptionSetId"), pa.array(np.zeros(len(names)), INT)])},
        "version_replication": {
            "version_id": pc.take(vids, status_parents),
            "region": _region(pc.struct_field(status, "region")),
            "state": pc.struct_field(status, "state"),
            "progress": pc.struct_field(status, "progress"),
            "details": pc.struct_field(status, "details")},
        "version_replica_sets": {
            "version_id": pa.concat_arrays([pc.take(vids, extra_parents),
                                            pc.take(vids, pc.list_parent_indices(edges))]),
            "region": pa.concat_arrays([pc.take(regions, pc.list_parent_indices(extras)),
                                        _region(pc.struct_field(edge, "name"))]),
            "storage_account_type": pa.concat_arrays([
                pc.struct_field(extra, "storageAccountType"),
                pc.struct_field(edge, "storageAccountType")]),
            "regional_replica_count": pa.concat_arrays([
                pc.struct_field(extra, "regionalReplicaCount"),
                pc.struct_field(edge, "extendedLocationReplicaCount")]),
            "extended_location": pa.concat_arrays([
                pa.nulls(len(extra), S),
                pc.struct_field(pc.struct_field(edge, "extendedLocation"), "name")])},
        "image_versions": {
            **common, "definition_id": _parent(vids, "versions"),
            "gallery_id": _parent(vids, "images"),
            "major": pc.cast(pc.struct_field(semver, "major"), INT),
            "minor": pc.cast(pc.struct_field(semver, "minor"), INT),
            "patch": pc.cast(pc.struct_field(semver, "patch"), INT),
            "published_date": raw(publishing + "publishedDate"),
            "end_of_life_date": raw(publishing + "endOfLifeDate"),
            "exclude_from_latest": _flag(raw(publishing + "excludeFromLatest")),
            "replica_count": replica_count, "storage_account_type": storage_type,
            "replication_mode": raw(publishing + "replicationMode"),
            "target_region_count": region_count,
            "os_disk_size_gb": pc.coalesce(raw(storage + "osDiskImage.sizeInGB"),
                                           raw(storage + "osDiskImage.sizedInGB")),
            "data_disk_size_gb": _list_sum(raw(storage + "dataDiskImages"), "sizeInGB",
                                           "sizedInGB"),
            "source_id": _lower_id(_or(_or(pc.struct_field(source, "id"),
                                           pc.struct_field(image_source, "id")),
                                       raw(publishing + "source.managedImage.id"))),
            "source_uri": _strip_query(_or(pc.struct_field(source, "uri"),
                                           pc.struct_field(image_source, "uri"))),
            "provisioning_state": raw("properties.provisioningState"),
            "allow_deletion_of_replicated_locations":
                raw("properties.safetyProfile.allowDeletionOfReplicatedLocations"),
            "block_deletion_before_end_of_life":
                raw("properties.safetyProfile.blockDeletionBeforeEndOfLife"),
            "storage_account_strategy": raw(publishing + "storageAccountStrategy"),
            "reported_for_policy_violation":
                raw("properties.safetyProfile.reportedForPolicyViolation"),
            "policy_violations": _policy_violations(raw("properties.safetyProfile.policyViolations")),
            "data_disk_count": pc.fill_null(pc.list_value_length(
                raw(storage + "dataDiskImages")), 0).cast(INT)}}


def _count_with_value(lists: pa.Array, name: str) -> pa.Array:
    """For each list of objects, how many hold a non-empty id at `name` (as normalize._lower
    reads it)."""
    ids = _lower_id(pc.struct_field(pc.list_flatten(lists), name))
    holding = pc.and_(pc.is_valid(ids), pc.not_equal(ids, "")).fill_null(False)
    parents = pc.list_parent_indices(lists).to_numpy()
    counts = np.bincount(parents[holding.to_numpy(zero_copy_only=False)], minlength=len(lists))
    return pa.array(counts, INT)


def _managed_images(raw, common, rtypes, data):
    os_disk = "properties.storageProfile.osDisk."
    return {"managed_images": {
        **common, "os_type": raw(os_disk + "osType"),
        "os_state": raw(os_disk + "osState"),
        "hyper_v_generation": raw("properties.hyperVGeneration"),
        "source_vm_id": _lower_id(raw("properties.sourceVirtualMachine.id")),
        "os_disk_size_gb": raw(os_disk + "diskSizeGB"),
        "data_disk_size_gb": _list_sum(raw("properties.storageProfile.dataDisks"),
                                       "diskSizeGB"),
        "storage_account_type": raw(os_disk + "storageAccountType"),
        "blob_uri": _strip_query(raw(os_disk + "blobUri")),
        "os_snapshot_id": _lower_id(raw(os_disk + "snapshot.id")),
        "os_managed_disk_id": _lower_id(raw(os_disk + "managedDisk.id")),
        "zone_resilient": raw("properties.storageProfile.zoneResilient"),
        "provisioning_state": raw("properties.provisioningState")}}


def _machines(raw, common, rtypes, data):
    is_vmss = pc.equal(rtypes, VMSS)

    def either(vmss_path: str, vm_path: str) -> pa.Array:
        return pc.if_else(is_vmss, raw(vmss_path), raw(vm_path))

    def storage(path: str) -> pa.Array:
        return either("properties.virtualMachineProfile.storageProfile." + path,
                      "properties.storageProfile." + path)

    def profile(path: str) -> pa.Array:
        return either("properties.virtualMachineProfile.osProfile." + path,
                      "properties.osProfile." + path)

    os_type = _true(storage("osDisk.osType"))
    windows = pc.is_valid(profile("windowsConfiguration"))
    linux = pc.is_valid(profile("linuxConfiguration"))
    if not pc.all(pc.or_(pc.is_valid(os_type), windows)).as_py():
        # Without an OS type the reference looks for the configuration *keys*, and pyarrow
        # reads a key holding null as no key: taken only where no such key is in the block.
        _require(not _NULL_CONFIGURATION.search(data) and b"\\u" not in data)
    os_type = pc.coalesce(os_type, pc.if_else(windows, "Windows", pc.if_else(
        linux, "Linux", pa.scalar(None, S))))
    containers = storage("osDisk.vhdContainers")
    some = pc.greater(pc.list_value_length(containers), 0).fill_null(False)
    first_container = pc.list_element(pc.if_else(some, containers, pa.scalar(None, containers.type)), 0)
    blob = _or(_or(storage("osDisk.vhd.uri"), storage("osDisk.image.uri")), first_container)
    vhd_uri = _strip_query(blob)
    power = _true(raw("properties.extended.instanceView.powerState.code"))
    return {"machines": {
        **common, "kind": pc.if_else(is_vmss, "vmss", "vm"),
        "capacity": pc.if_else(is_vmss, pc.fill_null(raw("sku.capacity"), 0), 1),
        "vm_size": either("sku.name", "properties.hardwareProfile.vmSize"), "os_type": os_type,
        **_image_reference(storage, vhd_uri), "vhd_uri": vhd_uri,
        "os_disk_unmanaged": pc.is_valid(vhd_uri),
        "os_disk_create_option": storage("osDisk.createOption"),
        "license_type": either("properties.virtualMachineProfile.licenseType",
                               "properties.licenseType"),
        "plan_name": raw("plan.name"), "plan_publisher": raw("plan.publisher"),
        "plan_product": raw("plan.product"),
        "power_state": _lowered(pc.replace_substring_regex(power, r"(?s)^[^/]*/", "",
                                                           max_replacements=1)),
        "running_version_id": pa.nulls(len(rtypes), S),
        "running_versions": pa.nulls(len(rtypes), S),
        "managed_by": _lower_id(raw("managedBy")),
        "orchestration_mode": pc.if_else(is_vmss, raw("properties.orchestrationMode"),
                                         pa.scalar(None, S)),
        "scale_set_id": pc.if_else(is_vmss, pa.scalar(None, S),
                                   _lower_id(raw("properties.virtualMachineScaleSet.id"))),
        **_upgrade_policy(raw, is_vmss),
        "security_type": either("properties.virtualMachineProfile.securityProfile.securityType",
                                "properties.securityProfile.securityType"),
        "hyper_v_generation": pc.if_else(is_vmss, pa.scalar(None, S),
                                         raw("properties.extended.instanceView.hyperVGeneration"))}}


def _instances(raw, common, rtypes, data):
    """normalize._Normalizer._instance."""
    def storage(path: str) -> pa.Array:
        return raw("properties.storageProfile." + path)

    power = _true(raw("properties.extended.instanceView.powerState.code"))
    image = _image_reference(storage, pa.nulls(len(rtypes), S))
    return {"instances": {
        **common, "scale_set_id": _true(_parent(common["id"], "virtualmachines")),
        "instance_id": pc.coalesce(_true(raw("instanceId")), _true(raw("properties.instanceId"))),
        **image, "latest_model_applied": raw("properties.latestModelApplied"),
        "power_state": _lowered(pc.replace_substring_regex(power, r"(?s)^[^/]*/", "",
                                                           max_replacements=1))}}


def _upgrade_policy(raw, is_vmss: pa.Array) -> dict[str, pa.Array]:
    """normalize._Normalizer._machine's scale-set columns (null for a VM)."""
    def of_sets(values: pa.Array) -> pa.Array:
        return pc.if_else(is_vmss, values, pa.scalar(None, values.type))

    policy = "properties.upgradePolicy."
    extensions = raw("properties.virtualMachineProfile.extensionProfile.extensions")
    kinds = pc.struct_field(pc.struct_field(pc.list_flatten(extensions), "properties"), "type")
    health = pc.is_in(_lowered(kinds), value_set=pa.array(sorted(APPLICATION_HEALTH), S))
    health = health.fill_null(False)
    first: list = [None] * len(extensions)
    for parent, kind in zip(pc.filter(pc.list_parent_indices(extensions), health).to_pylist(),
                            pc.filter(kinds, health).to_pylist(), strict=True):
        first[parent] = kind if first[parent] is None else first[parent]
    return {
        "upgrade_mode": of_sets(raw(policy + "mode")),
        "automatic_os_upgrade": of_sets(pc.coalesce(
            raw(policy + "automaticOSUpgradePolicy.enableAutomaticOSUpgrade"),
            raw(policy + "automaticOSUpgrade"))),
        "health_probe_id": of_sets(_lower_id(
            raw("properties.virtualMachineProfile.networkProfile.healthProbe.id"))),
        "health_extension": of_sets(pa.array(first, S)),
        "overprovision": of_sets(raw("properties.overprovision")),
        "rolling_max_batch_percent": of_sets(raw(policy + "rollingUpgradePolicy.maxBatchInstancePercent")),
        "rolling_max_surge": of_sets(raw(policy + "rollingUpgradePolicy.maxSurge"))}


def _image_reference(storage, vhd_uri: pa.Array) -> dict[str, pa.Array]:
    """normalize._image_reference, one condition per kind, first match wins."""
    ref_id = _true(_lower_id(storage("imageReference.id")))
    shared = _true(_lower_id(storage("imageReference.sharedGalleryImageId")))
    community = _true(_lower_id(storage("imageReference.communityGalleryImageId")))
    publisher, offer = storage("imageReference.publisher"), storage("imageReference.offer")
    has_id = pc.is_valid(ref_id)
    kinds = [
        ("managed", pc.and_(has_id, pc.match_substring(
            ref_id, "/providers/microsoft.compute/images/").fill_null(False))),
        ("gallery", pc.and_(has_id, pc.match_substring(ref_id, "/galleries/").fill_null(False))),
        ("shared", pc.is_valid(shared)),
        ("community", pc.is_valid(community)),
        ("marketplace", pc.or_(pc.is_valid(_true(publisher)), pc.is_valid(_true(offer)))),
        ("unknown", has_id),
        ("vhd", pc.is_valid(_true(vhd_uri))),
    ]
    taken = pa.array(np.zeros(len(ref_id), bool))
    kind, first = pa.nulls(len(ref_id), S), {}
    for name, condition in kinds:
        first[name] = pc.and_(condition, pc.invert(taken))
        kind = pc.if_else(first[name], name, kind)
        taken = pc.or_(taken, condition)
    gallery_id = pc.coalesce(shared, community)
    catalogued = pc.or_(first["shared"], first["community"])
    image_id = pc.if_else(catalogued, gallery_id, pc.if_else(
        pc.or_(first["managed"], pc.or_(first["gallery"], first["unknown"])), ref_id,
        pa.scalar(None, S)))
    versioned = pc.or_(first["gallery"], catalogued)
    versioned_id = pc.if_else(versioned, image_id, pa.scalar(None, S))
    marketplace = first["marketplace"]

    def listed(path: str) -> pa.Array:
        return pc.if_else(marketplace, storage("imageReference." + path), pa.scalar(None, S))

    # normalize.definition_of and the version it names, from one match of each distinct id.
    distinct = pc.dictionary_encode(versioned_id)
    split = pc.extract_regex(distinct.dictionary, _VERSIONED)
    definition = pc.coalesce(pc.struct_field(split, "definition"), distinct.dictionary)
    return {
        "image_kind": pc.fill_null(kind, "unknown"),
        "image_publisher": listed("publisher"), "image_offer": listed("offer"),
        "image_sku": listed("sku"),
        "image_version": pc.coalesce(pc.take(pc.struct_field(split, "version"), distinct.indices),
                                     listed("version")),
        "exact_version": storage("imageReference.exactVersion"), "image_id": image_id,
        "image_definition_id": pc.take(definition, distinct.indices),
    }


def _autoscale_settings(lines: pa.Array) -> pa.Table:
    """Autoscale settings are few and nest deeply (profiles of rules): their rows are the
    reference's own, made here line by line; a setting it would name a problem in is
    refused, so the problem is named with its place in the file."""
    normalizer = reference._Normalizer()
    for text in lines.to_pylist():
        normalizer.add(json.loads(text))
    _require(not normalizer.problem_count)
    rows = normalizer.rows["autoscale_settings"]
    rows.flush()
    return pa.concat_tables(rows.chunks) if rows.chunks else \
        chunk_schema("autoscale_settings").empty_table()


def _disks(raw: _Fields) -> pa.Table:
    """normalize._Normalizer._disk: the gallery version each owner's OS disk came from."""
    owner = _true(_lower_id(raw("managedBy")))
    version = _true(_lower_id(raw("properties.creationData.galleryImageReference.id")))
    both = pc.and_(pc.is_valid(owner), pc.is_valid(version))
    owner, version = pc.filter(owner, both), pc.filter(version, both)
    # A scale set's instance disks are managed by `<vmss id>/virtualMachines/<n>`.
    owner = pc.if_else(pc.match_substring(owner, "/virtualmachinescalesets/"),
                       pc.replace_substring_regex(owner, r"/virtualmachines/[^/]+$", ""), owner)
    return pa.table({"owner": owner, "version": pc.dictionary_encode(version)})


_BUILDERS = {"galleries": _galleries, "image_definitions": _definitions,
             "image_versions": _versions, "managed_images": _managed_images,
             "machines": _machines, "role_assignments": _role_assignments,
             "instances": _instances}
