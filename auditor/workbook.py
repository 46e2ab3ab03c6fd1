"""The Excel workbook for auditors and finance: a Summary page to sign off, Findings read left
to right, a Cost summary and the Cost lines, then Machines, Replicas, the other snapshot
tables, Exemptions, Coverage and Manifest. Every sheet prints landscape, fit to the page's
width, with its header rows repeated and a footer giving the as-of time and page numbers.

Rows are streamed in openpyxl's write-only mode (bench/bench_report.py measures it against
normal mode). Values are converted and checked a column at a time, with pyarrow for the text
(control characters, length, formulas), and a slice of rows at a time, to bound memory. Only
values that need a style, a link or protection from being read as a formula become cell
objects, and in write-only mode one cell object stands for every row holding the same styled
value. Rows then go to a sheet that knows each column's type (_TypedSheet), so openpyxl does
not check every value again. bench/bench_scale.py measures the whole against the same rows
written bare with openpyxl and with xlsxwriter.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from copy import copy
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.cell_range import CellRange
from openpyxl.worksheet.hyperlink import Hyperlink

from auditor import __version__
from auditor.engine import SEVERITIES
from auditor.report import coverage, summary
from auditor.safetext import XML_INVALID_RE2, xml_text

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_TEXT = 32_767  # characters in a cell
EXCEL_MAX_LINKS = 65_530  # Excel's limit of hyperlinks per worksheet
EXCEL_MAX_LINK = 2_079  # Excel's limit of a hyperlink's address, in characters
ROWS_AT_ONCE = 50_000  # rows converted to Python values together
PORTAL = "https://portal.azure.com/#@/resource"
SEVERITY_FILLS = {"critical": "7B1FA2", "high": "D32F2F", "medium": "F57C00", "low": "FBC02D",
                  "info": "90A4AE"}
UNSAFE_TEXT = r"^[=+\-@\t\r]"
# The workbook's default font named again: a font without a name shows in another typeface.
BOLD = Font(name="Calibri", bold=True)
LINE_POINTS = 15  # the height of one line of text in a row, in points
EXCEL_MAX_ROW_POINTS = 409
WRAP = Alignment(wrap_text=True, vertical="top")
TOP = Alignment(vertical="top")
DATE_FORMAT = "yyyy-mm-dd"
TIME_FORMAT = 'yyyy-mm-dd hh:mm "UTC"'
TRUNCATED = "… (truncated, full text in {})"
# Snapshot tables that get a sheet of their own as they are (machines and scope are shown,
# enriched, on the Machines and Coverage sheets).
PLAIN_TABLES = ["galleries", "image_definitions", "image_versions", "version_regions",
                "managed_images", "resource_tags", "version_replica_sets", "autoscale_settings"]


@dataclass
class Styles:
    """How the columns of one table are shown."""
    money: list[str] = field(default_factory=list)
    prices: list[str] = field(default_factory=list)  # money per unit: four decimals
    links: list[str] = field(default_factory=list)
    severity: str | None = None
    currency: str = "USD"
    wrap: dict[str, int] = field(default_factory=dict)  # wrapped columns and their widths
    full_text: str = "the snapshot"  # where a reader finds a text cut to Excel's limit
    printed: int | None = None  # how many leading columns print (None: all)


class _TypedSheet(WriteOnlyWorksheet):
    """A write-only sheet told each column's Excel type before its rows are appended.

    write_table converts and checks the values a column at a time (_column_values), so the
    rows skip what openpyxl otherwise does for every value: infer the type, look for control
    characters, look for formulas. Cells (styles, links, quoted text), and values of columns
    of mixed or date type (column type None), go through openpyxl as usual; so does every row
    appended while `column_types` is None. Should openpyxl stop calling `_values_to_row`, the
    rows still come out right, only slower: every value handed over is valid as it is."""

    column_types: list | None = None
    column_styles: list | None = None  # per column: a style every plain value takes, or None
    column_style_ids: list | None = None  # and its index among the workbook's cell styles

    def _values_to_row(self, values, row_idx):
        if self.column_types is None:
            yield from super()._values_to_row(values, row_idx)
            return
        cell, styled = WriteOnlyCell(self), _StyledCell(self)
        for col_idx, (value, data_type, style, style_id) in enumerate(
                zip(values, self.column_types, self.column_styles, self.column_style_ids,
                    strict=True), 1):
            if value is None:
                continue
            if isinstance(value, Cell):
                value.column, value.row = col_idx, row_idx
                if value.hyperlink is not None:
                    value.hyperlink.ref = value.coordinate
                yield value
                continue
            if data_type is None:
                cell.value = value
                out = cell
            else:  # the column's style is shared, never changed here
                out = cell if style is None else styled
                out._value, out.data_type = value, data_type
                if style is not None:
                    out._style, out.style_id = style, style_id
            out.column, out.row = col_idx, row_idx
            yield out
            if data_type is None and cell.has_style:  # a date's format stays with its cell
                cell = WriteOnlyCell(self)


class _StyledCell(Cell):
    """A cell told its style's index, so that writing it looks nothing up (see _TypedSheet)."""

    style_id = 0


def _create_sheet(book: Workbook, title: str):
    """A sheet added the way Workbook.create_sheet adds one, but typed in write-only mode."""
    if not book.write_only:
        return book.create_sheet(title)
    sheet = _TypedSheet(parent=book, title=title)
    book._add_sheet(sheet)
    return sheet


def _column_values(series: pd.Series, full_text: str = "the snapshot"
                   ) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Python values Excel can hold, for a whole column at once: None for missing, naive UTC
    datetimes, JSON for lists and dicts, text with the characters XML forbids shown as escapes
    and cut to Excel's 32,767 characters, ending in a note saying so and where the full text
    is. Also which values are text Excel would evaluate (formulas, error codes), and the
    column's Excel type when every value has the same one."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert(None)
    values = series.astype("object").to_numpy(copy=True)
    missing = pd.isna(series).to_numpy()
    values[missing] = None
    no_text = np.zeros(len(values), dtype=bool)
    if pd.api.types.is_bool_dtype(series.dtype):
        return values, no_text, "b"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return values, no_text, "d"
    if pd.api.types.is_numeric_dtype(series.dtype):
        return values, no_text, "n"
    mixed = pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty")
    if mixed:  # lists, dicts, timestamps or numbers among the text: one by one
        for i in np.flatnonzero(~missing):
            value = values[i]
            if isinstance(value, (list, dict)):
                values[i] = json.dumps(value, ensure_ascii=False)
            elif isinstance(value, pd.Timestamp):
                values[i] = (value.tz_convert(None) if value.tzinfo else value).to_pydatetime()
    strings = [v if isinstance(v, str) else None for v in values] if mixed else values
    try:
        text = pa.array(strings, type=pa.large_string())
    except (UnicodeError, pa.ArrowException):  # lone surrogates: UTF-8 cannot hold them
        values = values.copy()
        values[:] = [xml_text(v) if isinstance(v, str) else v for v in values]
        text = pa.array([v if isinstance(v, str) else None for v in values],
                        type=pa.large_string())
    data_type = None if mixed else "s"
    if text.null_count == len(text):
        return values, no_text, data_type
    unsafe = _evaluated(text)
    dirty = pc.or_(pc.match_substring_regex(text, XML_INVALID_RE2),
                   pc.greater(pc.utf8_length(text), EXCEL_MAX_TEXT)).fill_null(False)
    if pc.any(dirty).as_py():
        where = dirty.to_numpy(zero_copy_only=False)
        # characters XML 1.0 forbids (control characters, U+FFFE, U+FFFF) shown as escapes
        escaped = pa.array([xml_text(v) for v in text.filter(dirty).to_pylist()],
                           type=pa.large_string())
        marker = TRUNCATED.format(full_text)
        cut = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(escaped, 0, EXCEL_MAX_TEXT - len(marker)),
            pa.scalar(marker, pa.large_string()), pa.scalar("", pa.large_string()))
        fixed = pc.if_else(pc.greater(pc.utf8_length(escaped), EXCEL_MAX_TEXT), cut, escaped)
        values[where] = fixed.to_numpy(zero_copy_only=False)
        unsafe[where] = _evaluated(fixed)
    del text, dirty
    pa.default_memory_pool().release_unused()  # the column's Arrow copy: keeps peak RSS down
    return values, unsafe, data_type


def _evaluated(text: pa.Array) -> np.ndarray:
    """Which texts Excel would evaluate: formulas and error codes."""
    unsafe = pc.or_(pc.match_substring_regex(text, UNSAFE_TEXT),
                    pc.is_in(text, pa.array(ERROR_CODES, type=pa.large_string())))
    return unsafe.fill_null(False).to_numpy(zero_copy_only=False, writable=True)


def _style_of(sheet, **styles):
    """A style registered once, as the array of indices openpyxl keeps per cell."""
    template = WriteOnlyCell(sheet)
    for name, value in styles.items():
        setattr(template, name, value)
    return template._style


def _cell(sheet, value, style, quoted: bool):
    """A cell with a style; quoted text is stored as a string with Excel's quote prefix, so it
    is shown, and stays, as the text it is."""
    cell = WriteOnlyCell(sheet, value=value)
    if style is not None:
        cell._style = copy(style)
    if quoted:
        cell.data_type = "s"
        cell.quotePrefix = True
    return cell


def _put_cells(sheet, out: np.ndarray, values: np.ndarray, where: np.ndarray, style,
               quoted: bool) -> None:
    """Cells in place of the values at `where`. In write-only mode there is one cell per
    distinct value, put in every row that holds it: the sheet writes a row as soon as it is
    appended, so one cell object can stand in many rows."""
    if not where.any():
        return
    if not isinstance(sheet, WriteOnlyWorksheet):
        out[where] = [_cell(sheet, value, style, quoted) for value in values[where]]
        return
    codes, distinct = pd.factorize(values[where])
    cells = np.empty(len(distinct), dtype=object)
    cells[:] = [_cell(sheet, value, style, quoted) for value in distinct]
    out[where] = cells[codes]


def _date_format(series: pd.Series) -> str:
    """A date alone where every value is midnight (an expiry, an end of life), else the time."""
    present = series.dropna()
    return DATE_FORMAT if (present == present.dt.normalize()).all() else TIME_FORMAT


def _column_cells(sheet, column: str, series: pd.Series, styles: Styles,
                  links_left: list[int]) -> tuple[list, str | None, object]:
    """The column as values to append, plain where no style is needed and cells where a style,
    a link or the quote prefix is; its Excel type and the style its plain values take (see
    _TypedSheet)."""
    values, unsafe, data_type = _column_values(series, styles.full_text)
    out = values.copy()
    # On a sheet with wrapped text, every value sits at the top of its (taller) row.
    aligned = {"alignment": WRAP if column in styles.wrap else TOP} if styles.wrap else {}
    column_style = None
    if data_type == "d":
        column_style = _style_of(sheet, number_format=_date_format(series), **aligned)
    elif aligned:
        column_style = _style_of(sheet, **aligned)
    if column in styles.money or column in styles.prices:
        decimals = "0000" if column in styles.prices else "00"
        money = _style_of(sheet, number_format=f"[${styles.currency}] #,##0.{decimals}",
                          **aligned)
        present = np.not_equal(values, None)
        _put_cells(sheet, out, values, present & ~unsafe, money, False)
        _put_cells(sheet, out, values, unsafe, money, True)
        return out.tolist(), data_type, None
    if column == styles.severity:
        for name, color in SEVERITY_FILLS.items():
            fill = _style_of(sheet, fill=PatternFill("solid", fgColor=color), **aligned)
            _put_cells(sheet, out, values, values == name, fill, False)
    elif column in styles.links and links_left[0] > 0:
        paths = pd.Series(values, dtype="object").str.startswith("/", na=False).to_numpy()
        linked = np.flatnonzero(paths & ~unsafe)[:links_left[0]]
        links_left[0] -= len(linked)
        link = _style_of(sheet, font=Font(color="0563C1", underline="single"), **aligned)
        for i in linked:
            target = PORTAL + quote(values[i], safe="/")
            if len(target) > EXCEL_MAX_LINK:  # Excel repairs the file and drops longer links
                continue
            cell = _cell(sheet, values[i], link, False)
            cell.hyperlink = Hyperlink(ref="", target=target)
            out[i] = cell
    _put_cells(sheet, out, values, unsafe, column_style, True)
    if column_style is not None and not isinstance(sheet, _TypedSheet):  # normal mode
        plain = np.fromiter((v is not None and not isinstance(v, Cell) for v in out), bool,
                            len(out))
        _put_cells(sheet, out, values, plain, column_style, False)
    return out.tolist(), data_type, column_style


def _lines(texts: pd.Series, width: float) -> np.ndarray:
    """How many lines each text takes wrapped in a column `width` characters wide (about:
    the average character is narrower than the digit Excel measures widths in)."""
    text = texts.astype("object").where(texts.notna(), "").astype(str)
    per_line = max(width * 1.1, 1.0)
    return (np.ceil(text.str.len().to_numpy() / per_line)
            + text.str.count("\n").to_numpy()).clip(1, None)


def _row_heights(sheet, rows: pd.DataFrame, styles: Styles, first_row: int) -> list[int]:
    """Row heights for the wrapped columns (neither Excel nor LibreOffice fits them when it
    opens a file). Returns the rows given a height, to be let go once written."""
    wrapped = [c for c in rows.columns if c in styles.wrap]
    if not wrapped or rows.empty:
        return []
    lines = np.max([_lines(rows[c], styles.wrap[c]) for c in wrapped], axis=0)
    tall = np.flatnonzero(lines > 1)
    points = np.minimum(lines[tall] * LINE_POINTS, EXCEL_MAX_ROW_POINTS)
    numbers = (first_row + tall).tolist()
    if isinstance(sheet, _TypedSheet):  # the writer reads each row's attributes as it goes
        heights, which = np.unique(points, return_inverse=True)
        attributes = np.empty(len(heights), dtype=object)
        attributes[:] = [{"ht": f"{h:g}", "customHeight": "1"} for h in heights]
        sheet.row_dimensions.update(zip(numbers, attributes[which], strict=True))
    else:
        for number, height in zip(numbers, points.tolist(), strict=True):
            sheet.row_dimensions[number].height = height
    return numbers


def _append_rows(sheet, frame: pd.DataFrame, styles: Styles, links_left: list[int]) -> None:
    """The frame's rows, converted a slice at a time so that only one slice is held as
    Python objects (a sheet holds up to a million rows)."""
    for start in range(0, len(frame), ROWS_AT_ONCE):
        rows = frame.iloc[start:start + ROWS_AT_ONCE]
        sized = _row_heights(sheet, rows, styles, 2 + start)  # row 1: the header
        columns = [_column_cells(sheet, column, rows[column], styles, links_left)
                   for column in rows.columns]
        sheet.column_types = [data_type for _, data_type, _ in columns]
        sheet.column_styles = [style for _, _, style in columns]
        sheet.column_style_ids = [None if style is None else sheet.parent._cell_styles.add(style)
                                  for style in sheet.column_styles]
        for row in zip(*(cells for cells, _, _ in columns), strict=True):
            sheet.append(row)
        sheet.column_types = sheet.column_styles = sheet.column_style_ids = None
        if isinstance(sheet, _TypedSheet):
            for number in sized:
                del sheet.row_dimensions[number]


def _text_cell(sheet, value, **style):
    """A cell for a value that may come from Azure: text is cleaned, cut to Excel's limit and
    never becomes a formula (quote prefix); `style` sets font, fill, alignment or format."""
    quoted = False
    if isinstance(value, str):
        value = xml_text(value)
        if len(value) > EXCEL_MAX_TEXT:
            marker = TRUNCATED.format("findings.json")
            value = value[:EXCEL_MAX_TEXT - len(marker)] + marker
        quoted = bool(re.match(UNSAFE_TEXT, value)) or value in ERROR_CODES
    cell = _cell(sheet, value, None, quoted)
    for name, setting in style.items():
        setattr(cell, name, setting)
    return cell


def _header(sheet, names) -> list:
    """Bold text cells; a name may come from the data (the Replicas sheet's regions), so it is
    cleaned and never becomes a formula, like any other text."""
    return [_text_cell(sheet, name, font=BOLD) for name in names]


def _printable(sheet, title_rows: str | None = "1:1") -> None:
    """Landscape, as wide as the page and as many pages long as it takes, the header rows on
    every page. (The footer needs the as-of time: write_workbook adds it.)"""
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight = 1, 0
    if title_rows:
        sheet.print_title_rows = title_rows


def _widths(columns: list[str], frame: pd.DataFrame, styles: Styles) -> list[float]:
    """Widths that show what the first rows hold: money as formatted with its currency (never
    `###`), wrapped text at its set width, other text up to 60 characters."""
    sample = frame.head(200)
    widths = []
    for column in columns:
        width = len(str(column)) + 2
        if column in styles.wrap:
            widths.append(max(styles.wrap[column], width))
            continue
        if len(sample):
            values = sample[column]
            if column in styles.money or column in styles.prices:
                decimals = 4 if column in styles.prices else 2
                numbers = pd.to_numeric(values, errors="coerce").dropna()
                longest = max((len(f"{v:,.{decimals}f}") for v in numbers), default=0)
                width = max(width, longest + len(styles.currency) + 3)
            elif pd.api.types.is_datetime64_any_dtype(values.dtype):
                width = max(width, 12 if _date_format(values) == DATE_FORMAT else 22)
            else:
                text = values.astype("object")
                lengths = text.where(text.notna(), "").map(lambda v: len(str(v)))
                width = max(width, int(lengths.max()) + 2)
        widths.append(min(max(width, 10), 60))
    return widths


def _new_sheet(book: Workbook, title: str, columns: list[str], frame: pd.DataFrame,
               styles: Styles):
    sheet = _create_sheet(book, title[:31])
    sheet.freeze_panes = "A2"
    for i, width in enumerate(_widths(columns, frame, styles), start=1):
        sheet.column_dimensions[get_column_letter(i)].width = width
    _printable(sheet)
    sheet.append(_header(sheet, columns))
    return sheet


def write_table(book: Workbook, title: str, frame: pd.DataFrame, styles: Styles | None = None):
    """One table on its own sheet (continued on "<title> (2)" and on past Excel's row limit),
    header frozen and printed on every page, filters on, widths set. Returns the last sheet
    and its last row."""
    styles = styles or Styles()
    columns = list(frame.columns)
    chunk = EXCEL_MAX_ROWS - 1
    sheet, last_row = None, 1
    for part, start in enumerate(range(0, max(len(frame), 1), chunk)):
        rows = frame.iloc[start:start + chunk]
        title_part = title if part == 0 else f"{title[:25]} ({part + 1})"
        sheet = _new_sheet(book, title_part, columns, rows, styles)
        _append_rows(sheet, rows, styles, [EXCEL_MAX_LINKS])
        last_row = len(rows) + 1
        last_column = get_column_letter(max(len(columns), 1))
        sheet.auto_filter.ref = f"A1:{last_column}{last_row}"
        if styles.printed:
            sheet.print_area = f"A1:{get_column_letter(styles.printed)}{last_row}"
    return sheet, last_row


# --- designed pages: the Summary and the Cost summary --------------------------------------



@dataclass
class Part:
    """One value on a designed page, `span` columns wide, with its style."""
    value: object
    span: int = 1
    style: dict = field(default_factory=dict)


class _Page:
    """A sheet laid out as a page: rows of values on a fixed grid of column widths; a value
    spanning columns is a merged cell, and a row's height is set from its longest wrapped text
    (Excel and LibreOffice do not fit merged cells' heights themselves)."""

    def __init__(self, book: Workbook, title: str, widths: list[float]):
        self.sheet = _create_sheet(book, title)
        self.widths = widths
        for i, width in enumerate(widths, start=1):
            self.sheet.column_dimensions[get_column_letter(i)].width = width
        _printable(self.sheet, None)
        self.row = 0

    def add(self, *parts: Part) -> int:
        """One row of parts, left to right from column A; returns its row number."""
        self.row += 1
        cells, column, lines = [], 1, 1
        for part in parts:
            style = dict(part.style)
            horizontal = style.pop("horizontal", None)
            style.setdefault("alignment", Alignment(
                wrap_text=isinstance(part.value, str), vertical="top", horizontal=horizontal))
            cells.append(_text_cell(self.sheet, part.value, **style))
            cells += [None] * (part.span - 1)
            if part.span > 1:
                self.sheet.merged_cells.add(CellRange(
                    min_col=column, min_row=self.row, max_col=column + part.span - 1,
                    max_row=self.row))
            if isinstance(part.value, str):
                room = int(sum(self.widths[column - 1:column - 1 + part.span]) * 1.05)
                lines = max(lines, sum(len(textwrap.wrap(text, room, break_on_hyphens=False))
                                       or 1 for text in part.value.split("\n")))
            column += part.span
        if lines > 1:
            self.sheet.row_dimensions[self.row].height = lines * LINE_POINTS
        self.sheet.append(cells)
        return self.row

    def skip(self, rows: int = 1) -> None:
        for _ in range(rows):
            self.sheet.append([])
        self.row += rows

    def heading(self, text: str) -> None:
        self.skip()
        self.add(Part(text, len(self.widths), {"font": HEADING, "fill": HEADING_FILL,
                                               "alignment": Alignment(vertical="top")}))

    def header(self, *names: tuple[str, int]) -> int:
        return self.add(*(Part(name, span, {"font": BOLD, "alignment": Alignment(
            wrap_text=True, vertical="bottom")}) for name, span in names))


HEADING = Font(name="Calibri", bold=True, size=12)
TITLE = Font(name="Calibri", bold=True, size=16)
HEADING_FILL = PatternFill("solid", fgColor="DDE3EA")
SEVERITY_STYLES = {name: {"fill": PatternFill("solid", fgColor=color)}
                   for name, color in SEVERITY_FILLS.items()}


def _money_style(currency: str, decimals: int = 2) -> dict:
    return {"number_format": f"[${currency}] #,##0.{'0' * decimals}"}


def _timestamp(value) -> object:
    """A time from the context (ISO text) as a naive UTC datetime for a date cell."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return (stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp).to_pydatetime()


def scope_in_words(manifest: dict, label: str | None) -> str:
    """What the snapshot was asked to cover, as a sentence rather than the manifest's JSON."""
    source = manifest.get("source")
    asked = manifest.get("scope_requested")
    if isinstance(source, dict) and source.get("kind") == "sample":
        return f"the bundled sample estate of {source.get('tenant', 'a fictional tenant')}"
    if isinstance(source, dict) and source.get("kind") == "import":
        files = source.get("files") or []
        return (f"imported from {len(files)} file(s): " + ", ".join(map(str, files[:5]))
                + (f" and {len(files) - 5} more" if len(files) > 5 else ""))
    if isinstance(asked, dict):
        parts = []
        if asked.get("tenant"):
            parts.append("every subscription the identity can read in the tenant")
        if asked.get("management_groups"):
            parts.append("management group(s) " + ", ".join(asked["management_groups"]))
        if asked.get("subscriptions"):
            parts.append(f"{len(asked['subscriptions'])} subscription(s): "
                         + ", ".join(asked["subscriptions"]))
        where = f" through Azure Resource Graph ({manifest['endpoint']})" \
            if manifest.get("endpoint") else " through Azure Resource Graph"
        return "; ".join(parts or ["not recorded"]) + where
    if source:
        return f"{source}" if isinstance(source, str) else json.dumps(source, ensure_ascii=False)
    return f"{label or 'snapshot'}: the snapshot records no scope"


def _inventory(tables: dict[str, pd.DataFrame]) -> str:
    names = [("galleries", "galleries"), ("image_definitions", "image definitions"),
             ("image_versions", "image versions"), ("managed_images", "managed images"),
             ("machines", "VMs and scale sets")]
    return ", ".join(f"{len(tables[t]):,} {words}" for t, words in names if t in tables)


def _ranked(findings: pd.DataFrame) -> pd.DataFrame:
    """Findings most severe first, in their own order within a severity."""
    rank = findings["severity"].map({s: -i for i, s in enumerate(SEVERITIES)}).fillna(1)
    return findings.iloc[np.argsort(rank.to_numpy(), kind="stable")]


def _finding_rows(page: _Page, findings: pd.DataFrame, top: int = 10) -> None:
    """Findings in words: resource, rule and its title, severity, and what is wrong."""
    page.header(("resource", 1), ("rule", 3), ("severity", 1), ("what is wrong", 7))
    shown = findings.head(top)[["resource_name", "rule_id", "title", "severity", "message"]]
    for f in shown.astype(object).where(shown.notna(), None).itertuples(index=False):
        page.add(Part(f.resource_name), Part(f"{f.rule_id}: {f.title or ''}", 3),
                 Part(f.severity, 1, SEVERITY_STYLES.get(f.severity, {})), Part(f.message, 7))


def _by_rule_table(page: _Page, findings: pd.DataFrame, savings: pd.Series | None,
                   currency: str) -> tuple[int, int]:
    """Open findings per rule, one column per severity (blank for none), then open, exempted
    and what the rule's deletions would save. Returns the header row and the last row."""
    exempted = findings["exempted"].astype(bool)
    active = findings[~exempted]
    order = list(reversed(SEVERITIES))
    counts = pd.crosstab(active["rule_id"], active["severity"]).reindex(columns=order, fill_value=0)
    titles = findings.groupby("rule_id")["title"].first()
    accepted = findings[exempted]["rule_id"].value_counts()
    bold = {"font": BOLD, "alignment": Alignment(wrap_text=True, vertical="bottom")}
    header = page.add(Part("rule", 1, bold), Part("title", 3, bold),
                      *(Part(name, 1, {**bold, **SEVERITY_STYLES[name]}) for name in order),
                      Part("open findings", 1, bold), Part("exempted", 1, bold),
                      Part("monthly savings", 1, bold))
    for rule_id, row in counts.iterrows():
        saving = savings.get(rule_id) if savings is not None else None
        page.add(Part(rule_id), Part(titles.get(rule_id, ""), 3),
                 *(Part(int(row[name]) or None) for name in order),
                 Part(int(row.sum())), Part(int(accepted.get(rule_id, 0)) or None),
                 Part(saving, 1, _money_style(currency) if saving is not None else {}))
    return header, page.row


def _by_rule_chart(page: _Page, header: int, last: int) -> None:
    """A bar per rule, stacked by severity, each severity in its colour; every rule labelled.
    Drawn on rows kept empty below the table."""
    rules = last - header
    chart = BarChart()
    chart.type, chart.grouping, chart.overlap = "bar", "stacked", 100
    chart.title = "Open findings by rule and severity"
    chart.y_axis.title = "open findings"
    chart.x_axis.scaling.orientation = "maxMin"  # the first rule at the top, as in the table
    chart.x_axis.tickLblSkip = 1
    chart.x_axis.delete = chart.y_axis.delete = False
    chart.y_axis.majorGridlines = None
    chart.legend.position = "b"
    chart.gapWidth = 40
    data = Reference(page.sheet, min_col=5, max_col=9, min_row=header, max_row=last)
    chart.add_data(data, titles_from_data=True)
    chart.set_categories(Reference(page.sheet, min_col=1, min_row=header + 1, max_row=last))
    for series, name in zip(chart.series, reversed(SEVERITIES), strict=True):
        series.graphicalProperties.solidFill = SEVERITY_FILLS[name]
        series.graphicalProperties.line.solidFill = SEVERITY_FILLS[name]
    chart.width = 0.19 * sum(page.widths)
    chart.height = 3.5 + 0.55 * rules
    page.skip()
    page.sheet.add_chart(chart, f"A{page.row + 1}")
    page.skip(math.ceil(chart.height / 0.45) + 1)


def _summary_sheet(book, parts) -> None:
    """The page an auditor signs off: what was read, what is open, what it costs, what
    changed."""
    findings, context, cost = parts["findings"], parts["context"], parts["cost"]
    manifest = context.get("manifest") or {}
    counts = summary(findings)
    covered = context.get("coverage") or coverage(parts["tables"], manifest)
    currency = cost.currency if cost is not None else "USD"
    page = _Page(book, "Summary", [30, 12, 14, 10, 9, 9, 9, 9, 9, 10, 10, 14])
    wide = len(page.widths) - 1
    scope = scope_in_words(manifest, context.get("snapshot"))
    page.add(Part("Image estate audit", len(page.widths), {"font": TITLE}))
    page.add(Part(f"{scope}; as of {str(context.get('as_of') or '')[:16].replace('T', ' ')} "
                  f"UTC; image-audit {__version__}", len(page.widths)))

    page.heading("Scope and coverage")
    not_read = [f"{item['name'] or item['scope']}: {item['status']}"
                + (f" ({item['detail']})" if item["detail"] else "")
                + (f"; subscription {item['scope']}" if item["name"] else "")
                for item in covered["not_read"]]
    if covered["state"].startswith("unknown"):
        not_read_text = "unknown: the snapshot records no scope, so what was not read is not known"
    else:
        not_read_text = "\n".join(not_read) if not_read else "none"
    items = [("scope", scope), ("coverage", covered["state"]),
             ("subscriptions read", covered["scopes_read"]), ("not read", not_read_text),
             ("coverage gaps", "\n".join(covered["gaps"]) if covered["gaps"] else "none"),
             ("collection problems", covered["problems"]), ("inventory", _inventory(parts["tables"])),
             ("as of", _timestamp(context.get("as_of"))),
             ("collected at", _timestamp(context.get("collected_at"))),
             ("snapshot", context.get("snapshot")), ("snapshot sha256", context.get("snapshot_sha256")),
             ("tool", f"image-audit {__version__}")]
    for label, value in items:
        style = {"horizontal": "left"}
        if isinstance(value, datetime):
            style["number_format"] = TIME_FORMAT
        page.add(Part(label, 1, {"font": BOLD}), Part(value, wide, style))

    page.heading("Open findings")
    left = {"horizontal": "left"}
    page.add(Part("open findings", 1, {"font": BOLD}), Part(counts["open"], 1, left))
    page.add(Part("exempted findings (not counted as open)", 1, {"font": BOLD}),
             Part(counts["exempted"], 1, left))
    page.skip()
    page.header(("severity", 1), ("open findings", 1))
    for name, count in counts["open_by_severity"].items():
        page.add(Part(name, 1, SEVERITY_STYLES.get(name, {})), Part(count, 1, left))
    if counts["open_by_rule"]:
        savings = None
        if parts.get("savings") is not None:
            rows = parts["savings"]
            savings = rows[rows["section"] == "savings by rule"].set_index("key")["monthly_cost"]
        page.skip()
        header, last = _by_rule_table(page, findings, savings, currency)
        _by_rule_chart(page, header, last)

        page.heading(f"Top {min(10, counts['open'])} risks: the most severe open findings")
        _finding_rows(page, _ranked(findings[~findings["exempted"].astype(bool)]))

    if cost is not None:
        page.heading("Cost and savings")
        _cost_items(page, parts, currency)

    compared = context.get("baseline")
    if compared:
        page.heading("Changes since the baseline")
        page.add(Part("baseline", 1, {"font": BOLD}), Part(compared.get("file"), wide))
        for key in ("new", "existing", "resolved"):
            page.add(Part(f"{key} findings", 1, {"font": BOLD}), Part(compared[key], 1, left),
                     Part("exempted findings included" if key == "new" else None, wide - 1))
        if "status" in findings.columns:
            new = _ranked(findings[(findings["status"] == "new")
                                   & ~findings["exempted"].astype(bool)])
            if len(new):
                page.skip()
                page.add(Part(f"New open findings ({min(len(new), 10)} of {len(new)})", 3,
                              {"font": BOLD}))
                _finding_rows(page, new)
        resolved = context.get("resolved") or []
        if resolved:
            page.skip()
            page.add(Part(f"Resolved since the baseline ({min(len(resolved), 10)} of "
                          f"{len(resolved)})", 3, {"font": BOLD}))
            frame = pd.DataFrame(resolved).reindex(
                columns=["resource_name", "rule_id", "title", "severity", "message"])
            _finding_rows(page, _ranked(frame))


def _cost_items(page: _Page, parts, currency: str) -> None:
    """Monthly storage cost, then savings deletable now and blocked, with the dates blocked
    savings become deletable: the same figures as cost.csv and the cleanup plan."""
    cost, totals, savings = parts["cost"], parts["cost_totals"], parts["savings"]
    money = _money_style(currency)
    total = totals[totals["section"] == "total"].iloc[0]
    saved = savings[savings["section"] == "savings"].set_index("key")
    note = len(page.widths) - 3
    page.header(("item", 1), ("resources", 1), ("monthly cost", 1), ("what it is", note))
    lines = int(total["priced"] + total["unpriced"])
    page.add(Part("monthly storage cost", 1, {"font": BOLD}), Part(f"{lines:,} lines"),
             Part(float(total["monthly_cost"]), 1, money), Part(cost.basis, note))
    page.add(Part("unpriced cost lines", 1, {"font": BOLD}), Part(int(total["unpriced"])),
             Part(None), Part("lines without a price or a size: not in the total", note))
    what = {"deletable now": "what cleanup-plan deletes today (same as-of, exemptions, config)",
            "blocked": "flagged for deletion but held: by the end-of-life lock until the dates "
                       "below, or by what the Cost summary sheet gives as the reason"}
    for key, row in saved.iterrows():
        resources = int(row["priced"] + row["unpriced"])
        if key == "blocked, no date" and not resources:
            continue
        if key.startswith("blocked until "):
            day = _timestamp(key.removeprefix("blocked until "))
            page.add(Part(day, 1, {"number_format": '"  blocked until "yyyy-mm-dd',
                                   "horizontal": "left"}),
                     Part(resources), Part(float(row["monthly_cost"]), 1, money),
                     Part("deletable from this date, when the end-of-life lock lifts", note))
        else:
            label = "  blocked, no date" if key == "blocked, no date" else f"monthly savings, {key}"
            page.add(Part(label, 1, {"font": BOLD} if not label.startswith(" ") else {}),
                     Part(resources), Part(float(row["monthly_cost"]), 1, money),
                     Part(what.get(key, "held by something other than the end-of-life lock"),
                          note))


def _findings_sheet(book, parts) -> None:
    """Read left to right: what, where, why and how to fix, then the ids and evidence."""
    cost = parts["cost"]
    findings = parts["findings"]
    front = [c for c in FINDINGS_READING if c in findings.columns]
    frame = findings[front + [c for c in findings.columns if c not in front]]
    write_table(book, "Findings", frame,
                Styles(money=["monthly_cost"], links=["resource_id"], severity="severity",
                       currency=cost.currency if cost is not None else "USD",
                       wrap={"resource_name": 22, "message": 70, "remediation": 90,
                             "exemption_reason": 24, "title": 36},
                       full_text="findings.json", printed=len(front)))


# The Findings sheet's columns as a person reads them; these print, the rest follow.
FINDINGS_READING = ["severity", "rule_id", "resource_name", "message", "remediation",
                    "exempted", "exemption_reason", "status", "monthly_cost"]


def _gallery_words(keys: pd.Series) -> pd.Series:
    """A gallery's name and resource group from its id (names repeat across groups)."""
    parts = keys.astype("object").str.extract(r"(?i)/resourceGroups/([^/]+)/.*/galleries/([^/]+)")
    named = parts[1] + " (" + parts[0] + ")"
    return named.where(named.notna(), keys)


def _cost_summary_sheet(book, parts) -> None:
    """Cost by team, gallery, region and storage type, with charts; then the savings and, item
    by item, what is deletable now and what is blocked and why."""
    cost = parts["cost"]
    if cost is None:
        return
    money = _money_style(cost.currency)
    totals = parts["cost_totals"]
    page = _Page(book, "Cost summary", [44, 14, 10, 10, 12, 56])
    total = totals[totals["section"] == "total"].iloc[0]
    page.add(Part(f"Image storage: {total['monthly_cost']:,.2f} {cost.currency} a month", 6,
                  {"font": TITLE}))
    page.add(Part(f"{cost.basis}; lines are on the Cost lines sheet", 6))
    charts = []
    for section, title in [("team", "By team"), ("gallery", "By gallery"),
                           ("region", "By region"), ("storage_type", "By storage type")]:
        rows = totals[totals["section"] == section].sort_values("monthly_cost", ascending=False)
        keys = _gallery_words(rows["key"]) if section == "gallery" else rows["key"]
        page.skip()
        header = page.header((title.removeprefix("By "), 1), ("monthly cost", 1),
                             ("priced lines", 1), ("unpriced lines", 1), ("unpriced GB", 1))
        for key, row in zip(keys, rows.itertuples(index=False), strict=True):
            page.add(Part(key), Part(float(row.monthly_cost), 1, money), Part(int(row.priced)),
                     Part(int(row.unpriced)), Part(float(row.unpriced_gb) or None))
        if section in ("team", "gallery") and len(rows):
            charts.append((title, header, page.row))
    anchor = 3
    for title, header, last in charts:
        chart = BarChart()
        chart.type = "bar"
        chart.title = f"Monthly cost {title.lower()}"
        chart.legend = None
        chart.x_axis.scaling.orientation = "maxMin"
        chart.x_axis.tickLblSkip = 1
        chart.x_axis.delete = chart.y_axis.delete = False
        chart.y_axis.numFmt = "#,##0"
        chart.add_data(Reference(page.sheet, min_col=2, min_row=header, max_row=last),
                       titles_from_data=True)
        chart.set_categories(Reference(page.sheet, min_col=1, min_row=header + 1, max_row=last))
        chart.series[0].graphicalProperties.solidFill = "4F7CAC"
        chart.width, chart.height = 11.5, 3 + 0.55 * (last - header)
        page.sheet.add_chart(chart, f"F{anchor}")
        anchor += math.ceil(chart.height / 0.45) + 1
    page.skip(max(0, anchor - page.row - 1))

    savings = parts["savings"]
    page.heading("Savings")
    page.header(("item", 1), ("monthly savings", 1), ("resources", 1), ("unpriced", 1),
                ("", 1), ("what it is", 1))
    for row in savings.itertuples(index=False):
        key = row.key if row.section == "savings" else f"{row.key} {_rule_title(parts, row.key)}"
        day = key.removeprefix("blocked until ") if key.startswith("blocked until ") else None
        label = Part(_timestamp(day), 1, {"number_format": '"blocked until "yyyy-mm-dd',
                                          "horizontal": "left"}) \
            if day else Part(key)
        page.add(label, Part(float(row.monthly_cost), 1, money), Part(int(row.priced + row.unpriced)),
                 Part(int(row.unpriced) or None), Part(None),
                 Part("savings by rule: a resource flagged by two rules counts in each"
                      if row.section == "savings by rule" else None))
    plan = parts.get("plan")
    if plan is not None:
        items = plan.savings_items()
        shown_items = items.head(SAVINGS_ITEMS_SHOWN)
        page.heading(f"Savings item by item ({len(shown_items)} of {len(items)}; the cleanup "
                     "plan lists every one)")
        page.header(("resource", 1), ("monthly cost", 1), ("state", 2),
                    ("deletable from", 1), ("why it is blocked", 1))
        for item in shown_items.itertuples(index=False):
            when = _timestamp(item.deletable_from) if pd.notna(item.deletable_from) else None
            page.add(Part(item.label), Part(item.monthly_cost if pd.notna(item.monthly_cost)
                                            else None, 1, money),
                     Part(f"{item.state} ({item.rules})", 2),
                     Part(when, 1, {"number_format": DATE_FORMAT}), Part(item.reason or None))


SAVINGS_ITEMS_SHOWN = 500


def _rule_title(parts, rule_id: str) -> str:
    titles = parts["findings"].drop_duplicates("rule_id").set_index("rule_id")["title"]
    return f"({titles.get(rule_id, '')})" if rule_id in titles.index else ""


def _cost_lines_sheet(book, parts) -> None:
    cost = parts["cost"]
    if cost is None:
        return
    write_table(book, "Cost lines", cost.lines.drop(columns="id"),
                Styles(money=["monthly_cost"], prices=["price_per_gb_month"],
                       links=["resource_id"], currency=cost.currency,
                       wrap={"assumptions": 60, "price_row": 40}, full_text="cost_lines.csv"))


def machine_usage(machines: pd.DataFrame) -> pd.DataFrame:
    """What each machine's image reference resolves to, from the machine rows alone: used when
    the estate offers no `usage` view (a gallery `latest` resolves through the OS disk only)."""
    kind = machines["image_kind"].astype("object")
    version = machines["image_version"].astype("object")
    unversioned = version.isna() | (version.str.lower() == "latest")
    gallery = kind.isin(["gallery", "shared", "community"])
    running = machines["running_version_id"].astype("object")
    version_id = np.select([gallery & ~unversioned, gallery & unversioned & running.notna()],
                           [machines["image_id"].astype("object"), running], default=None)
    resolved_from = np.select([gallery & ~unversioned, gallery & running.notna(), gallery],
                              ["pinned", "disk", "unresolved"], default=None)
    return pd.DataFrame({"machine_id": machines["id"], "version_id": version_id,
                         "resolved_from": resolved_from}, index=machines.index)


def _instance_versions(texts: pd.Series) -> pd.Series:
    """`definition/1.2.0: 3, definition/1.3.0: 1` from the OS disks' JSON (once per text)."""
    codes, distinct = pd.factorize(texts)
    shown = [", ".join(_VERSION_LABEL.sub(r"\1/", v) + f": {n}" for v, n in json.loads(t).items())
             for t in distinct]
    return pd.Series(np.array(shown + [None], dtype=object)[codes], index=texts.index)


_VERSION_LABEL = re.compile(r"^.*/images/([^/]+)/versions/")


def _machines_frame(machines: pd.DataFrame, usage: pd.DataFrame) -> pd.DataFrame:
    usage = usage.drop_duplicates("machine_id").set_index("machine_id")
    version_id = machines["id"].map(usage["version_id"])
    resolved_from = machines["id"].map(usage["resolved_from"])
    kind = machines["image_kind"].astype("object")
    version = machines["image_version"].astype("object")
    marketplace = kind == "marketplace"
    urn = (machines["image_publisher"].astype(str) + ":" + machines["image_offer"].astype(str)
           + ":" + machines["image_sku"].astype(str) + ":")
    floating = version.isna() | (version.str.lower() == "latest")
    exact = version.where(~floating, machines["exact_version"].astype("object"))
    gallery_version = version_id.astype("object").str.extract(r"/versions/([^/]+)$", expand=False)
    resolves_to = np.select(
        [marketplace & exact.notna(), marketplace,
         version_id.notna(), kind.isin(["gallery", "shared", "community"])],
        [urn + exact.astype(str), urn + "(version not recorded)",
         version_id.astype(str), "(version not resolved)"],
        default=machines["image_id"].astype("object"))
    frame = pd.DataFrame({
        "name": machines["name"], "kind": machines["kind"], "location": machines["location"],
        "capacity": machines["capacity"], "power_state": machines["power_state"],
        # The platform (AKS, Databricks, ...) that patches it: PIN/APR/TAG/GEN leave it out.
        "platform_managed": machines["id"].map(usage["platform_managed"]).astype(object)
        if "platform_managed" in usage.columns else None,
        "image_kind": kind,
        "reference": np.where(marketplace, urn + version.fillna("(none)").astype(str),
                              machines["image_id"].astype("object")),
        "resolves_to": resolves_to,
        "resolved_version": np.where(marketplace, exact, gallery_version),
        "version_from": np.where(marketplace, np.where(floating, "latest", "pinned"),
                                 resolved_from.astype("object")),
        "gallery_definition": machines["image_definition_id"],
        # Each instance's version and count, from the OS disks (a scale set may run several).
        "instance_versions": _instance_versions(machines["running_versions"])
        if "running_versions" in machines else None,
        "subscription_id": machines["subscription_id"],
        "resource_group": machines["resource_group"], "resource_id": machines["arm_id"],
        "tags": machines["tags"]})
    frame["version_from"] = frame["version_from"].where(frame["version_from"].notna(), None)
    # The OS disk's storage (LEG001) and the licence the machine claims (LIC001's evidence).
    if {"os_disk_unmanaged", "license_type"} <= set(machines.columns):
        unmanaged = machines["os_disk_unmanaged"].astype("boolean")
        frame.insert(frame.columns.get_loc("image_kind") + 1, "os_disk", pd.Series(
            np.select([unmanaged.fillna(False), (~unmanaged).fillna(False)],
                      ["unmanaged VHD", "managed"], default=None), index=frame.index, dtype=object))
        frame.insert(frame.columns.get_loc("os_disk") + 1, "license_type", machines["license_type"])
    if {"orchestration_mode", "scale_set_id"} <= set(machines.columns):
        frame.insert(frame.columns.get_loc("capacity") + 1, "members_in_snapshot",
                     _members_in_snapshot(machines))
    return frame


def _members_in_snapshot(machines: pd.DataFrame) -> pd.Series:
    """For a Flexible scale set, how many of its member VMs have rows of their own: its
    capacity counts the same VMs, so a reader must not add the two."""
    counts = machines["scale_set_id"].dropna().astype(object).value_counts()
    flexible = machines["orchestration_mode"].astype(object).str.lower().eq("flexible")
    found = counts.reindex(machines["id"].astype(object).to_numpy()).fillna(0).astype("int64")
    return pd.Series(found.to_numpy(), index=machines.index).astype(object).where(
        flexible.fillna(False).to_numpy(dtype=bool), None)


def _machines_sheet(book, parts) -> None:
    if "machines" not in parts["tables"]:
        return
    machines = parts["tables"]["machines"]
    usage = parts["usage"] if parts["usage"] is not None else machine_usage(machines)
    write_table(book, "Machines", _machines_frame(machines, usage),
                Styles(links=["resource_id"]))


def _replicas_sheet(book, parts) -> None:
    """Version x region: replica count, storage type and machines using the version there."""
    tables = parts["tables"]
    if not {"image_versions", "version_regions", "machines"} <= set(tables):
        return
    versions, regions, machines = (tables["image_versions"], tables["version_regions"],
                                   tables["machines"])
    usage = parts["usage"] if parts["usage"] is not None else machine_usage(machines)
    used = usage[["machine_id", "version_id"]].merge(
        machines[["id", "location"]], left_on="machine_id", right_on="id")
    used = used[used["version_id"].notna()].groupby(["version_id", "location"]).size()
    cells = regions.groupby(["version_id", "region"]).agg(
        replicas=("regional_replica_count", "sum"),
        storage=("storage_account_type", "first"))
    used.index = used.index.set_names(["version_id", "region"])
    cells = cells.join(used.rename("machines"), how="outer")
    cells["replicas"] = cells["replicas"].fillna(0)
    cells["machines"] = cells["machines"].fillna(0).astype(int)
    matrix = cells.unstack("region")
    matrix.columns = [f"{region} {metric}" for metric, region in matrix.columns]
    order = sorted(matrix.columns, key=lambda c: (c.rsplit(" ", 1)[0],
                                                 ["replicas", "storage", "machines"].index(
                                                     c.rsplit(" ", 1)[1])))
    known = versions.drop_duplicates("id").set_index("id")
    frame = pd.DataFrame({
        "gallery": known["gallery_id"].astype("object").str.extract(
            r"/galleries/([^/]+)", expand=False),
        "definition": known["definition_id"].astype("object").str.extract(
            r"/images/([^/]+)$", expand=False),
        "version": known["name"], "resource_id": known["arm_id"]})
    frame = frame.join(matrix[order], how="outer")
    frame["resource_id"] = frame["resource_id"].fillna(pd.Series(frame.index, index=frame.index))
    frame = frame.sort_values(["gallery", "definition", "version"], na_position="last")
    write_table(book, "Replicas", frame.reset_index(drop=True), Styles(links=["resource_id"]))


def _exemptions_sheet(book, parts) -> None:
    as_of = pd.Timestamp(parts["context"].get("as_of") or pd.Timestamp.now(tz="UTC"))
    entries = parts["exemptions"]
    findings = parts["findings"]
    if entries is not None and len(entries):
        frame = pd.DataFrame(entries).copy()
        expires = pd.to_datetime(frame["expires"].astype(str), errors="coerce")
        as_of_day = as_of.tz_convert(None).normalize() if as_of.tzinfo else as_of.normalize()
        frame["expires"] = expires
        frame["days_left"] = (expires - as_of_day).dt.days
    else:
        exempted = findings[findings["exempted"].astype(bool)]
        frame = exempted[["rule_id", "resource_id", "resource_name", "exemption_reason"]]
        frame = frame.assign(days_left=None)
    write_table(book, "Exemptions", frame.reset_index(drop=True), Styles(links=["resource_id"]))


def _coverage_sheet(book, parts) -> None:
    manifest = parts["context"].get("manifest") or {}
    scope = parts["tables"].get("scope", pd.DataFrame(
        columns=["subscription_id", "display_name", "status", "detail"]))
    rows = [{"kind": "subscription", "subject": r.subscription_id, "name": r.display_name,
             "status": r.status, "detail": r.detail} for r in scope.itertuples()]
    for key in ("gaps", "problems"):
        for item in manifest.get(key) or []:
            rows.append({"kind": key[:-1], "subject": None, "name": None, "status": None,
                         "detail": item if isinstance(item, str) else json.dumps(item)})
    frame = pd.DataFrame(rows, columns=["kind", "subject", "name", "status", "detail"])
    write_table(book, "Coverage", frame)


def _pairs(items: list[tuple[str, object]]) -> pd.DataFrame:
    return pd.DataFrame({"item": [k for k, _ in items],
                         "value": pd.Series([v for _, v in items], dtype="object")})


def _manifest_sheet(book, parts) -> None:
    context = parts["context"]
    manifest = context.get("manifest") or {}
    items = [("tool", "image-audit"), ("tool version", __version__),
             ("snapshot", context.get("snapshot")),
             ("snapshot tool version", manifest.get("tool_version")),
             ("snapshot format version", manifest.get("format_version")),
             ("snapshot sha256", context.get("snapshot_sha256")),
             ("collected at", context.get("collected_at")), ("as of", context.get("as_of")),
             ("command", context.get("command")),
             ("config", (context.get("config") or {}).get("path") or "(none)"),
             ("config sha256", (context.get("config") or {}).get("sha256")),
             ("exemptions", context.get("exemptions") or "(none)"),
             ("exemptions sha256", context.get("exemptions_sha256"))]
    items += [(f"rule pack {name}", digest)
              for name, digest in (context.get("rule_pack") or {}).items()]
    items += [(f"table {name} sha256", digest)
              for name, digest in (context.get("table_hashes") or {}).items()]
    write_table(book, "Manifest", _pairs(items))


def _snapshot_table_sheets(book, parts) -> None:
    for name in PLAIN_TABLES:
        if name in parts["tables"]:
            write_table(book, name, parts["tables"][name], Styles(links=["arm_id"]))


# The sheets in reading order, each written by a function of (book, parts) that may write
# nothing (no cost, no machines). A new sheet is a new function in this list.
SHEET_WRITERS = [_summary_sheet, _findings_sheet, _cost_summary_sheet, _cost_lines_sheet,
                 _machines_sheet, _replicas_sheet, _snapshot_table_sheets, _exemptions_sheet,
                 _coverage_sheet, _manifest_sheet]


def _footer(book: Workbook, context: dict) -> None:
    """Every sheet's printed pages say the as-of time, the sheet and the page number."""
    as_of = str(context.get("as_of") or "")[:16].replace("T", " ")
    for sheet in book.worksheets:
        footer = sheet.HeaderFooter.oddFooter
        footer.left.text = f"image-audit, as of {as_of} UTC".replace("&", "&&")
        footer.center.text = "&A"
        footer.right.text = "page &P of &N"


def write_workbook(path: Path, findings: pd.DataFrame, tables: dict[str, pd.DataFrame],
                   context: dict, cost=None, usage: pd.DataFrame | None = None,
                   exemptions=None, write_only: bool = True, plan=None) -> None:
    """Every sheet, in reading order, into `path` (the caller makes the write atomic)."""
    book = Workbook(write_only=write_only)
    if not write_only:
        book.remove(book.active)
    parts = {"findings": findings, "tables": tables, "context": context, "cost": cost,
             "usage": usage, "exemptions": exemptions, "plan": plan, "savings": None}
    if cost is not None:
        parts["cost_totals"] = cost.totals()
        parts["savings"] = cost.savings(findings, plan)
    for write in SHEET_WRITERS:
        write(book, parts)
    if context.get("trend"):  # the run was appended to a history (auditor/history.py)
        from auditor.history import trend_sheet
        trend_sheet(book, context["trend"])
    _footer(book, context)
    book.save(path)
