"""`image-audit import`: JSON files of raw resources, as Azure gives them, into a snapshot.

Accepted shapes: a list of resources (also as `az vm list`, `az sig image-version list` and
the like print them, properties at the top level); an `az graph query` result
(`{"data": [...]}`); an ARM list response (`{"value": [...]}`); a single resource object;
JSON lines (one resource per
line, as `image-audit synth` writes). Any of them may be gzip-compressed (`.gz`).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

from auditor.errors import AuditError
from auditor.normalize import JsonLines, without_properties
from auditor.snapshot import Snapshot, build_snapshot

# A whole-document JSON file is parsed in memory; beyond this size only JSON lines (streamed)
# are accepted, so a huge file passed by mistake fails at once instead of exhausting memory.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024
# JSON lines are read and normalised in blocks of whole lines of about this size: big enough
# for column-at-a-time work to pay, small enough that a block's parsed form stays small.
BLOCK_BYTES = 16 * 2**20


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _is_json_lines(path: Path) -> bool:
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    return stem.endswith((".jsonl", ".ndjson"))


def read_resources(path: Path) -> Iterator[tuple[str, object] | JsonLines]:
    """Yield `(where, resource)` for every item in one file; JSON lines are streamed, as
    `JsonLines` blocks."""
    if not path.is_file():
        raise AuditError(f"{path}: file not found")
    if _is_json_lines(path):
        for first, block in _line_blocks(path):
            yield JsonLines(block, again=lambda first=first, block=block:
                            _block_resources(path, first, block))
        return
    size = os.path.getsize(path)
    if size > MAX_DOCUMENT_BYTES:
        raise AuditError(f"{path}: {size / 2**20:,.0f} MiB is too large for one JSON document "
                         f"(limit {MAX_DOCUMENT_BYTES // 2**20} MiB); export JSON lines "
                         "(.jsonl) instead, which are streamed")
    try:
        with _open(path) as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise AuditError(f"{path}: cannot read ({exc})") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise AuditError(f"{path}: decompresses to more than {MAX_DOCUMENT_BYTES // 2**20} MiB; "
                         "export JSON lines (.jsonl) instead")
    if not data.strip():
        raise AuditError(f"{path}: empty file")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise AuditError(f"{path}: malformed JSON ({exc})") from None
    items = _items(document)
    if items is None:
        raise AuditError(f"{path}: not a resource list: expected a JSON list, an object with "
                         "'data' (az graph query) or 'value' (ARM list), or a resource with 'id'")
    for index, item in enumerate(items):
        yield f"{path.name} item {index}", _with_properties(item, path, index)


def _with_properties(item, path: Path, index: int):
    """The item, unless it is a gallery, image or machine with no properties in either shape
    (ARM's `properties`, or lifted to the top level as `az ... list` prints them): a
    projection such as `az vm list --query "[].{id:id, name:name}"` would be audited as if
    the resources had none."""
    rtype = without_properties(item)
    if rtype:
        raise AuditError(f"{path}: item {index}: a {rtype} resource without its properties "
                         "(a --query projection?); export whole resources, for example "
                         "`az vm list -o json` or `az graph query` with `properties`")
    return item


def _items(document):
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        for key in ("data", "value"):
            if isinstance(document.get(key), list):
                return document[key]
        if "id" in document:
            return [document]
    return None


def _line_blocks(path: Path) -> Iterator[tuple[int, bytearray]]:
    """The file's whole lines in blocks of about BLOCK_BYTES, each with its first line's
    number; read straight into each block's own buffer, which is copied no further."""
    try:
        with _open(path) as handle:
            number, rest = 1, b""
            while True:
                block = bytearray(len(rest) + BLOCK_BYTES)
                block[:len(rest)] = rest
                size = len(rest)
                with memoryview(block) as view:
                    while size < len(block) and (got := handle.readinto(view[size:])):
                        size += got
                if not size:
                    return
                # A full buffer ends after its last whole line; the rest starts the next.
                cut = block.rfind(b"\n", 0, size) + 1 if size == len(block) else size
                rest = bytes(block[cut:size])
                del block[cut:]
                if block:
                    yield number, block
                    number += int(np.count_nonzero(np.frombuffer(block, np.uint8) == ord("\n")))
    except (OSError, EOFError) as exc:
        raise AuditError(f"{path}: cannot read ({exc})") from None


def _block_resources(path: Path, first: int, block: bytes) -> Iterator[tuple[str, object]]:
    lines = block.split(b"\n")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield f"{path.name} line {first + index}", orjson.loads(line)
        except orjson.JSONDecodeError:
            as_in_file = line + b"\n" if index < len(lines) - 1 else line
            try:
                orjson.loads(as_in_file)
            except orjson.JSONDecodeError as exc:  # the position as the file has it
                raise AuditError(f"{path}: line {first + index}: malformed JSON ({exc})") from None


def import_files(paths: list[Path], *, collected_at: datetime | None = None) -> Snapshot:
    """Every resource of every file through the one normaliser into one snapshot."""
    def resources():
        for path in paths:
            yield from read_resources(Path(path))

    snapshot = build_snapshot(resources(), collected_at=collected_at, source={
        "source": {"kind": "import", "files": [Path(p).name for p in paths]}})
    if not any(t.num_rows for n, t in snapshot.arrow_tables.items() if n != "resource_tags"):
        skipped = snapshot.manifest["skipped_types"]
        detail = ", ".join(f"{k}: {v}" for k, v in skipped.items()) or "no items"
        raise AuditError(f"{', '.join(map(str, paths))}: no gallery, image, VM or scale set "
                         f"resources found ({detail})")
    return snapshot


def sample_snapshot() -> Snapshot:
    """The bundled fictional estate, through the same import path as any user file."""
    from importlib.resources import files

    sample = files("auditor.data").joinpath("sample_estate.json")
    document = orjson.loads(sample.read_bytes())
    collected_at = datetime.fromisoformat(document["collectedAt"].replace("Z", "+00:00"))
    items = ((f"sample item {i}", item) for i, item in enumerate(document["data"]))
    return build_snapshot(items, collected_at=collected_at, scope=document.get("scope"),
                          source={"source": {"kind": "sample", "tenant": document["tenant"]}})


def sample_config() -> dict:
    """The sample tenant's policy (its approved images), applied under any user config."""
    from importlib.resources import files

    import yaml

    return yaml.safe_load(files("auditor.data").joinpath("sample_config.yaml").read_text())


def sample_exemptions_path() -> Path:
    """The sample tenant's exemptions file, applied by `audit --sample` unless --exemptions."""
    from importlib.resources import files

    return Path(str(files("auditor.data").joinpath("sample_exemptions.yaml")))
