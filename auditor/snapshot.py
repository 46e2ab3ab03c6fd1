"""Snapshots: the evidence an audit runs on, a directory of manifest.json plus one Parquet
file per table. Written once and atomically; every read verifies format and SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
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
from auditor.errors import AuditError
from auditor.normalize import TABLE_SCHEMAS, normalize

FORMAT = "image-audit-snapshot"
FORMAT_VERSION = 1
# Tables added since format version 1 was first written: older snapshots read them as empty.
ADDED_TABLES = {"autoscale_settings", "version_replica_sets"}
MANIFEST = "manifest.json"

_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


# Text columns that repeat a few thousand values over a million rows: loaded as pandas
# categories (codes into the distinct values), which is a fraction of the memory, and makes
# the joins and comparisons rules make on them integer work.
REPEATED_TEXT = {
    "machines": ["subscription_id", "resource_group", "location", "kind", "vm_size", "os_type",
                 "image_kind", "image_publisher", "image_offer", "image_sku", "image_version",
                 "exact_version", "image_id", "image_definition_id", "plan_name",
                 "plan_publisher", "plan_product", "power_state", "running_version_id"],
    "resource_tags": ["resource_table", "key", "key_lower", "value"],
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
        return {name: to_pandas(table, name) for name, table in self.arrow_tables.items()}

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
        """One hash for the whole snapshot: over the table names and their file hashes."""
        lines = "".join(f"{name}:{digest}\n" for name, digest in sorted(self.table_hashes.items()))
        return hashlib.sha256(lines.encode()).hexdigest()

    @property
    def collected_at(self) -> pd.Timestamp:
        return pd.Timestamp(self.manifest["collected_at"]).tz_convert("UTC")

    def full_manifest(self) -> dict:
        manifest = dict(self.manifest)
        manifest["tables"] = {
            name: {"file": f"{name}.parquet", "rows": self.arrow_tables[name].num_rows,
                   "sha256": self.table_hashes[name]}
            for name in sorted(self.arrow_tables)}
        manifest["snapshot_sha256"] = self.sha256
        return manifest

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write to a temporary directory beside `path`, then rename it into place."""
        target = Path(path)
        if target.exists() and not overwrite:
            raise AuditError(f"{target}: already exists; a snapshot is evidence and is never "
                             "overwritten (choose another path or pass --force)")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for name, data in self._files.items():
                _write_synced(staging / f"{name}.parquet", data)
            manifest = json.dumps(self.full_manifest(), indent=2, sort_keys=True, default=str)
            _write_synced(staging / MANIFEST, manifest.encode())
            if target.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
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
        return target

    @classmethod
    def read(cls, path: str | os.PathLike) -> Snapshot:
        """Load and verify: format version, every table file present, hashes and row counts."""
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise AuditError(f"{root}: not a snapshot (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise AuditError(f"{manifest_path}: corrupt manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise AuditError(f"{manifest_path}: not an image-audit snapshot manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise AuditError(f"{manifest_path}: snapshot format version "
                             f"{manifest.get('format_version')!r} is not supported "
                             f"(this image-audit reads version {FORMAT_VERSION})")
        listed = manifest.get("tables")
        if not isinstance(listed, dict):
            raise AuditError(f"{manifest_path}: manifest lists no tables")
        missing = sorted(set(TABLE_SCHEMAS) - set(listed) - ADDED_TABLES)
        if missing:
            raise AuditError(f"{manifest_path}: tables missing from the manifest: "
                             f"{', '.join(missing)}")
        tables = {}
        for name, entry in sorted(listed.items()):
            tables[name] = _read_table(root, name, entry)
        for name in sorted(ADDED_TABLES - set(listed)):  # a snapshot written before they were
            tables[name] = TABLE_SCHEMAS[name].empty_table()
        manifest = {k: v for k, v in manifest.items() if k not in ("tables", "snapshot_sha256")}
        snapshot = cls(tables, manifest)
        snapshot.__dict__["table_hashes"] = {name: listed[name]["sha256"] for name in listed}
        return snapshot


def _read_table(root: Path, name: str, entry) -> pa.Table:
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise AuditError(f"{root / MANIFEST}: table {name!r} has no SHA-256 in the manifest")
    file = root / f"{name}.parquet"
    if not file.is_file():
        raise AuditError(f"{file}: table file missing from the snapshot")
    data = file.read_bytes()
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
    return _conform(table, TABLE_SCHEMAS.get(name))


def _conform(table: pa.Table, schema: pa.Schema | None) -> pa.Table:
    """Older snapshots lack columns added since: add them as nulls so rules see one schema."""
    if schema is None:
        return table
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
                   scope: Iterable[dict] | None = None, source: dict | None = None) -> Snapshot:
    """Normalise raw resources into a snapshot; `source` (queries, scope asked for, gaps...)
    goes into the manifest as given."""
    collected_at = collected_at or datetime.now(timezone.utc)
    if collected_at.tzinfo is None:
        collected_at = collected_at.replace(tzinfo=timezone.utc)
    normalized = normalize(resources, scope=scope)
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
