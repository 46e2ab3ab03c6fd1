"""Snapshots: the evidence an audit runs on, a directory of manifest.json plus one Parquet
file per table. Written once and atomically; every read verifies format and SHA-256 hashes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from auditor import __version__
from auditor.columnar import normalize_lines
from auditor.errors import AuditError, shown
from auditor.normalize import MAX_PROBLEMS, TABLE_SCHEMAS, normalize

FORMAT = "image-audit-snapshot"
# 2: the snapshot hash covers the whole manifest (version 1 hashed only the table files, so
# an edited collected_at, gap or problem list went unnoticed); version 1 is refused.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
# Tables added to format 2 after it shipped, filled by ARM GETs that are opt-in. A snapshot
# written before them lacks their files: it loads them empty, which is what a snapshot
# collected without those reads holds, and the rules read an empty table as not collected
# (unknown), never as "nothing wrong". Its hashes stay those it was written with.
ADDED_TABLES = ("marketplace_versions", "locks", "lock_reads")
_TABLE_NAME = re.compile(r"[a-z][a-z0-9_]*")

# Tables added after format 2 was fixed: a snapshot written before one existed reads it as an
# empty table, and the manifest read says it was not recorded (never an empty estate's pass).
LATER_TABLES = {"instances": "scale-set instances were not recorded in this snapshot "
                             "(written before the instances table existed); STL007 cannot "
                             "judge its scale sets"}

_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


# Text columns that repeat a few thousand values over a million rows: loaded as pandas
# categories (codes into the distinct values), which is a fraction of the memory, and makes
# the joins and comparisons rules make on them integer work.
REPEATED_TEXT = {
    "machines": ["subscription_id", "resource_group", "location", "kind", "vm_size", "os_type",
                 "image_kind", "image_publisher", "image_offer", "image_sku", "image_version",
                 "exact_version", "image_id", "image_definition_id", "plan_name",
                 "plan_publisher", "plan_product", "power_state", "running_version_id",
                 "security_type", "hyper_v_generation", "os_disk_create_option"],
    "resource_tags": ["resource_table", "key", "key_lower", "value"],
    "instances": ["subscription_id", "resource_group", "location", "scale_set_id", "image_kind",
                  "image_publisher", "image_offer", "image_sku", "image_version",
                  "exact_version", "image_id", "image_definition_id", "power_state"],
}


def to_pandas(table: pa.Table, name: str = "") -> pd.DataFrame:
    """Arrow to pandas keeping nullable ints and bools nullable (never silently float), and
    the repeated text columns of `name` as categories (see REPEATED_TEXT)."""
    for column in REPEATED_TEXT.get(name, []):
        at = table.schema.get_field_index(column)
        if at >= 0 and not pa.types.is_dictionary(table.schema.field(at).type):
            table = table.set_column(at, column, pc.dictionary_encode(table.column(at)))
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


class Snapshot:
    """Snapshot tables (Arrow, with pandas views) and the manifest that describes them."""

    def __init__(self, arrow_tables: dict[str, pa.Table], manifest: dict):
        self.arrow_tables = arrow_tables
        self.manifest = manifest

    @cached_property
    def tables(self) -> dict[str, pd.DataFrame]:
        absent = {name: TABLE_SCHEMAS[name].empty_table() for name in ADDED_TABLES
                  if name not in self.arrow_tables}
        return {name: to_pandas(table, name)
                for name, table in {**self.arrow_tables, **absent}.items()}

    @cached_property
    def _files(self) -> dict[str, bytes]:
        def encode(table: pa.Table) -> bytes:
            sink = pa.BufferOutputStream()
            # One row group per table, so a loaded column is one chunk (see _read_table).
            pq.write_table(table, sink, compression="zstd",
                           row_group_size=max(table.num_rows, 1))
            return sink.getvalue().to_pybytes()

        # pyarrow encodes without the interpreter lock: a table per core.
        with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
            return dict(zip(self.arrow_tables, pool.map(encode, self.arrow_tables.values()),
                            strict=True))

    @cached_property
    def table_hashes(self) -> dict[str, str]:
        return {name: hashlib.sha256(data).hexdigest() for name, data in self._files.items()}

    @property
    def sha256(self) -> str:
        """One hash for the whole snapshot: over the manifest's whole content (which lists
        every table file's hash), so neither a table nor the manifest can change unseen."""
        return _manifest_hash(self._manifest_content())

    @property
    def collected_at(self) -> pd.Timestamp:
        return pd.Timestamp(self.manifest["collected_at"]).tz_convert("UTC")

    def _manifest_content(self) -> dict:
        """The manifest as written, without its own hash; JSON types only (a round trip
        through JSON gives the same hash on read)."""
        manifest = dict(self.manifest)
        manifest["tables"] = {
            name: {"file": f"{name}.parquet", "rows": self.arrow_tables[name].num_rows,
                   "sha256": self.table_hashes[name]}
            for name in sorted(self.arrow_tables)}
        return json.loads(json.dumps(manifest, default=str))

    def full_manifest(self) -> dict:
        manifest = self._manifest_content()
        manifest["snapshot_sha256"] = _manifest_hash(manifest)
        return manifest

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write to a temporary directory beside `path`, then rename it into place. With
        `overwrite`, only an earlier snapshot is replaced, never another folder or a file."""
        target = Path(path)
        check_target(target, overwrite=overwrite)
        try:
            self._write(target)
        except OSError as exc:  # disk full, permission denied: one line naming the path
            raise AuditError(f"{target}: cannot write the snapshot ({exc.strerror or exc})") from None
        return target

    def _write(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # os.mkdir honours the umask: a snapshot folder is as readable as the reports beside it
        # (tempfile.mkdtemp would make it 0700).
        staging = _fresh_dir(target, "")
        try:
            for name, data in self._files.items():
                _write_synced(staging / f"{name}.parquet", data)
            manifest = json.dumps(self.full_manifest(), indent=2, sort_keys=True)
            _write_synced(staging / MANIFEST, manifest.encode())
            if target.exists():
                retired = _fresh_dir(target, "old.")
                os.replace(target, retired / "snapshot")
                try:
                    os.replace(staging, target)
                except BaseException:  # interrupted between the two renames: put the old back
                    os.replace(retired / "snapshot", target)
                    raise
                finally:
                    shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Snapshot:
        """Load and verify: format version, the hash over the manifest, table names, every
        table file present, their hashes, row counts and column types."""
        root = Path(path)
        manifest_path = root / MANIFEST
        manifest = _read_manifest(root)
        if manifest.get("format_version") != FORMAT_VERSION:
            found = manifest.get("format_version")
            if isinstance(found, int) and found < FORMAT_VERSION:
                raise AuditError(f"{manifest_path}: snapshot format version {found} was written "
                                 "by an older image-audit and its manifest is not covered by the "
                                 "snapshot hash; re-import (or collect) it with this version")
            raise AuditError(f"{manifest_path}: snapshot format version {found!r} is not "
                             f"supported (this image-audit reads version {FORMAT_VERSION})")
        _verify_hash(manifest, manifest_path)
        listed = manifest.get("tables")
        if not isinstance(listed, dict):
            raise AuditError(f"{manifest_path}: manifest lists no tables")
        for name in listed:
            if not _TABLE_NAME.fullmatch(name) or name not in TABLE_SCHEMAS:
                raise AuditError(f"{manifest_path}: table name {shown(name)} is not one of "
                                 "this image-audit's tables")
        missing = sorted(set(TABLE_SCHEMAS) - set(listed) - set(ADDED_TABLES)
                         - set(LATER_TABLES))
        if missing:
            raise AuditError(f"{manifest_path}: tables missing from the manifest: "
                             f"{', '.join(missing)}")
        try:
            collected_at = pd.Timestamp(manifest.get("collected_at"))
        except (TypeError, ValueError):
            collected_at = pd.NaT
        if collected_at is pd.NaT or collected_at.tzinfo is None:
            raise AuditError(f"{manifest_path}: collected_at is missing or not a time with a zone "
                             f"(found {shown(manifest.get('collected_at'))})")
        tables = {}
        for name, entry in sorted(listed.items()):
            tables[name] = _read_table(root, name, entry)
        manifest = {k: v for k, v in manifest.items() if k != "tables"}
        for name in sorted(set(LATER_TABLES) - set(listed)):
            tables[name] = TABLE_SCHEMAS[name].empty_table()
            add_problems(manifest, [LATER_TABLES[name]])
        snapshot = cls(tables, manifest)
        if set(listed) == set(tables):  # hashes of tables added on reading are computed
            snapshot.__dict__["table_hashes"] = {name: listed[name]["sha256"] for name in listed}
        return snapshot


def _verify_hash(manifest: dict, manifest_path: Path) -> None:
    """Take the stored snapshot hash out of `manifest` and check it is the hash of the rest."""
    if manifest.pop("snapshot_sha256", None) != _manifest_hash(manifest):
        raise AuditError(f"{manifest_path}: snapshot SHA-256 does not match the manifest's "
                         "content (manifest edited or corrupt)")


def _manifest_hash(content: dict) -> str:
    """SHA-256 of the manifest's content in one canonical JSON form (sorted keys, no spaces,
    ASCII escapes), so the same content always gives the same hash."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _read_file(path: Path) -> bytes:
    """A snapshot file's bytes; only a regular file is read (a link to /dev/zero or a fifo
    would never end), and never more than its size."""
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AuditError(f"{path}: not a regular file; a snapshot holds only files")
        return handle.read(info.st_size)


def _read_manifest(root: Path) -> dict:
    """The manifest as a dict, or one line saying what the path is instead."""
    manifest_path = root / MANIFEST
    try:
        exists, folder, has_manifest = root.exists(), root.is_dir(), manifest_path.is_file()
    except OSError as exc:
        raise AuditError(f"{root}: cannot read ({exc.strerror or exc})") from None
    if not exists:
        raise AuditError(f"{root}: no such snapshot folder")
    if not folder:
        raise AuditError(f"{root}: is a file, not a snapshot folder; if it is an export, run "
                         f"`image-audit import {root} -o SNAPSHOT` first and audit SNAPSHOT")
    if not has_manifest:
        raise AuditError(f"{root}: not a snapshot (no {MANIFEST}); make one with "
                         "`image-audit import FILES -o SNAPSHOT` or `image-audit collect -o SNAPSHOT`")
    try:
        manifest = json.loads(_read_file(manifest_path).decode("utf-8"))
    except OSError as exc:
        raise AuditError(f"{manifest_path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise AuditError(f"{manifest_path}: corrupt manifest ({shown(str(exc), 120)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AuditError(f"{manifest_path}: not an image-audit snapshot manifest")
    return manifest


def check_target(path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Whether a snapshot may be written at `path`: checked before collecting or importing,
    so a long run never ends in "already exists"."""
    target = Path(path)
    if not (target.exists() or target.is_symlink()):
        return
    if not overwrite:
        raise AuditError(f"{target}: already exists; a snapshot is evidence and is never "
                         "overwritten (choose another path or pass --force)")
    _check_replaceable(target)


def _check_replaceable(target: Path) -> None:
    """--force replaces an earlier snapshot; anything else at the path is somebody's data: a
    folder is replaced only when its manifest verifies (the hash over its content) and it
    holds nothing but that manifest and the table files it lists."""
    try:
        if target.is_symlink() or not target.is_dir():
            raise AuditError("not a folder")
        manifest = _read_manifest(target)
        _verify_hash(manifest, target / MANIFEST)
        if not isinstance(manifest.get("tables"), dict):
            raise AuditError("manifest lists no tables")
        expected = {MANIFEST} | {f"{name}.parquet" for name in manifest["tables"]}
        present = {entry.name for entry in os.scandir(target)}
    except (AuditError, OSError):
        raise AuditError(f"{target}: not a snapshot (no valid {MANIFEST}); --force replaces only "
                         "an earlier snapshot, never another folder or a file: choose another "
                         "path") from None
    others = sorted(present - expected)
    if others:
        raise AuditError(f"{target}: holds {len(others)} file(s) that are not part of the "
                         f"snapshot (first: {shown(others[0])}); --force never deletes them: "
                         "move them or choose another path")


def _fresh_dir(target: Path, kind: str) -> Path:
    for _ in range(100):
        path = target.parent / f".{target.name}.{kind}{secrets.token_hex(6)}.tmp"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot create a temporary folder", str(target.parent))


def _read_table(root: Path, name: str, entry) -> pa.Table:
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise AuditError(f"{root / MANIFEST}: table {name!r} has no SHA-256 in the manifest")
    if entry.get("file") != f"{name}.parquet":
        raise AuditError(f"{root / MANIFEST}: table {name!r} names the file "
                         f"{shown(entry.get('file'))}, not {name}.parquet")
    file = root / f"{name}.parquet"
    try:
        data = _read_file(file)
    except FileNotFoundError:
        raise AuditError(f"{file}: table file missing from the snapshot") from None
    except OSError as exc:
        raise AuditError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise AuditError(f"{file}: SHA-256 does not match the manifest (file edited or corrupt)")
    try:
        # One chunk per row group (read_table splits into many): filtering a many-chunk
        # column first concatenates the whole column, which made every rule pay for a copy.
        parquet = pq.ParquetFile(pa.BufferReader(data))
        repeated = [c for c in REPEATED_TEXT.get(name, []) if c in parquet.schema_arrow.names]
        if repeated:  # read as codes into the distinct values the file already stores
            parquet = pq.ParquetFile(pa.BufferReader(data), read_dictionary=repeated)
        table = parquet.read()
    except (pa.ArrowException, OSError) as exc:
        raise AuditError(f"{file}: unreadable Parquet ({exc})") from None
    if table.num_rows != entry.get("rows"):
        raise AuditError(f"{file}: {table.num_rows} rows but the manifest says {entry.get('rows')}")
    schema = TABLE_SCHEMAS[name]
    for fld in schema:
        at = table.schema.get_field_index(fld.name)
        if at < 0:
            continue
        found = table.schema.field(at).type
        if pa.types.is_dictionary(found):
            found = found.value_type
        if found != fld.type:
            raise AuditError(f"{file}: column {fld.name!r} is {found}, expected {fld.type}")
    return _conform(table, schema)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Snapshots written before a column was added lack it: add it as nulls so rules see one
    schema."""
    for fld in schema:
        if fld.name not in table.column_names:
            table = table.append_column(fld, pa.nulls(table.num_rows, type=fld.type))
    return table


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def build_snapshot(resources: Iterable, *, collected_at: datetime | None = None,
                   scope: Iterable[dict] | None = None, source: dict | None = None,
                   unique_ids: bool = False) -> Snapshot:
    """Normalise raw resources into a snapshot; `source` (queries, scope asked for, gaps...)
    goes into the manifest as given. `unique_ids`: the caller vouches that no id comes twice,
    so none is looked for."""
    collected_at = collected_at or datetime.now(timezone.utc)
    if collected_at.tzinfo is None:
        collected_at = collected_at.replace(tzinfo=timezone.utc)
    normalized = normalize(resources, scope=scope, columns=normalize_lines,
                           unique_ids=unique_ids)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool": "image-audit",
        "tool_version": __version__,
        "collected_at": collected_at.astimezone(timezone.utc).isoformat(),
        "read_types": dict(sorted(normalized.read_types.items())),
        "skipped_types": dict(sorted(normalized.skipped_types.items())),
        "problems": normalized.problems,
        "problem_count": normalized.problem_count,
        "gaps": [],
    }
    manifest.update(source or {})
    return Snapshot(normalized.tables, manifest)


def repaired(value, path: str, found: list):
    """`value` with every lone surrogate (invalid Unicode, which no table or report can hold)
    replaced by U+FFFD, and numbers marked out of range (`OUT_OF_RANGE`) read as missing;
    each change is appended to `found` as (path, what)."""
    if value is OUT_OF_RANGE:
        found.append((path, "a number out of range, read as missing"))
        return None
    if isinstance(value, str):
        fixed = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        if fixed != value:
            found.append((path, "a lone surrogate (invalid Unicode), replaced by U+FFFD"))
        return fixed
    if isinstance(value, list):
        return [repaired(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {repaired(k, path, found): repaired(v, f"{path}.{k}", found) for k, v in value.items()}
    return value


OUT_OF_RANGE = object()


def add_problems(manifest: dict, notes: list[str]) -> None:
    """Problems found outside the normaliser (while parsing or collecting), kept like its own:
    the first MAX_PROBLEMS listed, all counted."""
    if not notes:
        return
    problems = list(manifest.get("problems") or [])
    manifest["problems"] = (problems + list(notes))[:MAX_PROBLEMS]
    manifest["problem_count"] = int(manifest.get("problem_count") or 0) + len(notes)
