"""Reports: findings.json, findings.csv, the Excel workbook (auditor/workbook.py), SARIF
(auditor/sarif.py), JUnit XML (auditor/junit.py), report.html (auditor/htmlreport.py),
summary.md and cost.csv, each written to a temporary name and renamed into place, with text
from Azure or users never becoming a formula.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditor import __version__
from auditor.engine import SEVERITIES
from auditor.errors import AuditError
from auditor.safetext import json_without_surrogates, shown, without_surrogates

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A line of a value that starts like a formula: a reader that splits records on a bare CR
# (LibreOffice does) would make it the first cell of a new row.
_FORMULA_AFTER_BREAK = re.compile(r"(?<=[\r\n])(?=[=+\-@\t\r])")
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(temporary_path)` beside `path`, then rename: never a half-written file."""
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)
        os.close(handle)
        write(Path(temporary))
        with open(temporary, "rb") as synced:
            os.fsync(synced.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except OSError as exc:  # disk full, permission denied: the previous file stays as it was
        raise AuditError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
    return path


def summary(findings: pd.DataFrame) -> dict:
    """The one count convention of every output: open findings (not exempted) by severity,
    most severe first, and by rule; exempted findings counted apart, never in a total of open
    findings nor in the exit code."""
    exempted = findings["exempted"].astype(bool).to_numpy()
    # Counted on the two columns alone: filtering the whole frame would copy every finding's
    # evidence, and every output asks for these counts.
    rule_ids, severities = findings["rule_id"], findings["severity"]

    def by_rule(rows: np.ndarray) -> dict:
        return {k: int(v) for k, v in rule_ids[rows].value_counts().sort_index().items()}

    by_severity = severities[~exempted].value_counts()
    return {
        "open": int((~exempted).sum()),
        "exempted": int(exempted.sum()),
        "open_by_severity": {s: int(by_severity.get(s, 0)) for s in reversed(SEVERITIES)},
        "open_by_rule": by_rule(~exempted),
        "exempted_by_rule": by_rule(exempted),
    }


def coverage(tables: dict[str, pd.DataFrame], manifest: dict) -> dict:
    """What the snapshot saw, said the same way in every report: `complete`, `partial` (each
    subscription or group not read, each collection gap), or `unknown` when the snapshot
    records no scope (an import of files that do not say what they cover)."""
    scope = tables.get("scope")
    scope = scope if scope is not None else pd.DataFrame(columns=["status"])
    not_read = scope[scope["status"].astype(str) != "ok"]
    gaps = [item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
            for item in manifest.get("gaps") or []]
    if len(not_read) or gaps:
        state = "partial"
    elif scope.empty:
        state = "unknown: imported without scope"
    else:
        state = "complete"
    return {"state": state, "scopes_read": int(len(scope) - len(not_read)),
            "not_read": [{"scope": str(r.get("subscription_id", "")),
                          "name": str(r.get("display_name", "") or ""),
                          "status": str(r.get("status", "")), "detail": str(r.get("detail", "") or "")}
                         for r in not_read.to_dict("records")],
            "gaps": gaps, "problems": int(manifest.get("problem_count") or 0)}


def counts_line(counts: dict) -> str:
    """The counts in one line, as the terminal and the reports say them."""
    severities = ", ".join(f"{k} {v}" for k, v in counts["open_by_severity"].items() if v)
    return (f"{counts['open']} open finding{'s' if counts['open'] != 1 else ''}"
            f" ({severities or 'none'}); {counts['exempted']} exempted")


# --- findings.json -----------------------------------------------------------------------
# Each chunk of findings becomes one Arrow array of finding texts, built column by column
# with Arrow string kernels and numpy over the text bytes, and written from its buffer.
# What those cannot spell exactly as json.loads + json.dumps would (floats and \\ or \uXXXX
# escapes in evidence, columns neither text nor bool) goes through `_dumped`, as before.

_SCALAR = json.JSONEncoder(ensure_ascii=False).encode  # C-accelerated; no indent
_STRING = json.encoder.encode_basestring
_FAST = {str: _STRING, int: int.__repr__, type(None): lambda v: "null",
         bool: lambda v: "true" if v else "false"}
_TEXT = pa.large_string()
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
# What a byte outside the strings of evidence JSON does. An unsure one leaves its text to
# json.loads: whitespace between tokens, a byte JSON has no use for there, or the ".", "E",
# "+" or "e" (after a digit) of a float, which Python may spell otherwise than pandas.
_OPEN, _CLOSE, _COMMA, _COLON, _UNSURE = 1, 2, 3, 4, 5
_KIND = np.full(256, _UNSURE, np.int8)
_KIND[list(b"0123456789-truefalsn")] = 0  # integers, true, false, null: spelled the same
_KIND[list(b"{[")], _KIND[list(b"}]")], _KIND[ord(",")], _KIND[ord(":")], _KIND[ord("e")] = \
    _OPEN, _CLOSE, _COMMA, _COLON, _UNSURE
_DIGIT = np.zeros(256, bool)
_DIGIT[list(b"0123456789")] = True


def _dumped(value, level: int) -> str:
    """`json.dumps(value, indent=1, ensure_ascii=False)` as it would appear nested `level`
    deep, with scalars encoded by the C encoder (the indenting encoder is pure Python)."""
    fast = _FAST.get(type(value))
    if fast is not None:
        return fast(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = "\n" + " " * (level + 1)
        return "{" + inner + ("," + inner).join(
            _key(k) + ": " + _dumped(v, level + 1) for k, v in value.items()) \
            + "\n" + " " * level + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        inner = "\n" + " " * (level + 1)
        return "[" + inner + ("," + inner).join(_dumped(v, level + 1) for v in value) \
            + "\n" + " " * level + "]"
    return _SCALAR(value)


def _key(key) -> str:
    return _STRING(key) if isinstance(key, str) else _STRING(_SCALAR(key).strip('"'))


def _literal(text: str) -> pa.Scalar:
    return pa.scalar(text, _TEXT)


def _bytes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (from 0) and UTF-8 bytes of a large_string array, without copying."""
    buffers = texts.buffers()
    offsets = np.frombuffer(buffers[1], np.int64)[texts.offset:texts.offset + len(texts) + 1]
    if buffers[2] is None:
        return offsets - offsets[0], np.zeros(0, np.uint8)
    return offsets - offsets[0], np.frombuffer(buffers[2], np.uint8)[offsets[0]:offsets[-1]]


def _texts_of(column: pd.Series) -> pa.Array | np.ndarray | None:
    """A column of text (Arrow-backed, or objects that are text or missing) in a form that
    slices without pandas: an Arrow array, or the object array. None for other columns."""
    dtype = column.dtype
    if isinstance(dtype, pd.StringDtype) or isinstance(dtype, pd.ArrowDtype) and (
            pa.types.is_string(dtype.pyarrow_dtype) or
            pa.types.is_large_string(dtype.pyarrow_dtype)):
        return pa.array(column, from_pandas=True)  # no copy when it is Arrow already
    if pd.api.types.is_object_dtype(dtype) and \
            pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        return column.to_numpy()
    return None


def _rows(texts: pa.Array | np.ndarray, start: int, stop: int) -> pa.Array:
    """Rows [start, stop) of what `_texts_of` gives, as large_string; missing: null."""
    if isinstance(texts, np.ndarray):
        return pa.array(texts[start:stop], type=_TEXT, from_pandas=True)
    part = texts.slice(start, stop - start)  # a view; only the chunk is copied, and cast
    return (part.combine_chunks() if isinstance(part, pa.ChunkedArray) else part).cast(_TEXT)


def _escaped(texts: pa.Array) -> pa.Array:
    """Texts with quotes, backslashes and control characters escaped the way
    `json.dumps(ensure_ascii=False)` escapes them (everything else stays as it is)."""
    _, data = _bytes(texts)
    if len(data) and (data.min() < 0x20 or (data == _QUOTE).any() or (data == _BACKSLASH).any()):
        for char in ["\\", '"', *map(chr, np.unique(data[data < 0x20]))]:
            texts = pc.replace_substring(texts, char, json.encoder.ESCAPE_DCT[char])
    return texts


def _value_texts(column: pd.Series, texts, start: int, stop: int) -> tuple[pa.Array | str, str]:
    """Rows [start, stop) of a findings column as findings.json spells them: what
    `to_json(orient="records", date_format="iso", date_unit="s")` gives, parsed and dumped.
    Returns the texts and the quote that goes around each, or one text for all the rows
    when every one spells the same (all missing, all false)."""
    if texts is not None:
        part = _rows(texts, start, stop)
        if part.null_count == len(part):
            return "null", ""
        if part.null_count == 0:  # the quotes go in the text between the columns
            return _escaped(part), '"'
        quoted = pc.binary_join_element_wise(_literal('"'), _escaped(part), _literal('"'),
                                             _literal(""))
        return pc.fill_null(quoted, _literal("null")), ""
    part = column.iloc[start:stop]
    present = part.notna().to_numpy()
    if not present.any():
        return "null", ""
    if pd.api.types.is_bool_dtype(part.dtype) and not pd.api.types.is_object_dtype(part.dtype):
        flags = pa.array(part, from_pandas=True)
        if flags.null_count == 0 and not pc.any(flags).as_py():
            return "false", ""
        return pc.fill_null(pc.if_else(flags, _literal("true"), _literal("false")),
                            _literal("null")), ""
    spelled = np.full(len(part), "null", dtype=object)
    # floats as pandas rounds them, then as Python spells the result
    values = json.loads(part[present].to_json(orient="values", date_format="iso", date_unit="s"))
    spelled[present] = [_dumped(v, 3) for v in values]
    return pa.array(spelled, type=_TEXT), ""


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every position in [start, start + length) for each pair, in order."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)


def _rows_of(positions: np.ndarray, offsets: np.ndarray, count: int) -> np.ndarray:
    """Which of `count` texts holds each byte position."""
    rows = np.zeros(count, bool)
    rows[np.searchsorted(offsets, positions, side="right") - 1] = True
    return rows


def _laid_out(compact: pa.Array, level: int) -> tuple[pa.Array, np.ndarray]:
    """Compact JSON objects (pandas' to_json) as `json.dumps(indent=1)` lays them out nested
    `level` deep, and which of them are left to json.loads: those with "\\\\" or "\\uXXXX"
    escapes or floats (Python spells them otherwise), or that do not look like JSON
    (whitespace between tokens, quotes or brackets that do not pair up, stray bytes)."""
    offsets, data = _bytes(compact)
    backslashes = np.flatnonzero(data == _BACKSLASH)
    escaped = data[np.minimum(backslashes + 1, len(data) - 1)]
    odd = (data[offsets[:-1]] != ord("{")) | (data[offsets[1:] - 1] != ord("}"))
    if data.min() < 0x20:  # JSON escapes control characters: json.loads will refuse these
        odd |= _rows_of(np.flatnonzero(data < 0x20), offsets, len(compact))
    odd |= _rows_of(backslashes[(escaped == _BACKSLASH) | (escaped == ord("u"))], offsets,
                    len(compact))
    if odd.any():  # lay out the others alone: an escaped backslash would hide a quote
        laid_out, redo = _laid_out(compact.filter(pa.array(~odd)), level) if not odd.all() \
            else (compact, np.zeros(0, bool))
        position = np.cumsum(~odd) - 1
        odd[~odd] = redo
        return laid_out.take(pa.array(position, mask=odd)), odd
    slashes = backslashes[escaped == ord("/")]  # pandas writes "/" as "\/"
    if len(slashes):
        data, offsets = np.delete(data, slashes), offsets - np.searchsorted(slashes, offsets)
    quotes = np.flatnonzero(data == _QUOTE)
    quotes = quotes[data[quotes - 1] != _BACKSLASH]  # every text starts with "{"
    if (np.diff(np.searchsorted(quotes, offsets)) % 2).any():
        return compact, np.ones(len(compact), bool)  # not JSON: json.loads will say so
    outside = _ranges(np.append(0, quotes[1::2] + 1),  # the bytes outside strings
                      np.append(quotes[::2], len(data)) - np.append(0, quotes[1::2] + 1))
    kind = _KIND[data[outside]]
    unsure = outside[kind >= _UNSURE]
    unsure = unsure[(data[unsure] != ord("e")) | _DIGIT[data[unsure - 1]]]  # not in true
    redo = _rows_of(unsure, offsets, len(compact))
    is_mark = (kind != 0) & (kind < _UNSURE)
    marks, step = outside[is_mark], kind[is_mark]
    depth = np.cumsum(step == _OPEN, dtype=np.int32) - np.cumsum(step == _CLOSE, dtype=np.int32)
    if (depth[np.searchsorted(marks, offsets[1:]) - 1] != 0).any():
        return compact, np.ones(len(compact), bool)
    opens_empty = np.append((step[:-1] == _OPEN) & (step[1:] == _CLOSE) & (np.diff(marks) == 1),
                            False)
    empty = opens_empty | np.append(False, opens_empty[:-1])
    colon = step == _COLON
    closes = (step == _CLOSE) & ~empty  # a new line before the mark
    where = np.flatnonzero((((step == _OPEN) | (step == _COMMA)) & ~empty) | closes | colon)
    after = marks[where] - closes[where]  # each insertion follows the byte at `after`
    width = np.where(colon[where], 1, 1 + level + depth[where])
    firsts = after + 1 + np.cumsum(width) - width
    inserted = _ranges(firsts, width)
    laid_out = np.full(len(data) + len(inserted), ord(" "), np.uint8)
    kept = np.ones(len(laid_out), bool)
    kept[inserted] = False
    laid_out[kept] = data
    laid_out[firsts[~colon[where]]] = ord("\n")
    shifts = np.append(0, np.cumsum(width))[np.searchsorted(after, offsets)]
    texts = pa.LargeStringArray.from_buffers(len(compact), pa.py_buffer(offsets + shifts),
                                             pa.py_buffer(laid_out))
    return texts, redo


def _evidence_texts(column: pd.Series, texts, start: int, stop: int) -> pa.Array:
    """Rows [start, stop) of the evidence (compact JSON from pandas' to_json) as the nested
    objects findings.json holds, each distinct text laid out once."""
    if texts is None:
        return pa.array([_dumped(json.loads(v), 3) if isinstance(v, str) and v else "{}"
                         for v in column.iloc[start:stop].astype("object").tolist()], type=_TEXT)
    part = _rows(texts, start, stop)
    part = pc.if_else(pc.greater(pc.binary_length(part), 0), part, _literal("{}"))
    distinct = pc.dictionary_encode(pc.fill_null(part, _literal("{}")))
    laid_out, redo = _laid_out(distinct.dictionary, 3)
    if redo.any():
        redone = [_dumped(json.loads(t), 3) for t in distinct.dictionary.filter(redo).to_pylist()]
        laid_out = pc.replace_with_mask(laid_out, pa.array(redo), pa.array(redone, type=_TEXT))
    return laid_out.take(distinct.indices)


def _finding_texts(findings: pd.DataFrame, texts: list, start: int, stop: int) -> pa.Array:
    """Findings [start, stop) as findings.json spells them, a comma before each."""
    pieces, between = [], ",\n  {\n"
    for number, (name, column_texts) in enumerate(zip(findings.columns, texts, strict=True)):
        between += (",\n" if number else "") + "   " + _STRING(str(name)) + ": "
        column = findings[name]
        if name == "evidence":
            spelled, quote = _evidence_texts(column, column_texts, start, stop), ""
        else:
            spelled, quote = _value_texts(column, column_texts, start, stop)
        if isinstance(spelled, str):
            between += spelled
        else:
            pieces += [_literal(between + quote), spelled]
            between = quote
    if not pieces:  # every column spells the same in every row
        return pa.array([between + "\n  }"] * (stop - start), type=_TEXT)
    return pc.binary_join_element_wise(*pieces, _literal(between + "\n  }"), _literal(""))


def write_json(path: Path, findings: pd.DataFrame, context: dict, chunk: int = 20_000) -> Path:
    """findings.json: the same bytes `json.dumps(..., indent=1, ensure_ascii=False)` of the
    records would give, written a chunk of findings at a time from Arrow buffers."""
    try:
        return _write_json(path, findings, context, chunk)
    except UnicodeEncodeError:  # lone surrogates (from a YAML or JSON escape) in a finding
        return _write_json(path, _without_surrogates(findings), context, chunk)


def _without_surrogates(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with lone surrogates in its text shown as escapes (UTF-8 cannot hold them)."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_object_dtype(frame[column].dtype):
            frame[column] = frame[column].map(
                lambda v: without_surrogates(v) if isinstance(v, str) else v)
    return frame


def _write_json(path: Path, findings: pd.DataFrame, context: dict, chunk: int) -> Path:
    head = json_without_surrogates(json.dumps(
        {**context, "summary": summary(findings), "findings": []}, indent=1, ensure_ascii=False))
    if not head.endswith('"findings": []\n}') or findings.empty:
        def write_whole(temporary: Path):
            temporary.write_text(head, encoding="utf-8")
        return atomic_write(path, write_whole)
    head = head[:-len("[]\n}")]
    texts = [_texts_of(findings[c]) for c in findings.columns]

    def write(temporary: Path):
        # One chunk is written by a second thread while the next is made: both let go of
        # the GIL, so the disk and the CPU work at once, and two chunks at most are held.
        with open(temporary, "wb") as out, ThreadPoolExecutor(1) as writer:
            written = writer.submit(out.write, (head + "[").encode("utf-8"))
            for start in range(0, len(findings), chunk):
                stop = min(start + chunk, len(findings))
                _, data = _bytes(_finding_texts(findings, texts, start, stop))
                written.result()
                first = start == 0  # each finding's text starts with a comma, but for the first
                written = writer.submit(out.write, data[1:] if first else data)
            written.result()
            out.write(b"\n ]\n}")
    return atomic_write(path, write)


def _defused(frame: pd.DataFrame) -> pd.DataFrame:
    """OWASP CSV-injection guidance over every text column, vectorised: text a spreadsheet
    would evaluate gets a leading apostrophe, so it is shown as the text it is; so does each
    line of a value that starts like a formula after a line break."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column].dtype):
            text = safe[column].astype("object")
            try:
                risky = text.str.startswith(FORMULA_PREFIXES, na=False)
                broken = text.str.contains("[\r\n]", regex=True, na=False)
            except AttributeError:  # no text in the column
                continue
            if broken.any():
                text = text.where(~broken, text.str.replace(_FORMULA_AFTER_BREAK, "'", regex=True))
            if risky.any():
                text = text.where(~risky, "'" + text.astype(str))
            if risky.any() or broken.any():
                safe[column] = text
    return safe


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    try:
        safe = _defused(frame)
    except UnicodeEncodeError:  # lone surrogates (from a YAML or JSON escape) in a value
        safe = _defused(_without_surrogates(frame))

    def write(temporary: Path):
        buffer = io.StringIO()
        # RFC 4180 line ends: the csv writer then quotes every field that holds a CR or an LF
        # (with "\n" alone it leaves a bare CR unquoted, and readers start a record there).
        safe.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        temporary.write_text(buffer.getvalue(), encoding="utf-8-sig", errors="backslashreplace")
    return atomic_write(path, write)


# --- markdown summary --------------------------------------------------------------------

def _md(value) -> str:
    """Text from Azure, made inert in markdown: no tables broken, no links, HTML or entities;
    control and bidi characters shown as escapes."""
    text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    text = text.replace("\\", "\\\\").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    for char in "|<>[]()`*_#!&~":
        text = text.replace(char, "\\" + char)
    return shown(text)


def _code(value) -> str:
    """Text from Azure as a markdown code span, shown literally: backslashes are not escapes
    there, so the span is fenced with more backticks than the text holds in a row."""
    text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    text = shown(text.replace("\r\n", " ").replace("\n", " ").replace("\r", " "))
    if not text.strip():
        return "(no name)" if not text else "`" + text + "`"
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    padded = f" {text} " if text[0] in "` " or text[-1] in "` " else text
    return fence + padded + fence


def _money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def savings_sentence(savings: dict) -> str:
    """The savings split in one sentence, as summary.md and the terminal say it."""
    currency, now, held = savings["currency"], savings["deletable_now"], savings["blocked"]
    text = (f"deletable now {_money(now['monthly_cost'], currency)} a month "
            f"({now['resources']} resource{'s' if now['resources'] != 1 else ''}, what "
            f"cleanup-plan deletes); blocked {_money(held['monthly_cost'], currency)} a month "
            f"({held['resources']} resource{'s' if held['resources'] != 1 else ''})")
    dates = held["until_date"]
    if dates:
        text += (f", of which {_money(sum(d['monthly_cost'] for d in dates), currency)} "
                 f"becomes deletable between {dates[0]['date']} and {dates[-1]['date']} "
                 "as end-of-life locks lift")
    return text


def summary_markdown(findings: pd.DataFrame, context: dict, cost=None, top: int = 10) -> str:
    """A page short enough for a pull-request comment or a pipeline summary. With a
    baseline it leads with what is new."""
    counts = summary(findings)
    active = findings[~findings["exempted"].astype(bool)]
    lines = [f"## image-audit: {counts['open']} open findings, {counts['exempted']} exempted", "",
             f"Snapshot `{str(context.get('snapshot_sha256', ''))[:12]}`, as of "
             f"{str(context.get('as_of', ''))[:10]}, image-audit {__version__}."]
    covered = context.get("coverage")
    if covered:
        not_read = ", ".join(f"{_md(item['name'] or item['scope'])} ({_md(item['status'])})"
                             for item in covered["not_read"])
        lines.append(f"Coverage: {covered['state']}"
                     + (f"; not read: {not_read}" if not_read else "")
                     + (f"; {len(covered['gaps'])} collection gap(s)" if covered["gaps"] else "")
                     + ".")
    compared = context.get("baseline")
    if compared and "status" in findings.columns:
        new = active[active["status"] == "new"]
        lines += ["", f"Against the baseline: **{compared['new']} new**, {compared['existing']} "
                      f"existing, {compared['resolved']} resolved (exempted findings included "
                      "in these three)."]
        if len(new):
            lines += ["", f"New open findings ({min(len(new), top)} of {len(new)}):", ""]
            lines += [f"- **{f.severity}** {f.rule_id} {_code(f.resource_name)}: {_md(f.message)}"
                      for f in new.head(top).itertuples(index=False)]
    lines += ["", "| severity | open findings |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in counts["open_by_severity"].items() if v]
    lines.append(f"| exempted (not counted above) | {counts['exempted']} |")
    if counts["open_by_rule"]:
        rules = active.groupby("rule_id", sort=True).agg(
            title=("title", "first"),
            severities=("severity", lambda s: ", ".join(
                sorted(set(s), key=lambda v: -SEVERITIES.index(v) if v in SEVERITIES else 0))))
        lines += ["", "| rule | severity | title | open findings |", "| --- | --- | --- | ---: |"]
        lines += [f"| {rule_id} | {rules.at[rule_id, 'severities']} | "
                  f"{_md(rules.at[rule_id, 'title'])} | {count} |"
                  for rule_id, count in counts["open_by_rule"].items()]
    if cost is not None:
        total = cost.totals().iloc[0]
        unpriced = f", {int(total['unpriced'])} lines unpriced" if total["unpriced"] else ""
        lines += ["", f"Image storage: {total['monthly_cost']:,.2f} {cost.currency} a month "
                      f"({cost.basis}{unpriced})."]
        if context.get("savings"):
            lines.append(f"Savings: {savings_sentence(context['savings'])}.")
    lines += trend_lines(context.get("trend"))
    if len(active):
        shown_rows = active.head(top)
        lines += ["", f"Most severe {len(shown_rows)} of {len(active)} open findings:", ""]
        lines += [f"- **{f.severity}** {f.rule_id} {_code(f.resource_name)}: {_md(f.message)}"
                  for f in shown_rows.itertuples(index=False)]
    lines += ["", "Details: image-audit.xlsx, findings.sarif, findings.junit.xml."]
    return "\n".join(lines) + "\n"


def trend_lines(trend: dict | None) -> list[str]:
    """The trend section of summary.md, from the history the run was appended to."""
    if not trend or not trend.get("runs"):
        return []
    runs, first, last = trend["runs"], trend["runs"][0], trend["runs"][-1]
    lines = ["", f"Trend over {len(runs)} run(s) since {first['as_of'][:10]}: open findings "
                 f"{first['open']} then {last['open']} now."]
    resolving = [r for r in trend["rules"] if r.get("mean_days_to_resolve") is not None]
    if resolving:
        lines.append("Mean days to resolve: " + ", ".join(
            f"{r['rule_id']} {r['mean_days_to_resolve']:.1f}" for r in resolving) + ".")
    months = [m for m in trend["months"] if m.get("monthly_cost") is not None]
    if months:
        lines.append("Image storage per month (mean of the month's runs): " + ", ".join(
            f"{m['month']} {m['monthly_cost']:,.2f}" for m in months[-6:]) + ".")
    lines += [f"Note: {note}." for note in trend.get("series") or []]
    return lines


def write_workbook(path: Path, findings: pd.DataFrame, tables: dict[str, pd.DataFrame],
                   context: dict, **parts) -> Path:
    from auditor.workbook import write_workbook as write_book
    return atomic_write(path, lambda temporary: write_book(temporary, findings, tables, context,
                                                           **parts))


class OutputsFailed(AuditError):
    """Some reports could not be written; the others were. `failures` holds one line per
    failed output, `written` the paths that were written."""

    def __init__(self, failures: list[str], written: list[Path], errors: list[BaseException]):
        super().__init__("; ".join(failures))
        self.failures, self.written, self.errors = failures, written, errors


def _failure_line(path: Path, exc: BaseException) -> str:
    """One line for an output that failed: an AuditError says it all; anything else is named
    by its type and cut short. Never a raw control character or escape sequence."""
    if isinstance(exc, AuditError):
        return shown(" ".join(str(exc).splitlines()))
    detail = " ".join(str(exc).splitlines())
    detail = detail if len(detail) <= 200 else detail[:197] + "..."
    return shown(f"{path}: not written: internal error: {type(exc).__name__}: {detail}")


def write_reports(out_dir: Path, findings: pd.DataFrame, tables: dict[str, pd.DataFrame],
                  context: dict, formats: list[str], *, rules=None, cost=None, plan=None,
                  usage: pd.DataFrame | None = None, exemptions=None,
                  fail_on: str | None = None, fail_on_new: bool = False) -> list[Path]:
    """Every requested format into `out_dir`, each file written atomically and on its own:
    one that fails never stops the others. Raises OutputsFailed (after writing all the
    others) if any failed. `fail_on` and `fail_on_new` are the exit-code gate: JUnit fails
    what it fails."""
    from auditor.junit import write_junit
    from auditor.sarif import write_sarif

    out_dir = Path(out_dir)
    if cost is not None:
        findings = cost.with_finding_costs(findings)
    outputs = []  # (path, write), in the order they are written
    if "json" in formats:
        outputs.append((out_dir / "findings.json",
                        lambda path: [write_json(path, findings, context)]))
    if "csv" in formats:
        outputs.append((out_dir / "findings.csv", lambda path: [write_csv(path, findings)]))
    if "xlsx" in formats:
        outputs.append((out_dir / "image-audit.xlsx", lambda path: [write_workbook(
            path, findings, tables, context, cost=cost, plan=plan, usage=usage,
            exemptions=exemptions)]))
    if "sarif" in formats:
        outputs.append((out_dir / "findings.sarif", lambda path: [atomic_write(
            path, lambda t: write_sarif(t, findings, rules, context))]))
    if "junit" in formats:
        outputs.append((out_dir / "findings.junit.xml", lambda path: [atomic_write(
            path, lambda t: write_junit(t, findings, rules, context, fail_on=fail_on,
                                        fail_on_new=fail_on_new))]))
    if "html" in formats:
        from auditor.htmlreport import write_html
        outputs.append((out_dir / "report.html", lambda path: [atomic_write(
            path, lambda t: write_html(t, findings, context, cost=cost, plan=plan,
                                       exemptions=exemptions))]))
    if "md" in formats:
        def write_md(path):
            text = summary_markdown(findings, context, cost)
            return [atomic_write(path, lambda t: t.write_text(text, encoding="utf-8",
                                                              errors="backslashreplace"))]
        outputs.append((out_dir / "summary.md", write_md))
    if "cost" in formats and cost is not None:
        outputs.append((out_dir / "cost.csv",
                        lambda path: [write_csv(path, cost_totals(cost, findings, plan))]))
        outputs.append((out_dir / "cost_lines.csv",
                        lambda path: [write_csv(path, cost.lines.drop(columns="id"))]))
    written, failures, errors = [], [], []
    for path, write in outputs:
        try:
            written += write(path)
        except Exception as exc:  # noqa: BLE001 - one report's failure never stops the others
            failures.append(_failure_line(path, exc))
            errors.append(exc)
    if failures:
        raise OutputsFailed(failures, written, errors)
    return written


def write_cost(out_dir: Path, cost, findings: pd.DataFrame | None = None, plan=None) -> list[Path]:
    """cost.csv (totals by gallery, region, storage type, team, and the savings) and
    cost_lines.csv (one line per replica and managed image, with its assumptions)."""
    return [write_csv(Path(out_dir) / "cost.csv", cost_totals(cost, findings, plan)),
            write_csv(Path(out_dir) / "cost_lines.csv", cost.lines.drop(columns="id"))]


def cost_totals(cost, findings: pd.DataFrame | None, plan=None) -> pd.DataFrame:
    """The cost totals, then the savings: deletable now and blocked (from the cleanup plan
    made from the same findings) and by rule."""
    totals = cost.totals()
    if findings is not None:
        totals = pd.concat([totals, cost.savings(findings, plan)], ignore_index=True)
    return totals


RUN_RECORD = "run.json"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read a block at a time (a report can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def report_set(out_dir: Path, context: dict):
    """Reports written into one folder as a set that says which run made each file. The last
    run's record (run.json) is removed before anything is written and written again only
    when every output was: a run that was killed or failed leaves no record vouching for a
    folder that now mixes two runs. The record lists each file this run wrote with its
    SHA-256; a file in the folder that it does not list (or whose hash differs) is not
    from this run. Yields the list to which the caller adds the paths it wrote."""
    record = Path(out_dir) / RUN_RECORD
    try:
        record.unlink(missing_ok=True)
    except OSError as exc:
        raise AuditError(f"{record}: cannot remove the last run's record "
                         f"({exc.strerror or exc})") from exc
    written: list[Path] = []
    yield written
    files = {Path(p).name: file_sha256(Path(p)) for p in written}
    document = {key: context.get(key) for key in ("tool_version", "command", "snapshot",
                                                  "snapshot_sha256", "as_of")}
    text = json_without_surrogates(json.dumps({**document, "files": files}, indent=1,
                                              ensure_ascii=False))
    atomic_write(record, lambda temporary: temporary.write_text(text + "\n", encoding="utf-8"))
