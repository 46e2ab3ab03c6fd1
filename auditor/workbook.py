"""The Excel workbook for auditors and finance: Summary, Findings, Cost, Machines, Replicas,
the other snapshot tables, Exemptions, Coverage and Manifest.

Rows are streamed in openpyxl's write-only mode (bench/bench_report.py measures it against
normal mode). Cells are converted a column at a time; only cells that need a style, a link or
protection from being read as a formula become cell objects.
"""

from __future__ import annotations

import json
from copy import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.hyperlink import Hyperlink

from auditor import __version__

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_LINKS = 65_530  # Excel's limit of hyperlinks per worksheet
PORTAL = "https://portal.azure.com/#@/resource"
SEVERITY_FILLS = {"critical": "7B1FA2", "high": "D32F2F", "medium": "F57C00", "low": "FBC02D",
                  "info": "90A4AE"}
UNSAFE_TEXT = r"^[=+\-@\t\r]"
BOLD = Font(bold=True)
# Snapshot tables that get a sheet of their own as they are (machines and scope are shown,
# enriched, on the Machines and Coverage sheets).
PLAIN_TABLES = ["galleries", "image_definitions", "image_versions", "version_regions",
                "managed_images", "resource_tags"]


@dataclass
class Styles:
    """How the columns of one table are shown."""
    money: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    severity: str | None = None
    currency: str = "USD"


def _column_values(series: pd.Series) -> np.ndarray:
    """Python values Excel can hold, for a whole column at once: None for missing, naive UTC
    datetimes, JSON for lists and dicts, text without the control characters XML forbids."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert(None)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = series.astype("object").to_numpy(copy=True)
        values[series.isna().to_numpy()] = None
        return values
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        values = series.astype("object").to_numpy(copy=True)
        values[series.isna().to_numpy()] = None
        return values
    values = series.astype("object").to_numpy(copy=True)
    missing = pd.isna(series).to_numpy()
    values[missing] = None
    nested = [i for i in np.flatnonzero(~missing) if isinstance(values[i], (list, dict))]
    for i in nested:
        values[i] = json.dumps(values[i], ensure_ascii=False)
    text = pd.Series(values, dtype="object")
    try:
        dirty = text.str.contains(ILLEGAL_CHARACTERS_RE, na=False).to_numpy()
    except AttributeError:  # no text in this column
        dirty = np.zeros(len(values), dtype=bool)
    if dirty.any():
        values[dirty] = text[dirty].str.replace(ILLEGAL_CHARACTERS_RE, "", regex=True).to_numpy()
    timestamps = [i for i in np.flatnonzero(~missing) if isinstance(values[i], pd.Timestamp)]
    for i in timestamps:
        stamp = values[i]
        values[i] = (stamp.tz_convert(None) if stamp.tzinfo else stamp).to_pydatetime()
    return values


def _text_cells(sheet, values: np.ndarray) -> list:
    """The column as cells; text Excel would evaluate (formulas, error codes) is stored as a
    string with Excel's quote prefix, so it is shown, and stays, as the text it is."""
    out = values.tolist()
    text = pd.Series(values, dtype="object")
    try:
        unsafe = (text.str.contains(UNSAFE_TEXT, na=False) | text.isin(ERROR_CODES)).to_numpy()
    except AttributeError:  # no text in this column
        return out
    for i in np.flatnonzero(unsafe):
        cell = WriteOnlyCell(sheet, value=out[i])
        cell.data_type = "s"
        cell.quotePrefix = True
        out[i] = cell
    return out


def _style_of(sheet, **styles):
    """A style registered once, as the array of indices openpyxl keeps per cell: copying it
    is far cheaper than assigning fonts, fills and formats cell by cell."""
    template = WriteOnlyCell(sheet)
    for name, value in styles.items():
        setattr(template, name, value)
    return template._style


def _cell(sheet, value, style):
    if isinstance(value, Cell):  # text made safe by _text_cells keeps its quote prefix
        value._style = copy(style)
        value.quotePrefix = True
        return value
    cell = WriteOnlyCell(sheet, value=value)
    cell._style = copy(style)
    return cell


def _styled_cells(sheet, column: str, values: list, styles: Styles, links_left: list[int]):
    if column in styles.money:
        money = _style_of(sheet, number_format=f"[${styles.currency}] #,##0.00")
        return [_cell(sheet, value, money) for value in values]
    if column == styles.severity:
        fills = {name: _style_of(sheet, fill=PatternFill("solid", fgColor=color))
                 for name, color in SEVERITY_FILLS.items()}
        return [_cell(sheet, value, fills[value]) if isinstance(value, str) and value in fills
                else value for value in values]
    if column in styles.links:
        link = _style_of(sheet, font=Font(color="0563C1", underline="single"))
        cells = []
        for value in values:
            if links_left[0] > 0 and isinstance(value, str) and value.startswith("/"):
                cell = _cell(sheet, value, link)
                cell.hyperlink = Hyperlink(ref="", target=PORTAL + value)
                links_left[0] -= 1
                cells.append(cell)
            else:
                cells.append(value)
        return cells
    return values


def _new_sheet(book: Workbook, title: str, columns: list[str], frame: pd.DataFrame):
    sheet = book.create_sheet(title[:31])
    sheet.freeze_panes = "A2"
    sample = frame.head(200)
    for i, column in enumerate(columns, start=1):
        width = len(str(column)) + 2
        if len(sample):
            text = sample[column].astype("object")
            lengths = text.where(text.notna(), "").map(lambda v: len(str(v)))
            width = max(width, int(lengths.max()) + 2)
        sheet.column_dimensions[get_column_letter(i)].width = min(max(width, 10), 60)
    header = []
    for column in columns:
        cell = WriteOnlyCell(sheet, value=str(column))
        cell.font = BOLD
        header.append(cell)
    sheet.append(header)
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
        links_left = [EXCEL_MAX_LINKS]
        cells = []
        for column in columns:
            values = _text_cells(sheet, _column_values(rows[column]))
            cells.append(_styled_cells(sheet, column, values, styles, links_left))
        for row in zip(*cells, strict=True):
            sheet.append(row)
        last_row = len(rows) + 1
        sheet.auto_filter.ref = f"A1:{get_column_letter(max(len(columns), 1))}{last_row}"
    return sheet, last_row


def append_block(sheet, title: str, frame: pd.DataFrame, styles: Styles | None = None) -> int:
    """A titled block of rows below what a sheet already holds (totals under cost lines)."""
    styles = styles or Styles()
    sheet.append([])
    heading = WriteOnlyCell(sheet, value=title)
    heading.font = BOLD
    sheet.append([heading])
    header = []
    for column in frame.columns:
        cell = WriteOnlyCell(sheet, value=str(column))
        cell.font = BOLD
        header.append(cell)
    sheet.append(header)
    cells = [_styled_cells(sheet, c, _text_cells(sheet, _column_values(frame[c])), styles, [0])
             for c in frame.columns]
    for row in zip(*cells, strict=True):
        sheet.append(row)
    return len(frame) + 3


# --- the sheets -----------------------------------------------------------------------------

def _pairs(items: list[tuple[str, object]]) -> pd.DataFrame:
    return pd.DataFrame({"item": [k for k, _ in items],
                         "value": pd.Series([v for _, v in items], dtype="object")})


def _summary_sheet(book, parts) -> None:
    findings, context, cost = parts["findings"], parts["context"], parts["cost"]
    manifest = context.get("manifest") or {}
    active = findings[~findings["exempted"].astype(bool)]
    gaps = manifest.get("gaps") or []
    items = [("tool", f"image-audit {__version__}", None),
             ("scope", json.dumps(manifest.get("scope") or manifest.get("source") or
                                  context.get("snapshot"), ensure_ascii=False), None),
             ("as of", context.get("as_of"), None),
             ("collected at", context.get("collected_at"), None),
             ("snapshot sha256", context.get("snapshot_sha256"), None),
             ("coverage gaps", "; ".join(map(str, gaps)) if gaps else "none", None),
             ("findings", len(findings), None), ("exempted", len(findings) - len(active), None)]
    items += [(f"{name} (rows)", len(frame), None) for name, frame in parts["tables"].items()]
    money = Styles(money=["amount"], currency=cost.currency if cost is not None else "USD")
    if cost is not None:
        totals, savings = parts["cost_totals"], parts["savings"]
        total = totals[totals["section"] == "total"].iloc[0]
        saved = savings[savings["key"] == "all savings"].iloc[0]
        items += [("monthly storage cost", cost.basis, total["monthly_cost"]),
                  ("unpriced cost lines", int(total["unpriced"]), None),
                  ("monthly savings (retention and staleness findings)", cost.basis,
                   saved["monthly_cost"])]
    frame = pd.DataFrame(items, columns=["item", "value", "amount"]).astype(
        {"value": "object", "amount": "float64"})
    sheet, row = write_table(book, "Summary", frame, money)
    by_severity = active["severity"].value_counts()
    severities = pd.DataFrame({"severity": list(SEVERITY_FILLS),
                               "findings": [int(by_severity.get(s, 0)) for s in SEVERITY_FILLS]})
    row += append_block(sheet, "Findings by severity", severities, Styles(severity="severity"))
    by_rule = active.groupby("rule_id").agg(title=("title", "first"),
                                            severity=("severity", "first"),
                                            findings=("rule_id", "size")).reset_index()
    if cost is not None:
        saving = parts["savings"].set_index("key")["monthly_cost"]
        by_rule["monthly_savings"] = by_rule["rule_id"].map(saving)
    rule_header = row + 3
    row += append_block(sheet, "Findings by rule", by_rule,
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
        "image_kind": kind,
        "reference": np.where(marketplace, urn + version.fillna("(none)").astype(str),
                              machines["image_id"].astype("object")),
        "resolves_to": resolves_to,
        "resolved_version": np.where(marketplace, exact, gallery_version),
        "version_from": np.where(marketplace, np.where(floating, "latest", "pinned"),
                                 resolved_from.astype("object")),
        "gallery_definition": machines["image_definition_id"],
        "subscription_id": machines["subscription_id"],
        "resource_group": machines["resource_group"], "resource_id": machines["arm_id"],
        "tags": machines["tags"]})
    frame["version_from"] = frame["version_from"].where(frame["version_from"].notna(), None)
    return frame


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
             ("command", context.get("command"))]
    items += [(f"rule pack {name}", digest)
              for name, digest in (context.get("rule_pack") or {}).items()]
    items += [(f"table {name} sha256", digest)
              for name, digest in (context.get("table_hashes") or {}).items()]
    write_table(book, "Manifest", _pairs(items))


def write_workbook(path: Path, findings: pd.DataFrame, tables: dict[str, pd.DataFrame],
                   context: dict, cost=None, usage: pd.DataFrame | None = None,
                   exemptions=None, write_only: bool = True) -> None:
    """Every sheet, in reading order, into `path` (the caller makes the write atomic)."""
    book = Workbook(write_only=write_only)
    if not write_only:
        book.remove(book.active)
    parts = {"findings": findings, "tables": tables, "context": context, "cost": cost,
             "usage": usage, "exemptions": exemptions}
    if cost is not None:
        parts["cost_totals"] = cost.totals()
        parts["savings"] = cost.savings(findings)
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
    book.save(path)
