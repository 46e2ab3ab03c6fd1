"""The Excel workbook for auditors and finance: Summary, Findings, Cost, Machines, Replicas,
the other snapshot tables, Exemptions, Coverage and Manifest.

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
import re
from copy import copy
from dataclasses import dataclass, field
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
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.hyperlink import Hyperlink

from auditor import __version__
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
BOLD = Font(bold=True)
# Snapshot tables that get a sheet of their own as they are (machines and scope are shown,
# enriched, on the Machines and Coverage sheets).
PLAIN_TABLES = ["galleries", "image_definitions", "image_versions", "version_regions",
                "managed_images", "resource_tags", "version_replica_sets", "autoscale_settings"]


@dataclass
class Styles:
    """How the columns of one table are shown."""
    money: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    severity: str | None = None
    currency: str = "USD"


class _TypedSheet(WriteOnlyWorksheet):
    """A write-only sheet told each column's Excel type before its rows are appended.

    write_table converts and checks the values a column at a time (_column_values), so the
    rows skip what openpyxl otherwise does for every value: infer the type, look for control
    characters, look for formulas. Cells (styles, links, quoted text), and values of columns
    of mixed or date type (column type None), go through openpyxl as usual; so does every row
    appended while `column_types` is None. Should openpyxl stop calling `_values_to_row`, the
    rows still come out right, only slower: every value handed over is valid as it is."""

    column_types: list | None = None

    def _values_to_row(self, values, row_idx):
        if self.column_types is None:
            yield from super()._values_to_row(values, row_idx)
            return
        cell = WriteOnlyCell(self)
        for col_idx, (value, data_type) in enumerate(zip(values, self.column_types,
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
            else:
                cell._value, cell.data_type = value, data_type
            cell.column, cell.row = col_idx, row_idx
            yield cell
            if data_type is None and cell.has_style:  # a date's format stays with its cell
                cell = WriteOnlyCell(self)


def _create_sheet(book: Workbook, title: str):
    """A sheet added the way Workbook.create_sheet adds one, but typed in write-only mode."""
    if not book.write_only:
        return book.create_sheet(title)
    sheet = _TypedSheet(parent=book, title=title)
    book._add_sheet(sheet)
    return sheet


def _column_values(series: pd.Series) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Python values Excel can hold, for a whole column at once: None for missing, naive UTC
    datetimes, JSON for lists and dicts, text with the characters XML forbids shown as escapes
    and cut to Excel's 32,767 characters. Also which values are text Excel would evaluate
    (formulas, error codes), and the column's Excel type when every value has the same one."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert(None)
    values = series.astype("object").to_numpy(copy=True)
    missing = pd.isna(series).to_numpy()
    values[missing] = None
    no_text = np.zeros(len(values), dtype=bool)
    if pd.api.types.is_bool_dtype(series.dtype):
        return values, no_text, "b"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return values, no_text, None
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
        fixed = pc.utf8_slice_codeunits(escaped, 0, EXCEL_MAX_TEXT)
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


def _column_cells(sheet, column: str, series: pd.Series, styles: Styles,
                  links_left: list[int]) -> tuple[list, str | None]:
    """The column as values to append, plain where no style is needed and cells where a style,
    a link or the quote prefix is; and its Excel type (see _TypedSheet)."""
    values, unsafe, data_type = _column_values(series)
    out = values.copy()
    if column in styles.money:
        money = _style_of(sheet, number_format=f"[${styles.currency}] #,##0.00")
        present = np.not_equal(values, None)
        _put_cells(sheet, out, values, present & ~unsafe, money, False)
        _put_cells(sheet, out, values, unsafe, money, True)
        return out.tolist(), data_type
    if column == styles.severity:
        for name, color in SEVERITY_FILLS.items():
            fill = _style_of(sheet, fill=PatternFill("solid", fgColor=color))
            _put_cells(sheet, out, values, values == name, fill, False)
    elif column in styles.links and links_left[0] > 0:
        paths = pd.Series(values, dtype="object").str.startswith("/", na=False).to_numpy()
        linked = np.flatnonzero(paths & ~unsafe)[:links_left[0]]
        links_left[0] -= len(linked)
        link = _style_of(sheet, font=Font(color="0563C1", underline="single"))
        for i in linked:
            target = PORTAL + quote(values[i], safe="/")
            if len(target) > EXCEL_MAX_LINK:  # Excel repairs the file and drops longer links
                continue
            cell = _cell(sheet, values[i], link, False)
            cell.hyperlink = Hyperlink(ref="", target=target)
            out[i] = cell
    _put_cells(sheet, out, values, unsafe, None, True)
    return out.tolist(), data_type


def _append_rows(sheet, frame: pd.DataFrame, styles: Styles, links_left: list[int]) -> None:
    """The frame's rows, converted a slice at a time so that only one slice is held as
    Python objects (a sheet holds up to a million rows)."""
    for start in range(0, len(frame), ROWS_AT_ONCE):
        rows = frame.iloc[start:start + ROWS_AT_ONCE]
        columns = [_column_cells(sheet, column, rows[column], styles, links_left)
                   for column in rows.columns]
        sheet.column_types = [data_type for _, data_type in columns]
        for row in zip(*(cells for cells, _ in columns), strict=True):
            sheet.append(row)
        sheet.column_types = None


def _header(sheet, names) -> list:
    """Bold text cells; a name may come from the data (the Replicas sheet's regions), so it is
    cleaned and never becomes a formula, like any other text."""
    cells = []
    for name in names:
        text = xml_text(name)[:EXCEL_MAX_TEXT]
        cell = _cell(sheet, text, None, bool(re.match(UNSAFE_TEXT, text)) or text in ERROR_CODES)
        cell.font = BOLD
        cells.append(cell)
    return cells


def _new_sheet(book: Workbook, title: str, columns: list[str], frame: pd.DataFrame):
    sheet = _create_sheet(book, title[:31])
    sheet.freeze_panes = "A2"
    sample = frame.head(200)
    for i, column in enumerate(columns, start=1):
        width = len(str(column)) + 2
        if len(sample):
            text = sample[column].astype("object")
            lengths = text.where(text.notna(), "").map(lambda v: len(str(v)))
            width = max(width, int(lengths.max()) + 2)
        sheet.column_dimensions[get_column_letter(i)].width = min(max(width, 10), 60)
    sheet.append(_header(sheet, columns))
    return sheet


def write_table(book: Workbook, title: str, frame: pd.DataFrame, styles: Styles | None = None):
    """One table on its own sheet (continued on "<title> (2)" and on past Excel's row limit),
    header frozen, filters on, widths set. Returns the last sheet and its last row."""
    styles = styles or Styles()
    columns = list(frame.columns)
    chunk = EXCEL_MAX_ROWS - 1
    sheet, last_row = None, 1
    for part, start in enumerate(range(0, max(len(frame), 1), chunk)):
        rows = frame.iloc[start:start + chunk]
        title_part = title if part == 0 else f"{title[:25]} ({part + 1})"
        sheet = _new_sheet(book, title_part, columns, rows)
        _append_rows(sheet, rows, styles, [EXCEL_MAX_LINKS])
        last_row = len(rows) + 1
        sheet.auto_filter.ref = f"A1:{get_column_letter(max(len(columns), 1))}{last_row}"
    return sheet, last_row


def append_block(sheet, title: str, frame: pd.DataFrame, styles: Styles | None = None) -> int:
    """A titled block of rows below what a sheet already holds (totals under cost lines)."""
    sheet.append([])
    sheet.append(_header(sheet, [title]))
    sheet.append(_header(sheet, frame.columns))
    _append_rows(sheet, frame, styles or Styles(), [0])
    return len(frame) + 3


# --- the sheets -----------------------------------------------------------------------------

def _pairs(items: list[tuple[str, object]]) -> pd.DataFrame:
    return pd.DataFrame({"item": [k for k, _ in items],
                         "value": pd.Series([v for _, v in items], dtype="object")})


def _summary_sheet(book, parts) -> None:
    findings, context, cost = parts["findings"], parts["context"], parts["cost"]
    manifest = context.get("manifest") or {}
    active = findings[~findings["exempted"].astype(bool)]
    counts = summary(findings)
    covered = context.get("coverage") or coverage(parts["tables"], manifest)
    not_read = [f"{item['name'] or item['scope']}: {item['status']}"
                for item in covered["not_read"]] + covered["gaps"]
    items = [("tool", f"image-audit {__version__}", None),
             ("scope", json.dumps(manifest.get("scope") or manifest.get("source") or
                                  context.get("snapshot"), ensure_ascii=False), None),
             ("as of", context.get("as_of"), None),
             ("collected at", context.get("collected_at"), None),
             ("snapshot sha256", context.get("snapshot_sha256"), None),
             ("coverage", covered["state"], None),
             ("not read", "; ".join(not_read) if not_read else "none", None),
             ("open findings", counts["open"], None),
             ("exempted findings (not counted as open)", counts["exempted"], None)]
    items += [(f"{name} (rows)", len(frame), None) for name, frame in parts["tables"].items()]
    money = Styles(money=["amount"], currency=cost.currency if cost is not None else "USD")
    if cost is not None:
        totals, savings = parts["cost_totals"], parts["savings"]
        total = totals[totals["section"] == "total"].iloc[0]
        saved = savings[savings["section"] == "savings"].set_index("key")
        items += [("monthly storage cost", cost.basis, total["monthly_cost"]),
                  ("unpriced cost lines", int(total["unpriced"]), None)]
        items += [(f"monthly savings, {key}", "what cleanup-plan deletes" if key == "deletable now"
                   else f"{int(row['priced'] + row['unpriced'])} resource(s)", row["monthly_cost"])
                  for key, row in saved.iterrows()]
    frame = pd.DataFrame(items, columns=["item", "value", "amount"]).astype(
        {"value": "object", "amount": "float64"})
    sheet, row = write_table(book, "Summary", frame, money)
    by_severity = active["severity"].value_counts()
    severities = pd.DataFrame({"severity": list(SEVERITY_FILLS),
                               "open findings": [int(by_severity.get(s, 0)) for s in SEVERITY_FILLS]})
    row += append_block(sheet, "Open findings by severity", severities, Styles(severity="severity"))
    by_rule = active.groupby("rule_id").agg(title=("title", "first"),
                                            severity=("severity", "first"),
                                            open_findings=("rule_id", "size")).reset_index()
    if cost is not None:
        by_rules = parts["savings"]
        saving = by_rules[by_rules["section"] == "savings by rule"].set_index("key")["monthly_cost"]
        by_rule["monthly_savings"] = by_rule["rule_id"].map(saving)
    rule_header = row + 3
    row += append_block(sheet, "Open findings by rule", by_rule,
                        Styles(severity="severity", money=["monthly_savings"],
                               currency=money.currency))
    if len(by_rule):
        chart = BarChart()
        chart.type = "bar"
        chart.title = "Findings by rule"
        chart.y_axis.title = "findings"
        chart.legend = None
        chart.height = max(7.5, 0.5 * len(by_rule))
        data = Reference(sheet, min_col=4, min_row=rule_header, max_row=rule_header + len(by_rule))
        labels = Reference(sheet, min_col=1, min_row=rule_header + 1,
                           max_row=rule_header + len(by_rule))
        chart.add_data(data, titles_from_data=True)
        chart.set_categories(labels)
        sheet.add_chart(chart, "E2")


def _findings_sheet(book, parts) -> None:
    cost = parts["cost"]
    write_table(book, "Findings", parts["findings"],
                Styles(money=["monthly_cost"], links=["resource_id"], severity="severity",
                       currency=cost.currency if cost is not None else "USD"))


def _cost_sheet(book, parts) -> None:
    cost = parts["cost"]
    if cost is None:
        return
    styles = Styles(money=["price_per_gb_month", "monthly_cost"], links=["resource_id"],
                    currency=cost.currency)
    sheet, _ = write_table(book, "Cost", cost.lines.drop(columns="id"), styles)
    append_block(sheet, f"Totals ({cost.basis})", parts["cost_totals"], styles)
    append_block(sheet, "Savings: cost of what retention and staleness findings would delete",
                 parts["savings"], styles)


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


def write_workbook(path: Path, findings: pd.DataFrame, tables: dict[str, pd.DataFrame],
                   context: dict, cost=None, usage: pd.DataFrame | None = None,
                   exemptions=None, write_only: bool = True, plan=None) -> None:
    """Every sheet, in reading order, into `path` (the caller makes the write atomic)."""
    book = Workbook(write_only=write_only)
    if not write_only:
        book.remove(book.active)
    parts = {"findings": findings, "tables": tables, "context": context, "cost": cost,
             "usage": usage, "exemptions": exemptions}
    if cost is not None:
        parts["cost_totals"] = cost.totals()
        parts["savings"] = cost.savings(findings, plan)
    _summary_sheet(book, parts)
    _findings_sheet(book, parts)
    _cost_sheet(book, parts)
    _machines_sheet(book, parts)
    _replicas_sheet(book, parts)
    for name in PLAIN_TABLES:
        if name in tables:
            write_table(book, name, tables[name], Styles(links=["arm_id"]))
    _exemptions_sheet(book, parts)
    _coverage_sheet(book, parts)
    _manifest_sheet(book, parts)
    if context.get("trend"):  # the run was appended to a history (auditor/history.py)
        from auditor.history import trend_sheet
        trend_sheet(book, context["trend"])
    book.save(path)
