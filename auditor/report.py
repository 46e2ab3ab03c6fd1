"""Reports: findings.json, findings.csv, the Excel workbook (auditor/workbook.py), SARIF
(auditor/sarif.py), JUnit XML (auditor/junit.py), summary.md and cost.csv, each written to a
temporary name and renamed into place, with text from Azure or users never becoming a formula.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from auditor import __version__
from auditor.engine import SEVERITIES
from auditor.errors import AuditError

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
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
    active = findings[~findings["exempted"].astype(bool)]
    by_severity = active["severity"].value_counts()
    return {
        "total": int(len(findings)),
        "exempted": int(len(findings) - len(active)),
        "by_severity": {s: int(by_severity.get(s, 0)) for s in reversed(SEVERITIES)},
        "by_rule": {k: int(v) for k, v in active["rule_id"].value_counts().sort_index().items()},
    }


_SCALAR = json.JSONEncoder(ensure_ascii=False).encode  # C-accelerated; no indent
_STRING = json.encoder.encode_basestring
_FAST = {str: _STRING, int: int.__repr__, type(None): lambda v: "null",
         bool: lambda v: "true" if v else "false"}


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


def _column_texts(column: pd.Series) -> list[str]:
    """Each value of a findings column as findings.json spells it: what
    `to_json(orient="records", date_format="iso", date_unit="s")` gives, parsed and dumped."""
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        return [_STRING(v) if isinstance(v, str) else "null"
                for v in column.astype("object").tolist()]
    values = json.loads(column.to_json(orient="values", date_format="iso", date_unit="s"))
    return [_dumped(v, 3) for v in values]


def _evidence_texts(column: pd.Series) -> list[str]:
    loads = json.loads
    return [_dumped(loads(v), 3) if isinstance(v, str) and v else "{}"
            for v in column.astype("object").tolist()]


def write_json(path: Path, findings: pd.DataFrame, context: dict, chunk: int = 20_000) -> Path:
    """findings.json, written row by row: the same document `json.dumps(..., indent=1)` of
    the records would give, without holding the findings as Python dicts."""
    head = json.dumps({**context, "summary": summary(findings), "findings": []}, indent=1,
                      ensure_ascii=False)
    if not head.endswith('"findings": []\n}') or findings.empty:
        def write_whole(temporary: Path):
            temporary.write_text(head, encoding="utf-8")
        return atomic_write(path, write_whole)
    head = head[:-len("[]\n}")]
    keys = ["   " + _STRING(str(c)) + ": " for c in findings.columns]

    def write(temporary: Path):
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(head + "[")
            for start in range(0, len(findings), chunk):
                part = findings.iloc[start:start + chunk]
                columns = [_evidence_texts(part[c]) if c == "evidence" else _column_texts(part[c])
                           for c in part.columns]
                rows = ("\n  {\n" + ",\n".join(k + v for k, v in zip(keys, values, strict=True))
                        + "\n  }" for values in zip(*columns, strict=True))
                out.write(("," if start else "") + ",".join(rows))
            out.write("\n ]\n}")
    return atomic_write(path, write)


def _defused(frame: pd.DataFrame) -> pd.DataFrame:
    """OWASP CSV-injection guidance over every text column, vectorised: text a spreadsheet
    would evaluate gets a leading apostrophe, so it is shown as the text it is."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column].dtype):
            text = safe[column].astype("object")
            try:
                risky = text.str.startswith(FORMULA_PREFIXES, na=False)
            except AttributeError:  # no text in the column
                continue
            if risky.any():
                safe[column] = text.where(~risky, "'" + text.astype(str))
    return safe


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    safe = _defused(frame)

    def write(temporary: Path):
        buffer = io.StringIO()
        safe.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
        temporary.write_text(buffer.getvalue(), encoding="utf-8-sig")
    return atomic_write(path, write)


# --- markdown summary --------------------------------------------------------------------

def _md(value) -> str:
    """Text from Azure, made inert in markdown: no tables broken, no links or HTML."""
    text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    text = text.replace("\\", "\\\\").replace("\n", " ").replace("\r", " ")
    for char in "|<>[]()`*_#!":
        text = text.replace(char, "\\" + char)
    return text


def summary_markdown(findings: pd.DataFrame, context: dict, cost=None, top: int = 10) -> str:
    """A page short enough for a pull-request comment or a pipeline summary."""
    counts = summary(findings)
    active = findings[~findings["exempted"].astype(bool)]
    lines = [f"## image-audit: {counts['total'] - counts['exempted']} findings"
             f" ({counts['exempted']} exempted)", "",
             f"Snapshot `{str(context.get('snapshot_sha256', ''))[:12]}`, as of "
             f"{str(context.get('as_of', ''))[:10]}, image-audit {__version__}.", "",
             "| severity | findings |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in reversed(counts["by_severity"].items()) if v]
    if counts["by_rule"]:
        titles = active.drop_duplicates("rule_id").set_index("rule_id")
        lines += ["", "| rule | severity | title | findings |", "| --- | --- | --- | ---: |"]
        lines += [f"| {rule_id} | {titles.at[rule_id, 'severity']} | "
                  f"{_md(titles.at[rule_id, 'title'])} | {count} |"
                  for rule_id, count in counts["by_rule"].items()]
    if cost is not None:
        total = cost.totals().iloc[0]
        saved = cost.savings(findings).iloc[-1]
        unpriced = f", {int(total['unpriced'])} lines unpriced" if total["unpriced"] else ""
        lines += ["", f"Image storage: {total['monthly_cost']:,.2f} {cost.currency} a month "
                      f"({cost.basis}{unpriced}); retention and staleness findings would save "
                      f"{saved['monthly_cost']:,.2f} {cost.currency} a month."]
    if len(active):
        shown = active.head(top)
        lines += ["", f"Most severe {len(shown)} of {len(active)}:", ""]
        lines += [f"- **{f.severity}** {f.rule_id} `{_md(f.resource_name)}`: {_md(f.message)}"
                  for f in shown.itertuples(index=False)]
    lines += ["", "Details: image-audit.xlsx, findings.sarif, findings.junit.xml."]
    return "\n".join(lines) + "\n"


def write_workbook(path: Path, findings: pd.DataFrame, tables: dict[str, pd.DataFrame],
                   context: dict, **parts) -> Path:
    from auditor.workbook import write_workbook as write_book
    return atomic_write(path, lambda temporary: write_book(temporary, findings, tables, context,
                                                           **parts))


def write_reports(out_dir: Path, findings: pd.DataFrame, tables: dict[str, pd.DataFrame],
                  context: dict, formats: list[str], *, rules=None, cost=None,
                  usage: pd.DataFrame | None = None, exemptions=None) -> list[Path]:
    """Every requested format into `out_dir`, each file written atomically."""
    from auditor.junit import write_junit
    from auditor.sarif import write_sarif

    out_dir = Path(out_dir)
    if cost is not None:
        findings = cost.with_finding_costs(findings)
    written = []
    if "json" in formats:
        written.append(write_json(out_dir / "findings.json", findings, context))
    if "csv" in formats:
        written.append(write_csv(out_dir / "findings.csv", findings))
    if "xlsx" in formats:
        written.append(write_workbook(out_dir / "image-audit.xlsx", findings, tables, context,
                                      cost=cost, usage=usage, exemptions=exemptions))
    if "sarif" in formats:
        written.append(atomic_write(out_dir / "findings.sarif",
                                    lambda t: write_sarif(t, findings, rules, context)))
    if "junit" in formats:
        written.append(atomic_write(out_dir / "findings.junit.xml",
                                    lambda t: write_junit(t, findings, rules, context)))
    if "md" in formats:
        text = summary_markdown(findings, context, cost)
        written.append(atomic_write(out_dir / "summary.md",
                                    lambda t: t.write_text(text, encoding="utf-8")))
    if "cost" in formats and cost is not None:
        written += write_cost(out_dir, cost, findings)
    return written


def write_cost(out_dir: Path, cost, findings: pd.DataFrame | None = None) -> list[Path]:
    """cost.csv (totals by gallery, region, storage type, team, and savings per rule) and
    cost_lines.csv (one line per replica and managed image, with its assumptions)."""
    totals = cost.totals()
    if findings is not None:
        totals = pd.concat([totals, cost.savings(findings)], ignore_index=True)
    return [write_csv(Path(out_dir) / "cost.csv", totals),
            write_csv(Path(out_dir) / "cost_lines.csv", cost.lines.drop(columns="id"))]
