"""report.html: one self-contained page (no network, no fonts, no CDN) for people without
Excel and for CI artifacts. The summary, coverage, cost and exemptions are rendered by a
Jinja2 template with autoescape on, so they read (and print) without script; the findings
travel as JSON in a `<script type="application/json">` (Jinja's `tojson`, ASCII only) and a
small script of the template's own shows them in a table that draws only the visible rows.

Every figure comes from the functions the other reports use: `summary(findings)`, the run
context's `coverage`, `savings` and `baseline`, and `cost.totals()` / `cost.savings()`.
"""

from __future__ import annotations

import base64
import gzip
import json
from importlib.resources import files
from pathlib import Path

import jinja2
import markupsafe
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditor import __version__
from auditor.engine import SEVERITIES
from auditor.safetext import shown

# Columns the findings table shows or filters on, and those shown when a row is opened.
# Columns with few distinct values travel as an index into a list of those values.
CODED_COLUMNS = ["severity", "rule_id", "title", "remediation", "resource_type",
                 "subscription_id", "resource_group", "location", "status", "exemption_reason"]
TEXT_COLUMNS = ["resource_name", "message"]
CHART_BARS = 12  # bars per cost chart; the table below each chart lists every row

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("auditor", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
# tojson escapes <, >, & and ' as \u00XX; ASCII output also escapes U+2028, U+2029 and lone
# surrogates, so the embedded JSON is plain ASCII whatever Azure returned.
_TEMPLATES.policies["json.dumps_kwargs"] = {"ensure_ascii": True, "separators": (",", ":"),
                                            "allow_nan": False}
_TEMPLATES.filters["shown"] = lambda value: "" if value is None else shown(value)


def _texts(column: pd.Series) -> list:
    """A text column as a list, missing values None."""
    text = column.astype("object")
    return text.where(text.notna(), None).tolist()


def _coded(column: pd.Series) -> dict:
    codes, values = pd.factorize(column, use_na_sentinel=True)  # Arrow text: no copy to objects
    return {"values": [str(v) for v in values], "codes": codes.tolist()}


def findings_data(findings: pd.DataFrame) -> dict:
    """The findings column by column (about half the bytes of one object per finding).
    A resource id travels as its parent path (shared by many findings, coded) and its last
    segment; the evidence travels apart (`evidence_data`)."""
    columns = {name: _coded(findings[name]) for name in CODED_COLUMNS if name in findings}
    columns.update({name: _texts(findings[name]) for name in TEXT_COLUMNS if name in findings})
    parts = findings["resource_id"].astype("object").str.extract(r"^(.*/)?([^/]*)$")
    columns["resource_parent"] = _coded(parts[0])
    columns["resource_leaf"] = _texts(parts[1])
    columns["exempted"] = findings["exempted"].astype(bool).astype(np.int8).tolist()
    if "monthly_cost" in findings:
        cost = findings["monthly_cost"].astype(float).round(4)
        columns["monthly_cost"] = cost.astype("object").where(cost.notna(), None).tolist()
    return {"count": int(len(findings)), "columns": columns}


def evidence_data(findings: pd.DataFrame) -> str:
    """Each finding's evidence (pandas' escaped slashes undone) as a gzipped JSON list in
    base64: evidence is the largest column and is read one finding at a time, so the page
    unpacks it (with the browser's own DecompressionStream) when a finding is first opened."""
    evidence = findings["evidence"].astype("object")
    try:
        texts = pc.replace_substring(pa.array(evidence, pa.string(), from_pandas=True),
                                     "\\/", "/").to_pylist()
    except (pa.ArrowException, UnicodeError):  # lone surrogates: Arrow text cannot hold them
        texts = evidence.where(evidence.notna(), None).str.replace("\\/", "/", regex=False).tolist()
    packed = json.dumps(texts, ensure_ascii=True, separators=(",", ":"))
    return base64.b64encode(gzip.compress(packed.encode("ascii"), compresslevel=6,
                                          mtime=0)).decode("ascii")


def _gallery_label(key: str) -> dict:
    """A gallery total's key (its ARM id) as name, resource group and subscription."""
    parts = key.split("/")
    lowered = [p.lower() for p in parts]

    def after(segment: str) -> str:
        return parts[lowered.index(segment) + 1] if segment in lowered[:-1] else ""
    return {"name": after("galleries") or key, "resource_group": after("resourcegroups"),
            "subscription": after("subscriptions")}


def _bars(rows: list[dict], value: str = "monthly_cost", ranked: bool = True) -> list[dict]:
    """Bar lengths (share of the largest) for the CHART_BARS largest rows, largest first
    (or all rows in their order)."""
    if ranked:
        rows = sorted(rows, key=lambda r: -(r[value] or 0))[:CHART_BARS]
    top = max([r[value] or 0 for r in rows] + [0])
    return [{**r, "share": (r[value] or 0) / top if top else 0} for r in rows]


def cost_data(cost, findings: pd.DataFrame, plan=None) -> dict | None:
    """cost.totals() and cost.savings() by section, as they are."""
    if cost is None:
        return None
    totals = pd.concat([cost.totals(), cost.savings(findings, plan)], ignore_index=True)
    totals = totals.astype("object").where(totals.notna(), None)
    sections: dict[str, list[dict]] = {}
    for row in totals.to_dict("records"):
        if row["section"] == "gallery":
            row.update(_gallery_label(row["key"]) if row["key"].startswith("/") else
                       {"name": row["key"], "resource_group": "", "subscription": ""})
        sections.setdefault(row["section"], []).append(row)
    total = sections["total"][0]
    return {"currency": cost.currency, "basis": cost.basis, "total": total,
            "sections": sections,
            "team_bars": _bars(sections.get("team", [])),
            "gallery_bars": _bars(sections.get("gallery", []))}


def exemption_rows(exemptions, findings: pd.DataFrame, as_of) -> list[dict]:
    """The exemptions file's entries with days left at as-of, or, without the file, the
    exempted findings by rule and reason, with how many each holds."""
    if exemptions is not None and len(exemptions):
        frame = pd.DataFrame(exemptions)
        expires = pd.to_datetime(frame["expires"].astype(str), errors="coerce")
        day = pd.Timestamp(as_of).tz_convert(None).normalize() if as_of else None
        frame["expires"] = expires.dt.strftime("%Y-%m-%d")
        frame["days_left"] = (expires - day).dt.days if day is not None else None
        return frame.astype("object").where(frame.notna(), None).to_dict("records")
    exempted = findings["exempted"].astype(bool)
    grouped = pd.DataFrame({"rule": findings["rule_id"].astype(str)[exempted],
                            "reason": findings["exemption_reason"].astype(str)[exempted]})
    counted = grouped.value_counts(sort=False).sort_index()
    return [{"rule": rule, "reason": reason, "findings": int(n)}
            for (rule, reason), n in counted.items()]


def _rule_rows(findings: pd.DataFrame, counts: dict) -> list[dict]:
    """Each rule with findings: its severity and title (from its findings), open and exempted
    counts (from `summary`), most severe first."""
    rules = findings.drop_duplicates("rule_id").set_index("rule_id")
    rank = {severity: -i for i, severity in enumerate(SEVERITIES)}
    rows = [{"rule_id": rule_id, "severity": str(rules.at[rule_id, "severity"]),
             "title": str(rules.at[rule_id, "title"]),
             "open": counts["open_by_rule"].get(rule_id, 0),
             "exempted": counts["exempted_by_rule"].get(rule_id, 0)}
            for rule_id in sorted({*counts["open_by_rule"], *counts["exempted_by_rule"]})]
    return sorted(rows, key=lambda row: rank.get(row["severity"], 1))


def report_data(findings: pd.DataFrame, context: dict, *, cost=None, plan=None,
                exemptions=None) -> dict:
    """Everything the page shows. The context's `trend` (the runs of the history the audit
    was appended to) is optional: the page shows its section only when there is one."""
    from auditor.report import summary

    counts = summary(findings)
    return {
        "tool_version": __version__,
        "severities": list(reversed(SEVERITIES)),
        "summary": counts,
        "severity_bars": _bars([{"key": k, "count": v} for k, v in
                                counts["open_by_severity"].items()], "count", ranked=False),
        "context": {key: context.get(key) for key in (
            "snapshot", "snapshot_sha256", "collected_at", "as_of", "command", "cost_basis",
            "exemptions", "exemptions_sha256")},
        "coverage": context.get("coverage"),
        "savings": context.get("savings"),
        "baseline": context.get("baseline"),
        "cost": cost_data(cost, findings, plan),
        "exemptions": exemption_rows(exemptions, findings, context.get("as_of")),
        "trend": context.get("trend"),
        "rules": _rule_rows(findings, counts),
        "findings": findings_data(findings),
        "evidence": evidence_data(findings),
    }


def render_html(data: dict) -> str:
    script = (files("auditor") / "templates" / "report.js").read_text(encoding="utf-8")
    return _TEMPLATES.get_template("report.html.j2").render(
        data={key: data[key] for key in data if key != "evidence"},
        page={key: data[key] for key in data if key not in ("findings", "evidence")},
        script=markupsafe.Markup(script), evidence=data["evidence"])


def write_html(path: Path, findings: pd.DataFrame, context: dict, *, cost=None, plan=None,
               exemptions=None) -> None:
    """report.html at `path` (the caller makes the write atomic)."""
    data = report_data(findings, context, cost=cost, plan=plan, exemptions=exemptions)
    # The JSON is ASCII; the rendered text may hold lone surrogates, which UTF-8 cannot.
    Path(path).write_text(render_html(data), encoding="utf-8", errors="backslashreplace")


def _element_text(page: str, opening: str) -> str:
    start = page.index(opening) + len(opening)
    return page[start:page.index("</script>", start)]


def embedded_data(page: str) -> dict:
    """The JSON a report.html carries, read back (for tests and tooling)."""
    return json.loads(_element_text(page, '<script type="application/json" id="report-data">'))


def embedded_evidence(page: str) -> list:
    """The evidence of each finding a report.html carries, read back."""
    packed = _element_text(page, '<script type="application/octet-stream" id="evidence-data">')
    return json.loads(gzip.decompress(base64.b64decode(packed)))
