"""`image-audit import`: JSON files of raw resources, as Azure gives them, into a snapshot.

Accepted shapes: a list of resources (also as `az vm list`, `az sig image-version list` and
the like print them, properties at the top level); an `az graph query` result
(`{"data": [...]}`); an ARM list response (`{"value": [...]}`); a single resource object;
JSON lines (one resource per
line, as `image-audit synth` writes). Any of them may be gzip-compressed (`.gz`).
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa

from auditor.errors import AuditError
from auditor.normalize import TABLE_SCHEMAS, JsonLines, without_properties
from auditor.snapshot import OUT_OF_RANGE, Snapshot, add_problems, build_snapshot, repaired

# A whole-document JSON file is parsed in memory; beyond this size only JSON lines (streamed)
# are accepted, so a huge file passed by mistake fails at once instead of exhausting memory.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024
# JSON lines are read and normalised in blocks of whole lines of about this size: big enough
# for column-at-a-time work to pay, small enough that a block's parsed form stays small.
BLOCK_BYTES = 16 * 2**20
# A JSON line longer than this is refused: a file without newlines (a JSON document named
# .jsonl, or a hostile one) would otherwise be gathered into ever larger buffers.
MAX_LINE_BYTES = 64 * 2**20


def _open(path: Path):
    """The file's bytes as UTF-8: a UTF-8 byte order mark is skipped, UTF-16 (what Windows
    PowerShell's `>` writes) is decoded."""
    handle = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    try:
        head = handle.peek(4)[:4]
    except BaseException:
        handle.close()
        raise
    if head.startswith(codecs.BOM_UTF8):
        handle.read(len(codecs.BOM_UTF8))
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _Utf16(handle)
    return handle


class _Utf16(io.RawIOBase):
    """A UTF-16 file read as UTF-8 bytes, a megabyte of text at a time."""

    def __init__(self, raw):
        self._text = io.TextIOWrapper(raw, encoding="utf-16", newline="")
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, view) -> int:
        while not self._pending:
            chunk = self._text.read(2**20)
            if not chunk:
                return 0
            self._pending = chunk.encode("utf-8", "surrogatepass")
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._text.close()
        super().close()


def _size(count: int) -> str:
    return f"{count // 2**20} MiB" if count >= 2**20 else f"{count:,} bytes"


def _is_json_lines(path: Path) -> bool:
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    return stem.endswith((".jsonl", ".ndjson"))


def read_resources(path: Path, *, pages: list | None = None,
                   notes: list | None = None) -> Iterator[tuple[str, object] | JsonLines]:
    """Yield `(where, resource)` for every item in one file; JSON lines are streamed, as
    `JsonLines` blocks. A page of a paged result is described in `pages` (see _page); values
    read as missing (numbers out of range, lone surrogates) are described in `notes`."""
    notes = [] if notes is None else notes
    if not path.is_file():
        raise AuditError(f"{path}: file not found")
    if _is_json_lines(path):
        for first, block in _line_blocks(path):
            yield JsonLines(block, again=lambda first=first, block=block:
                            _block_resources(path, first, block, notes))
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
    except UnicodeError as exc:
        raise AuditError(f"{path}: not valid UTF-16 ({exc.reason})") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise AuditError(f"{path}: decompresses to more than {MAX_DOCUMENT_BYTES // 2**20} MiB; "
                         "export JSON lines (.jsonl) instead")
    if not data.strip():
        raise AuditError(f"{path}: empty file")
    try:
        document = parse_json(data, f"{path.name}", notes)
    except orjson.JSONDecodeError as exc:
        hint = ("; it looks like UTF-16 without a byte order mark: save it as UTF-8"
                if b"\x00" in data[:4] else "")
        raise AuditError(f"{path}: malformed JSON ({exc}){hint}") from None
    items = _items(document)
    if items is None:
        raise AuditError(f"{path}: not a resource list: expected a JSON list, an object with "
                         "'data' (az graph query) or 'value' (ARM list), or a resource with 'id'")
    page = _page(document, items)
    if page is not None and pages is not None:
        pages.append(dict(page, file=path.name))
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


def parse_json(data: bytes, where: str, notes: list):
    """orjson, and where it refuses a number out of range or a lone surrogate (one value
    should not cost the whole file), the standard parser: such a number is read as missing,
    a lone surrogate becomes U+FFFD, and each is noted as a problem."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        original = exc

    def number(text: str):
        if not any(c in text for c in ".eE") and -2**63 <= int(text) < 2**64:
            return int(text)
        value = float(text)  # as orjson reads a whole number beyond 64 bits
        return OUT_OF_RANGE if value in (float("inf"), float("-inf")) else value

    def constant(text: str):
        raise ValueError(f"{text} is not JSON")
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        document = json.loads(text, parse_float=number, parse_int=number, parse_constant=constant)
    except (ValueError, RecursionError):
        raise original from None
    found: list = []
    document = repaired(document, "", found)
    for path, kind in found:
        notes.append(f"{where}: {path.lstrip('.') or '(value)'}: {kind}")
    return document


def _page(document, items: list) -> dict | None:
    """What a paged answer says about its completeness: `az graph query` prints count, data,
    skip_token and total_records (skip_token null on the last page); the REST answer saved
    as is says totalRecords, $skipToken and resultTruncated; an ARM list page has nextLink."""
    if not isinstance(document, dict):
        return None
    if "data" in document:
        total = document.get("total_records", document.get("totalRecords"))
        token = document.get("skip_token") or document.get("$skipToken")
        truncated = str(document.get("resultTruncated", "")).lower() == "true"
        if not isinstance(total, int) or isinstance(total, bool):
            total = None
        if total is None and not token and not truncated:
            return None
        return {"kind": "graph", "rows": len(items), "total": total, "more": bool(token),
                "truncated": truncated}
    if "value" in document and document.get("nextLink"):
        return {"kind": "arm", "rows": len(items), "total": None, "more": True, "truncated": False}
    return None


def _items(document):
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        if isinstance(document.get("id"), str) and isinstance(document.get("value"), list):
            return [document]  # a list body named by its request path (a lock list)
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
                if len(rest) >= MAX_LINE_BYTES:
                    raise AuditError(f"{path}: line {number}: longer than {_size(MAX_LINE_BYTES)} "
                                     "(JSON lines hold one resource per line; a JSON document "
                                     "should be named .json)")
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
    except UnicodeError as exc:
        raise AuditError(f"{path}: not valid UTF-16 ({exc.reason})") from None


def _block_resources(path: Path, first: int, block: bytes,
                     notes: list | None = None) -> Iterator[tuple[str, object]]:
    notes = [] if notes is None else notes
    lines = block.split(b"\n")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path.name} line {first + index}"
        try:
            yield where, parse_json(line, where, notes)
        except orjson.JSONDecodeError:
            as_in_file = line + b"\n" if index < len(lines) - 1 else line
            try:
                orjson.loads(as_in_file)
            except orjson.JSONDecodeError as exc:  # the position as the file has it
                raise AuditError(f"{path}: line {first + index}: malformed JSON ({exc})") from None


def import_files(paths: list[Path], *, collected_at: datetime | None = None) -> Snapshot:
    """Every resource of every file through the one normaliser into one snapshot. A file that
    is one page of a longer result is a gap (manifest, scope table, COV001), unless the other
    pages are imported with it."""
    pages: list[dict] = []
    notes: list[str] = []

    def resources():
        for path in paths:
            yield from read_resources(Path(path), pages=pages, notes=notes)

    snapshot = build_snapshot(resources(), collected_at=collected_at, source={
        "source": {"kind": "import", "files": [Path(p).name for p in paths]}})
    gaps = _page_gaps(pages)
    if gaps:  # known once every file is read: the scope table is built from them
        snapshot.manifest["gaps"] = gaps
        snapshot.arrow_tables["scope"] = pa.Table.from_pylist(
            [{"subscription_id": f"export:{gap['ids'][0]}", "display_name": f"export {gap['ids'][0]}",
              "status": gap["status"], "detail": gap["detail"]} for gap in gaps],
            schema=TABLE_SCHEMAS["scope"])
    add_problems(snapshot.manifest, notes)
    if not any(t.num_rows for n, t in snapshot.arrow_tables.items() if n != "resource_tags"):
        skipped = snapshot.manifest["skipped_types"]
        detail = ", ".join(f"{k}: {v}" for k, v in skipped.items()) or "no items"
        raise AuditError(f"{', '.join(map(str, paths))}: no gallery, image, VM or scale set "
                         f"resources found ({detail})")
    return snapshot


def _page_gaps(pages: list[dict]) -> list[dict]:
    """Pages of Resource Graph results are complete together when the rows of the pages that
    report the same total add up to it; an ARM page with a nextLink is always incomplete (its
    next pages cannot be told apart from other lists)."""
    gaps = []
    by_total: dict = {}
    for page in pages:
        by_total.setdefault(page["total"], []).append(page)
    for page in pages:
        if page["kind"] == "arm":
            detail = (f"{page['rows']} rows of an ARM list with a nextLink: the next pages were not "
                      "imported (follow nextLink until there is none, e.g. `az rest --uri NEXTLINK`, "
                      "and import every page, or run `image-audit collect`)")
        elif page["truncated"]:
            detail = (f"{page['rows']} rows of a Resource Graph result marked resultTruncated: the "
                      "query cannot be paged (project the id column) and rows are missing")
        else:
            group = by_total[page["total"]]
            got = sum(p["rows"] for p in group)
            if page["total"] is not None and got >= page["total"]:
                continue
            of = f" of {page['total']}" if page["total"] is not None else ""
            detail = (f"{got}{of} records of an `az graph query` result"
                      f"{' (skip_token: more pages)' if page['more'] else ''}: the rest was not "
                      "imported (page with `az graph query --first 1000 --skip-token TOKEN` until "
                      "skip_token is null and import every page, or run `image-audit collect`)")
        gaps.append({"table": "export", "scope": "file", "ids": [page["file"]],
                     "status": "incomplete", "detail": detail})
    return gaps


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
