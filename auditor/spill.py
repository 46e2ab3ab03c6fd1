"""Collected rows of the machine-sized tables, kept as JSON lines in a temporary file.

A million machines as Python objects would take gigabytes; as JSON lines on disk they take
none, and `import` reads JSON lines column by column (columnar.py). Pages are encoded and
written by one worker thread behind a bounded queue, so the threads that page through
Resource Graph go on with their next request while a page is converted. A query chain's
rows count only once the chain is committed: a chain that fails, or is restarted from its
first page, is dropped whole, and an id already committed is written once.

With `stream=True` the committed rows are also handed on, a block at a time, as they are
committed (`streamed`), so the snapshot is built while later pages are still awaited rather
than after the last one.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import simdjson

from auditor.importer import BLOCK_BYTES
from auditor.normalize import JsonLines, id_key

# Pages waiting to be written: at about a megabyte of rows a page, a bounded amount.
QUEUE_PAGES = 32
# Committed blocks waiting for the snapshot's builder (each BLOCK_BYTES of JSON lines).
QUEUE_BLOCKS = 4
# A Resource Graph answer's own keys, besides its rows.
ENVELOPE = ("totalRecords", "count", "resultTruncated", "$skipToken")


@dataclass
class PageLines:
    """A page's rows as JSON lines (each row's own text, minified), and their ids."""

    ids: list[str]
    data: bytes

    def __len__(self) -> int:
        return len(self.ids)


_parsers = threading.local()


def page_lines(body: bytes) -> tuple[dict, PageLines] | None:
    """A Resource Graph answer's envelope and its rows as JSON lines, without making a
    Python object of any row: simdjson parses the page (several times faster than building
    a million dicts) and hands back each row's text. None where the page is not a plain
    object with a list of rows that each have a text `id`, or where simdjson refuses a value
    (a lone surrogate, a number beyond 64 bits): the caller reads such a page with orjson
    and the standard parser, which name and repair what they find."""
    parser = getattr(_parsers, "parser", None) or simdjson.Parser()
    _parsers.parser = parser  # one a thread: a parser's document lives until its next parse
    try:
        document = parser.parse(body)
    except (ValueError, RuntimeError):
        return None
    rows = document.get("data") if isinstance(document, simdjson.Object) else None
    if not isinstance(rows, simdjson.Array):
        return None
    ids, lines = [], []
    for row in rows:
        rid = row.get("id") if isinstance(row, simdjson.Object) else None
        if not isinstance(rid, str):
            return None
        ids.append(rid)
        lines.append(row.mini)
    envelope = {key: _plain(document.get(key)) for key in ENVELOPE if key in document}
    return envelope, PageLines(ids, b"\n".join(lines) + b"\n" if lines else b"")


def _plain(value):
    """An envelope value as orjson would give it (an object or list as Python's own)."""
    if isinstance(value, (simdjson.Object, simdjson.Array)):
        return orjson.loads(value.mini)
    return value


class RowSpill:
    """A temporary file of JSON lines, written by its own thread; `page`, `commit` and
    `drop` may be called from any thread, `blocks` and `rows` once `finish` has run."""

    def __init__(self, stream: bool = False):
        self._file = tempfile.TemporaryFile(prefix="image-audit-rows-")
        # Committed rows not yet handed on, and the blocks handed on (None: the end).
        self._ready = bytearray()
        self._blocks: queue.Queue | None = queue.Queue(QUEUE_BLOCKS) if stream else None
        self._queue: queue.Queue = queue.Queue(QUEUE_PAGES)
        self._pending: dict[object, list[tuple[int, int, list[str]]]] = {}
        self._segments: list[tuple[int, int]] = []  # committed (offset, length), in order
        self._ids: set[int] = set()  # keys (normalize.id_key) of the ids committed so far
        self._end = 0
        self._error: BaseException | None = None
        self.rows = 0
        self._handing_on = stream
        self._worker = threading.Thread(target=self._work, name="image-audit-spill", daemon=True)
        self._worker.start()

    def page(self, chain: object, rows: list[dict] | PageLines) -> None:
        """Rows of one page of `chain`: parsed JSON objects, each with an `id`, or the
        page's JSON lines."""
        self._queue.put(("page", chain, rows))

    def commit(self, chain: object) -> None:
        self._queue.put(("commit", chain, None))

    def drop(self, chain: object) -> None:
        self._queue.put(("drop", chain, None))

    def finish(self) -> None:
        """Wait until every page is written, and end the stream; the ids are no longer
        needed."""
        self._stop()
        self._ids = set()
        self._pending = {}
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop()
        self._file.close()

    def _stop(self) -> None:
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()
        if self._blocks is not None:
            if self._handing_on:
                if self._ready and self._error is None:
                    self._blocks.put(_lines(self._ready))
                self._blocks.put(None)
            self._ready = bytearray()
            self._blocks = None  # the end is said once

    def streamed(self) -> Iterator[JsonLines]:
        """The committed rows as blocks of JSON lines, as they are committed, until `finish`
        (or `close`); for one consumer, which must read to the end or call `abandon`."""
        blocks = self._blocks
        while blocks is not None and (block := blocks.get()) is not None:
            yield block

    def abandon(self) -> None:
        """The consumer of `streamed` has stopped: nothing more is handed on."""
        blocks, self._handing_on = self._blocks, False
        while blocks is not None:
            try:
                blocks.get_nowait()
            except queue.Empty:
                break

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so no producer waits forever
            try:
                self._handle(*item)
            except BaseException as exc:  # noqa: BLE001 - raised again by finish()
                self._error = exc

    def _handle(self, what: str, chain: object, rows: list[dict] | PageLines | None) -> None:
        if what == "page":
            if not rows:
                return
            if isinstance(rows, PageLines):
                ids, data = rows.ids, rows.data
            else:
                ids, data = [row["id"] for row in rows], b"\n".join(map(orjson.dumps, rows)) + b"\n"
            keys = [id_key(rid.lower().rstrip("/")) for rid in ids]
            self._pending.setdefault(chain, []).append((self._write(data), len(data), keys))
            return
        segments = self._pending.pop(chain, [])
        if what == "drop":
            return
        for offset, length, ids in segments:
            fresh = [i not in self._ids for i in ids]
            for key in ids:
                self._ids.add(key)
            if len(set(ids)) == len(ids) and all(fresh):
                self._segments.append((offset, length))
                self.rows += len(ids)
                self._hand_on(offset, length)
                continue
            # Rare: ids seen before (overlapping scopes, a page repeated): the segment is
            # written again without them.
            lines = self._read(offset, length).split(b"\n")
            seen, kept = set(), []
            for line, key, new in zip(lines, ids, fresh, strict=False):
                if new and key not in seen:
                    kept.append(line)
                seen.add(key)
            if kept:
                data = b"\n".join(kept) + b"\n"
                self._segments.append((self._write(data), len(data)))
                self.rows += len(kept)
                self._hand_on(*self._segments[-1])

    def _hand_on(self, offset: int, length: int) -> None:
        """A committed segment goes to the stream, a block once there is a block's worth (the
        queue is bounded: a builder that falls behind holds back the pages, not memory)."""
        if not self._handing_on:
            return
        self._ready += self._read(offset, length)
        if len(self._ready) >= BLOCK_BYTES:
            block, self._ready = self._ready, bytearray()
            self._blocks.put(_lines(block))

    def _write(self, data: bytes) -> int:
        offset = self._end
        self._file.seek(offset)
        self._file.write(data)
        self._end += len(data)
        return offset

    def _read(self, offset: int, length: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(length)

    def blocks(self) -> Iterator[JsonLines]:
        """The committed rows as blocks of whole JSON lines, as `import` reads a file."""
        block = bytearray()
        for offset, length in self._segments:
            block += self._read(offset, length)
            if len(block) >= BLOCK_BYTES:
                yield _lines(block)  # a bytearray, as import's blocks are: never copied
                block = bytearray()
        if block:
            yield _lines(block)

    def parsed(self) -> Iterator[dict]:
        """The committed rows as objects (for small collections and tests)."""
        for block in self.blocks():
            for _, row in block.again():
                yield row


def _lines(data: bytearray) -> JsonLines:
    def again():
        for number, line in enumerate(data.split(b"\n"), 1):
            if line:
                yield f"collected row {number}", orjson.loads(line)

    return JsonLines(data, again=again)
