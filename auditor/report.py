"""Reports: findings.json, findings.csv and the Excel workbook, each written to a temporary
name and renamed into place, with text from Azure or users never becoming a formula.
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
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from auditor import __version__
from auditor.engine import SEVERITIES
from auditor.errors import AuditError

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SEVERITY_FILLS = {"critical": "7B1FA2", "high": "D32F2F", "medium": "F57C00", "low": "FBC02D",
                  "info": "90A4AE"}
EXCEL_MAX_ROWS = 1_048_576
_UMASK = os.umask(0)
os.umask(_UMASK)


def defuse(value):
    """OWASP CSV-injection guidance: text that a spreadsheet would evaluate gets a leading
    apostrophe, so it is shown as the text it is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


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


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", date_format="iso", date_unit="s"))


def write_json(path: Path, findings: pd.DataFrame, context: dict) -> Path:
    document = {**context, "summary": summary(findings)}
    rows = _records(findings)
    for row in rows:
        row["evidence"] = json.loads(row["evidence"]) if row.get("evidence") else {}
    document["findings"] = rows

    def write(temporary: Path):
        temporary.write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
    return atomic_write(path, write)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    safe = frame.astype("object").map(defuse) if not frame.empty else frame

    def write(temporary: Path):
        buffer = io.StringIO()
        safe.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
        temporary.write_text(buffer.getvalue(), encoding="utf-8-sig")
    return atomic_write(path, write)


# --- workbook ---------------------------------------------------------------------------------

def _cell_value(value):
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.tz_convert(None).to_pydatetime() if value.tzinfo else value.to_pydatetime()
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if value is pd.NA:
        return None
    return value


def _text_cell(sheet, value):
    """A cell that holds `value`; a string is always stored as a string, never a formula."""
    value = _cell_value(value)
    if isinstance(value, str):  # control characters are not allowed in a worksheet cell
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    cell = WriteOnlyCell(sheet, value=value)
    if isinstance(cell.value, str):
        cell.data_type = "s"
    return cell


def _write_table(workbook: Workbook, title: str, frame: pd.DataFrame,
                 style_row: Callable | None = None) -> None:
    """One sheet per table (continued on further sheets past Excel's row limit), header
    frozen, filters on, widths set from the content."""
    columns = list(frame.columns)
    chunk = EXCEL_MAX_ROWS - 1
    starts = range(0, max(len(frame), 1), chunk)
    for part, start in enumerate(starts):
        sheet = workbook.create_sheet(title if part == 0 else f"{title} ({part + 1})"[:31])
        sheet.freeze_panes = "A2"
        widths = [min(max(len(str(c)) + 2, 10), 60) for c in columns]
        sample = frame.iloc[start:start + 200]
        for i, column in enumerate(columns):
            lengths = sample[column].astype("object").astype(str).str.len()
            if lengths.notna().any():
                widths[i] = min(max(widths[i], int(lengths.max()) + 2), 60)
        for i, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(i)].width = width
        header = []
        for column in columns:
            cell = WriteOnlyCell(sheet, value=column)
            cell.font = Font(bold=True)
            header.append(cell)
        sheet.append(header)
        rows = frame.iloc[start:start + chunk]
        for values in rows.itertuples(index=False, name=None):
            cells = [_text_cell(sheet, v) for v in values]
            if style_row:
                style_row(dict(zip(columns, values, strict=True)), cells)
            sheet.append(cells)
        last_row = len(rows) + 1
        sheet.auto_filter.ref = f"A1:{get_column_letter(max(len(columns), 1))}{last_row}"


def _severity_style(row: dict, cells: list) -> None:
    color = SEVERITY_FILLS.get(row.get("severity"))
    if color:
        index = list(row).index("severity")
        cells[index].fill = PatternFill("solid", fgColor=color)


def write_workbook(path: Path, findings: pd.DataFrame, tables: dict[str, pd.DataFrame],
                   context: dict) -> Path:
    def write(temporary: Path):
        workbook = Workbook(write_only=True)
        counts = summary(findings)
        lines = [("image-audit", __version__)] + [(k, v) for k, v in context.items()
                                                  if not isinstance(v, (dict, list))]
        lines += [("findings", counts["total"]), ("exempted", counts["exempted"])]
        lines += [(f"severity {k}", v) for k, v in counts["by_severity"].items()]
        lines += [(f"rule {k}", v) for k, v in counts["by_rule"].items()]
        lines += [(f"table {name}", len(frame)) for name, frame in tables.items()]
        _write_table(workbook, "Summary", pd.DataFrame(lines, columns=["item", "value"]))
        _write_table(workbook, "Findings", findings, _severity_style)
        for name, frame in tables.items():
            _write_table(workbook, name[:31], frame)
        workbook.save(temporary)
    return atomic_write(path, write)


def write_reports(out_dir: Path, findings: pd.DataFrame, tables: dict[str, pd.DataFrame],
                  context: dict, formats: list[str]) -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    if "json" in formats:
        written.append(write_json(out_dir / "findings.json", findings, context))
    if "csv" in formats:
        written.append(write_csv(out_dir / "findings.csv", findings))
    if "xlsx" in formats:
        written.append(write_workbook(out_dir / "image-audit.xlsx", findings, tables, context))
    return written
