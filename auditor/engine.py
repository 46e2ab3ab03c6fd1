"""The rules engine: load and validate the YAML rule pack and config, evaluate rules
vectorised over the estate's DataFrames, and build findings (one row each).

A rule is data. Most rules are a declarative condition over one table's columns; a rule that
needs joins names a plain function `auditor.checks.<family>:<name>(estate, params)` returning
the violating rows. Both end in the same code that builds findings.
"""

from __future__ import annotations

import copy
import importlib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from auditor import schema as schemas
from auditor.errors import AuditError, shown, shown_text
from auditor.estate import Estate, arrow_strings, distinct, take_rows
from auditor.normalize import TABLE_SCHEMAS

SEVERITIES = ["info", "low", "medium", "high", "critical"]
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

RULE_ID = re.compile(r"^[A-Z]{3}\d{3}$")
# Families whose machine findings leave out scale sets a platform manages and patches itself
# (AKS node pools, Databricks, Service Fabric managed clusters, Batch pools), unless the
# config's `include_platform_managed: true` asks for them.
PLATFORM_MANAGED_FAMILIES = {"PIN", "APR", "TAG", "GEN", "SHR"}
RULE_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

RESOURCE_TYPES = {
    "galleries": "Microsoft.Compute/galleries",
    "image_definitions": "Microsoft.Compute/galleries/images",
    "image_versions": "Microsoft.Compute/galleries/images/versions",
    "managed_images": "Microsoft.Compute/images",
    "machines": "Microsoft.Compute/virtualMachines",
    "version_regions": "Microsoft.Compute/galleries/images/versions",
    "scope": "Microsoft.Resources/subscriptions",
    "exemptions": "image-audit/exemption",
}

# Inputs other than the snapshot that rules may read. `exemptions` is the exemptions file as
# the exemption step presents it: one row per entry, whether it expired and what it matched.
INPUT_COLUMNS = {
    "exemptions": ["id", "arm_id", "name", "entry", "rule", "resource", "reason", "approved_by",
                   "expires", "expired", "matched"],
}


def table_columns(table: str) -> list[str]:
    """The columns a rule over `table` (a snapshot table or an input) may name."""
    return INPUT_COLUMNS[table] if table in INPUT_COLUMNS else TABLE_SCHEMAS[table].names

# The fingerprint scheme: rule id, ":", the lower-cased resource id, and "@region" for
# per-region rules. A history records it; when it changes, a new series of findings starts.
FINGERPRINT_VERSION = 1

FINDING_COLUMNS = [
    "rule_id", "rule_name", "severity", "title", "resource_type", "resource_id",
    "resource_name", "subscription_id", "resource_group", "location", "region", "message",
    "remediation", "evidence", "exempted", "exemption_reason", "status", "fingerprint",
    "monthly_cost",
]

# --- declarative conditions -------------------------------------------------------------

NO_VALUE_OPS = {"missing", "present"}


def _text(series: pd.Series, ignore_case: bool) -> pd.Series:
    if ignore_case and isinstance(series.dtype, pd.StringDtype):
        return series.str.lower()  # vectorised in Arrow; missing values stay missing
    text = series.astype("object").where(series.notna(), None)
    return text.map(lambda v: v.lower() if isinstance(v, str) else v) if ignore_case else text


def _fold(value, ignore_case: bool):
    if ignore_case and isinstance(value, str):
        return value.lower()
    if ignore_case and isinstance(value, list):
        return [v.lower() if isinstance(v, str) else v for v in value]
    return value


def _as_text(series: pd.Series) -> pd.Series:
    """Typed string columns compare as they are; anything else as objects."""
    return series if isinstance(series.dtype, pd.StringDtype) else series.astype("object")


def _days_before(estate: Estate, days) -> pd.Timestamp:
    return estate.as_of - pd.Timedelta(days=float(days))


OPS: dict[str, Callable] = {
    "eq": lambda s, v, e: s == v,
    "ne": lambda s, v, e: s != v,
    "in": lambda s, v, e: s.isin(v),
    "not-in": lambda s, v, e: ~s.isin(v),
    "lt": lambda s, v, e: s < v,
    "le": lambda s, v, e: s <= v,
    "gt": lambda s, v, e: s > v,
    "ge": lambda s, v, e: s >= v,
    "regex": lambda s, v, e: s.astype("object").map(
        lambda x, rx=re.compile(v): isinstance(x, str) and rx.search(x) is not None),
    "missing": lambda s, v, e: s.isna() | (_as_text(s) == ""),
    "present": lambda s, v, e: s.notna() & (_as_text(s) != ""),
    "older-than-days": lambda s, v, e: s < _days_before(e, v),
    "due-within-days": lambda s, v, e: (s >= e.as_of) & (s < e.as_of + pd.Timedelta(days=v)),
}


def _condition_columns(condition) -> list[str]:
    if "all" in condition or "any" in condition:
        return [c for sub in condition.get("all", condition.get("any")) for c in
                _condition_columns(sub)]
    if "not" in condition:
        return _condition_columns(condition["not"])
    return [condition["column"]]


def _resolve(value, params: dict):
    if isinstance(value, str) and value.startswith("$"):
        return params[value[1:]]
    if isinstance(value, list):
        return [_resolve(v, params) for v in value]
    return value


def _column(frame: pd.DataFrame, estate: Estate, name: str) -> pd.Series:
    if name.startswith("tag:"):
        return estate.tag(frame, name[4:])
    return frame[name]


def evaluate_condition(condition: dict, frame: pd.DataFrame, estate: Estate,
                       params: dict) -> pd.Series:
    """A boolean mask over `frame`: vectorised, missing values never match a comparison."""
    if "all" in condition:
        mask = pd.Series(True, index=frame.index)
        for sub in condition["all"]:
            mask &= evaluate_condition(sub, frame, estate, params)
        return mask
    if "any" in condition:
        mask = pd.Series(False, index=frame.index)
        for sub in condition["any"]:
            mask |= evaluate_condition(sub, frame, estate, params)
        return mask
    if "not" in condition:
        return ~evaluate_condition(condition["not"], frame, estate, params)
    op = condition["op"]
    ignore_case = bool(condition.get("ignore_case"))
    series = _column(frame, estate, condition["column"])
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Judged once per distinct value (and once for a missing one), then taken by code.
        codes = series.cat.codes.to_numpy()
        distinct = pd.Series(list(series.cat.categories) + [None], dtype=object)
        judged = evaluate_condition({**condition, "column": "_value"},
                                    pd.DataFrame({"_value": distinct}), estate, params)
        return pd.Series(judged.to_numpy(dtype=bool)[codes], index=frame.index)
    value = _fold(_resolve(condition.get("value"), params), ignore_case)
    if op not in NO_VALUE_OPS and op not in ("older-than-days", "due-within-days"):
        series = _text(series, ignore_case) if ignore_case else series
    result = OPS[op](series, value, estate)
    if op in ("ne", "not-in"):
        result = result & series.notna()
    return pd.Series(np.asarray(result.fillna(False) if hasattr(result, "fillna") else result,
                                dtype=bool), index=frame.index)


# --- rules and config ---------------------------------------------------------------------

@dataclass
class Rule:
    id: str
    name: str
    title: str
    severity: str
    resource: str | list[str]
    rationale: str
    remediation: str
    references: list[str]
    message: str
    params: dict = field(default_factory=dict)
    condition: dict | None = None
    python: str | None = None
    evidence: list[str] = field(default_factory=list)
    enabled: bool = True
    retired: bool = False
    per_region: bool = False
    file: str = ""
    severity_from_config: bool = False  # a config severity overrides a check's per-row one
    include_platform_managed: bool = False
    param_schemas: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)  # the pack's params, before any config

    def __post_init__(self):
        if not self.defaults:
            self.defaults = copy.deepcopy(self.params)

    @property
    def tables(self) -> list[str]:
        return self.resource if isinstance(self.resource, list) else [self.resource]

    @property
    def family(self) -> str:
        return self.id[:3]

    def check(self) -> Callable:
        module_name, _, func_name = self.python.partition(":")
        return getattr(importlib.import_module(module_name), func_name)


def rules_dir() -> Path:
    """The shipped rule pack: inside the installed package, or rules/ in a checkout."""
    try:
        from importlib.resources import files

        packaged = Path(str(files("auditor.rules")))
        if any(packaged.glob("*.yaml")):
            return packaged
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "rules"


def _fail(where: str, what: str):
    raise AuditError(f"{where}: {what}")


def _validate_condition(condition, where: str, table: str, params: dict) -> None:
    """What the rules schema cannot say: one group per condition, the table's columns,
    a value where the op needs one, params that exist, a regex that compiles."""
    groups = [k for k in ("all", "any", "not") if k in condition]
    if groups:
        if len(condition) != 1:
            _fail(where, f"condition mixes {', '.join(sorted(condition))}; use one of all/any/not")
        key = groups[0]
        subs = [condition[key]] if key == "not" else condition[key]
        for sub in subs:
            _validate_condition(sub, where, table, params)
        return
    column, op = condition.get("column"), condition.get("op")
    if column is None or op is None:
        _fail(where, "a condition needs a 'column' and an 'op' (or all/any/not)")
    if not column.startswith("tag:") and column not in table_columns(table):
        _fail(where, f"unknown column {shown(column)} in table '{table}'")
    if op not in NO_VALUE_OPS and "value" not in condition:
        _fail(where, f"op '{op}' needs a value")
    for ref in _param_refs(condition.get("value")):
        if ref not in params:
            _fail(where, f"condition refers to undefined param {shown('$' + ref)}")
    if op == "regex" and not _param_refs(condition["value"]):
        try:
            re.compile(str(condition["value"]))
        except re.error as exc:
            _fail(where, f"bad regex {shown(condition['value'])}: {exc}")


def _regex_params(condition) -> set[str]:
    """Params a condition uses as a regex: a config must give them one that compiles."""
    if condition is None:
        return set()
    if "all" in condition or "any" in condition:
        return {p for sub in condition.get("all", condition.get("any")) for p in _regex_params(sub)}
    if "not" in condition:
        return _regex_params(condition["not"])
    return set(_param_refs(condition.get("value"))) if condition.get("op") == "regex" else set()


def _param_refs(value) -> list[str]:
    if isinstance(value, str) and value.startswith("$"):
        return [value[1:]]
    if isinstance(value, list):
        return [r for v in value for r in _param_refs(v)]
    return []


def _template_fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError as exc:
        raise AuditError(f"bad message template {shown(template)}: {exc}") from None


def _parse_rule(entry: dict, file: str, index: int) -> Rule:
    """One rule the rules schema accepted, checked for what the schema cannot say."""
    where = f"{file}: {entry['id']}"
    tables = entry["resource"] if isinstance(entry["resource"], list) else [entry["resource"]]
    if len(tables) > 1 and "condition" in entry:
        _fail(where, "a declarative condition reads one table; name one 'resource'")
    params = entry.get("params") or {}
    param_schemas = entry.get("param_schemas") or {}
    for name, fragment in param_schemas.items():
        if name not in params:
            _fail(f"{where}: param_schemas.{name}", "names no param of the rule")
        schemas.check_schema(fragment, f"{where}: param_schemas.{name}")
    has_condition, has_python = "condition" in entry, "python" in entry
    if has_condition == has_python:
        _fail(where, "needs exactly one of 'condition' or 'python'")
    if has_condition:
        _validate_condition(entry["condition"], where, tables[0], params)
    else:
        target = entry["python"]
        module_name, _, func_name = target.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), func_name, None)
        except ImportError as exc:
            _fail(where, f"cannot import {module_name}: {exc}")
        if not callable(func):
            _fail(where, f"{target} is not a function")
    evidence = entry.get("evidence") or (
        _condition_columns(entry["condition"]) if has_condition else [])
    if has_condition:
        known = set(table_columns(tables[0])) | set(params)
        for name in _template_fields(entry["message"]) + list(evidence):
            if name not in known and not name.startswith("tag:"):
                _fail(where, f"message or evidence names unknown column or param {shown(name)}")
    else:
        _template_fields(entry["message"])
    return Rule(id=entry["id"], name=entry["name"], title=entry["title"],
                severity=entry["severity"], resource=entry["resource"],
                rationale=str(entry["rationale"]).strip(),
                remediation=str(entry["remediation"]).strip(),
                references=[str(r) for r in entry["references"]],
                message=str(entry["message"]).strip(), params=params,
                condition=entry.get("condition"), python=entry.get("python"),
                evidence=list(dict.fromkeys(evidence)), enabled=bool(entry.get("enabled", True)),
                retired=bool(entry.get("retired", False)),
                per_region=bool(entry.get("per_region", False)), file=file,
                param_schemas=param_schemas)


def _rule_label(document, path):
    """`XYZ001` (or `rule #3` before it has a good id) for a place inside a rule file."""
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        entry = document["rules"][path[1]]
        rule_id = entry.get("id") if isinstance(entry, dict) else None
        good = isinstance(rule_id, str) and RULE_ID.match(rule_id)
        return (rule_id if good else f"rule #{path[1] + 1}"), path[2:]
    return "", path


def vocabulary() -> dict[str, list[str]]:
    """The lists the schemas take from the code."""
    return {"severities": SEVERITIES, "ops": list(OPS),
            "tables": list(TABLE_SCHEMAS) + [t for t in INPUT_COLUMNS if t not in TABLE_SCHEMAS]}


def file_schema(name: str, rules: list[Rule] | None = None) -> dict:
    """The JSON Schema of a config, rule or exemptions file (`image-audit schema NAME`);
    the config's with each rule of `rules` (default: the shipped pack) and its params."""
    if name not in schemas.NAMES:
        raise AuditError(f"unknown schema {shown(name)} (one of {', '.join(schemas.NAMES)})")
    schema = schemas.shipped(name, vocabulary())
    if name == "config":
        per_rule = schema["properties"]["rules"]
        settings = schema["definitions"]["rule_settings"]
        per_rule["properties"] = {}
        for rule in load_rules() if rules is None else rules:
            one = copy.deepcopy(settings)
            one["description"] = f"{rule.id} ({rule.severity}): {rule.title}"
            one["properties"]["params"] = schemas.params_schema(
                rule.defaults, rule.param_schemas, _regex_params(rule.condition))
            per_rule["properties"][rule.id] = one
        per_rule["additionalProperties"] = False
    return schema


# A config, exemptions or rule file is small and shallow. These bounds refuse a hostile one
# (an alias bomb: 455 bytes that expand to a billion nodes; a list nested ten thousand deep)
# while it is parsed, before anything walks, copies or prints the values.
YAML_MAX_BYTES = 64 * 2**20
YAML_MAX_DEPTH = 64
YAML_MAX_ALIAS_NODES = 10_000


class _YamlLimit(yaml.YAMLError):
    def __init__(self, problem: str, mark):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than YAML_MAX_DEPTH, an alias to a node that
    contains it, and aliases that together stand for more than YAML_MAX_ALIAS_NODES nodes.
    Mapping keys must be text (a key of `yes` or `1` would silently become true or 1)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth, self._alias_nodes = 0, 0
        self._open_anchors: set[str] = set()
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise _YamlLimit(f"alias *{event.anchor} refers to a node that contains it",
                                 event.start_mark)
            node = super().compose_node(parent, index)
            self._alias_nodes += self._size(node)
            if self._alias_nodes > YAML_MAX_ALIAS_NODES:
                raise _YamlLimit(f"aliases expand to more than {YAML_MAX_ALIAS_NODES:,} nodes "
                                 "(refused: an alias bomb?)", event.start_mark)
            return node
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            raise _YamlLimit(f"nested deeper than {YAML_MAX_DEPTH} levels", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)

    def _size(self, node) -> int:
        """Nodes `node` stands for, aliases expanded (depth is bounded, so recursion is)."""
        size = self._sizes.get(id(node))
        if size is None:
            if isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._size(item) for item in node.value)
            else:
                size = 1
            self._sizes[id(node)] = size
        return size

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep=deep)
        for key in mapping:
            if not isinstance(key, str):
                raise _YamlLimit(f"key {shown(key)} must be text (quote it)", node.start_mark)
        return mapping


def load_yaml(path: Path, loader: type = BoundedLoader):
    """One YAML document, or a one-line AuditError naming the file (and line) that says why."""
    if not issubclass(loader, BoundedLoader):
        raise TypeError("YAML is read with BoundedLoader or a subclass of it")
    try:
        if Path(path).stat().st_size > YAML_MAX_BYTES:
            raise AuditError(f"{path}: larger than {YAML_MAX_BYTES // 2**20} MiB; refused")
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=loader)  # a SafeLoader, bounded
    except FileNotFoundError:
        raise AuditError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise AuditError(f"{path}: invalid YAML{at}: {_one_line(problem)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: cannot read ({_one_line(str(exc))})") from None
    except (ValueError, OverflowError) as exc:  # a value YAML cannot build, like 2027-02-30
        raise AuditError(f"{path}: invalid YAML value: {_one_line(str(exc))}") from None
    except RecursionError:
        raise AuditError(f"{path}: invalid YAML: nested too deeply") from None


def _one_line(text: str) -> str:
    return shown_text(" ".join(str(text).split()), 200)


def load_rules(directory: Path | None = None) -> list[Rule]:
    """Every rule of the pack, validated; errors name the file and the rule."""
    directory = Path(directory) if directory else rules_dir()
    rules: dict[str, Rule] = {}
    names: dict[str, str] = {}
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise AuditError(f"{directory}: no rule files (*.yaml)")
    schema = schemas.shipped("rules", vocabulary())
    for path in files:
        data = load_yaml(path)
        schemas.validate(data, schema, path.name, locate=_rule_label)
        for index, entry in enumerate(data["rules"]):
            rule = _parse_rule(entry, path.name, index)
            if rule.id in rules:
                raise AuditError(f"{path.name}: {rule.id}: duplicate rule id "
                                 f"(also in {rules[rule.id].file})")
            if rule.name in names:
                raise AuditError(f"{path.name}: {rule.id}: duplicate rule name '{rule.name}' "
                                 f"(also {names[rule.name]})")
            rules[rule.id], names[rule.name] = rule, rule.id
    return sorted(rules.values(), key=lambda r: r.id)


def apply_config(rules: list[Rule], config: dict | None, where: str = "config") -> list[Rule]:
    """Rules with the config's per-rule enabled/severity/params applied. The config is
    validated whole first (`file_schema("config")`: every key, every param's type and
    range), so a value that would fail later is named now, by file and key path. A check
    module's `params_problem` judges its own params too: before the schema, so a param renamed
    since an earlier version is named with what replaced it, and after the values are set."""
    by_id = {rule.id: copy.deepcopy(rule) for rule in rules}
    per_rule = (config or {}).get("rules") if isinstance(config, dict) else None
    if isinstance(per_rule, dict):
        for rule_id, settings in per_rule.items():
            params = settings.get("params") if isinstance(settings, dict) else None
            problem = _params_problem(by_id[rule_id], "renamed_param", params) \
                if rule_id in by_id and isinstance(params, dict) else None
            if problem:
                _fail(f"{where}: rules.{rule_id}", problem)
    schemas.validate(config, file_schema("config", rules), where)
    for rule_id, settings in ((config or {}).get("rules") or {}).items():
        rule = by_id[rule_id]
        settings = settings or {}
        rule.enabled = settings.get("enabled", rule.enabled)
        if "severity" in settings:
            rule.severity = settings["severity"]
            rule.severity_from_config = True
        rule.params.update(copy.deepcopy(settings.get("params") or {}))
        problem = _params_problem(rule)
        if problem:
            _fail(f"{where}: rules.{rule_id}", problem)
    if "include_platform_managed" in (config or {}):
        for rule in by_id.values():
            rule.include_platform_managed = config["include_platform_managed"]
    return [by_id[rule.id] for rule in rules]


def _params_problem(rule: Rule, judge_name: str = "params_problem",
                    params: dict | None = None) -> str | None:
    """What the rule's check module says is wrong with its params (`params_problem`, or
    `renamed_param` on the config's own, unvalidated params)."""
    if not rule.python:
        return None
    module = importlib.import_module(rule.python.partition(":")[0])
    judge = getattr(module, judge_name, None)
    return judge(rule.params if params is None else params) if judge else None


def load_config(path: Path | None) -> dict:
    if path is None:
        return {}
    data = load_yaml(Path(path))
    return {} if data is None else data


# --- findings ------------------------------------------------------------------------------

def render(template: str, frame: pd.DataFrame, params: dict) -> pd.Series:
    """Fill a message template from each row's columns (or the rule's params), vectorised."""
    out = pd.Series("", index=frame.index, dtype="object")
    for literal, name, _spec, _ in string.Formatter().parse(template):
        out = out + literal
        if not name:
            continue
        if name in frame.columns:
            column = frame[name]
            if isinstance(column.dtype, pd.StringDtype):
                text = column.fillna("(none)").astype("object")
            elif column.dtype != object or pd.api.types.infer_dtype(column) == "string":
                # Shown once per distinct value (categories, dates, numbers repeat).
                codes, uniques = pd.factorize(column)
                display = np.array([_display(v) for v in uniques] + ["(none)"], dtype=object)
                text = pd.Series(display[codes], index=frame.index)
            else:
                text = column.astype("object").map(_display).astype(str)
        elif name in params:
            text = _display(params[name])
        else:
            raise AuditError(f"message template names unknown column or param '{name}'")
        if _spec and "{}" in _spec:
            # `{column: (currently {})}`: the text around `{}` with the value in it, or
            # nothing where the value is missing (never "(currently (none))").
            before, _, after = _spec.partition("{}")
            shown = before + text + after
            if name in frame.columns:
                value = frame[name]
                missing = value.isna() | (value.astype("object") == "")
                text = shown.where(~missing.to_numpy(dtype=bool), "")
            else:
                text = "" if params[name] in (None, "") else shown
        out = out + text
    return out


def _display(value) -> str:
    if value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value)):
        return "(none)"
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _evidence(rows: pd.DataFrame, columns: list[str], estate: Estate) -> pd.Series:
    if not columns or rows.empty:
        return pd.Series("{}", index=rows.index, dtype="object")
    data = pd.DataFrame(index=rows.index)
    for column in columns:
        data[column] = estate.tag(rows, column[4:]) if column.startswith("tag:") else rows[column]
    distinct = _distinct_rows(data)
    if distinct is not None:  # evidence repeats (a version, its age): each text made once
        first, code = distinct
        return pd.Series(_json_lines(data.iloc[first])[code], index=rows.index, dtype="object")
    return pd.Series(_json_lines(data), index=rows.index, dtype="object")


def _json_lines(data: pd.DataFrame) -> np.ndarray:
    """One compact JSON object per row. pandas writes "/" as "\\/" (legal JSON, but ids and
    URLs then read `\\/subscriptions\\/...` in the workbook and findings.csv): every "/" is
    escaped, so each "\\/" is that escape and never the end of an escaped backslash."""
    text = data.to_json(orient="records", lines=True, date_format="iso", date_unit="s")
    text = text.replace("\\/", "/")
    return np.array(text.splitlines() if text else [], dtype=object)


def _distinct_rows(data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(first row of each distinct row, each row's distinct number), or None when rows
    mostly differ: then there is nothing to share."""
    if len(data) < 4096:
        return None
    key = np.zeros(len(data), dtype=np.int64)
    for column in data.columns:
        codes, uniques = pd.factorize(data[column], use_na_sentinel=False)
        key, seen = pd.factorize(key * (len(uniques) + 1) + codes)
        if len(seen) > len(data) // 4:
            return None
    return distinct(key)


def _violations(rule: Rule, estate: Estate, params: dict) -> pd.DataFrame:
    table = estate.tables[rule.tables[0]]
    if rule.condition is not None:
        return table[evaluate_condition(rule.condition, table, estate, params)]
    rows = rule.check()(estate, params)
    if "id" not in rows.columns:
        raise AuditError(f"{rule.id}: check {rule.python} returned rows without an 'id'")
    if "severity" in rows.columns:
        bad = set(rows["severity"].dropna().unique()) - set(SEVERITIES)
        if bad or rows["severity"].isna().any():
            raise AuditError(f"{rule.id}: check {rule.python} returned rows with severity "
                             f"{sorted(map(str, bad)) or 'missing'} (one of {', '.join(SEVERITIES)})")
    if rule.per_region and not rows.empty and "region" not in rows.columns:
        raise AuditError(f"{rule.id}: per_region rule's check {rule.python} returned rows "
                         "without a 'region' (its findings would share one fingerprint)")
    missing = [c for c in ("arm_id", "name", "subscription_id", "resource_group", "location")
               if c not in rows.columns and c in table.columns]
    if missing and not rows.empty:
        positions = _own_positions(rows, table)
        if positions is not None:
            # Rows a check kept from the table itself (or from `estate.usage`, which has
            # the machines' index): their index is their position, no id lookup needed.
            rows = rows.assign(**{column: table[column].array.take(positions)
                                  for column in missing})
        elif pd.api.types.is_string_dtype(rows["id"]):
            # By position: joining on the id hashes a million-row table once per rule.
            first = estate.identity(rule.tables[0], ["id"] + missing)
            extra = take_rows(first[missing], estate.row_positions(rule.tables[0], rows["id"]))
            rows = rows.assign(**{column: extra[column].array for column in missing})
        else:
            extra = table.drop_duplicates("id").set_index("id")[missing]
            rows = rows.join(extra, on="id")
    return rows.reset_index(drop=True)


def _own_positions(rows: pd.DataFrame, table: pd.DataFrame) -> np.ndarray | None:
    """`rows.index` as positions in `table` when that is what it is: a RangeIndex table,
    and every row's id equal to the id at that position."""
    if not isinstance(table.index, pd.RangeIndex) or table.index.start != 0 \
            or table.index.step != 1 or not pd.api.types.is_integer_dtype(rows.index):
        return None
    positions = rows.index.to_numpy()
    if len(positions) and (positions.min() < 0 or positions.max() >= len(table)):
        return None
    same = table["id"].array.take(positions) == rows["id"].array
    return positions if bool(np.asarray(same, dtype=bool).all()) else None


def _platform_managed_left_out(rule: Rule, rows: pd.DataFrame, estate: Estate) -> pd.DataFrame:
    """`rows` less the machines a platform manages, for the families that leave them out."""
    if rule.family not in PLATFORM_MANAGED_FAMILIES or rule.include_platform_managed \
            or rule.tables[0] != "machines" or rows.empty:
        return rows
    managed = estate.platform_managed
    managed_ids = estate.machines["id"][managed.notna().to_numpy(dtype=bool)]
    if managed_ids.empty:
        return rows
    return rows[~rows["id"].isin(managed_ids).to_numpy(dtype=bool)]


def _members_left_to_their_set(rule: Rule, rows: pd.DataFrame, estate: Estate) -> pd.DataFrame:
    """`rows` less the Flexible scale set members whose set the same rule reports and whose
    image reference is the set's model (`Estate.judged_through_set`): one cause, one
    finding, on the set, whose row says in `member_vms` how many members it answers for."""
    if rule.tables[0] != "machines" or rows.empty:
        return rows
    through = estate.judged_through_set
    if not through.notna().any():
        return rows
    at = estate.row_positions("machines", rows["id"])
    set_of = np.append(through.to_numpy(dtype=object), None)[at]  # -1 (not a machine): None
    dropped = pd.notna(set_of) & pd.Index(set_of).isin(pd.Index(rows["id"].astype(object)))
    if not dropped.any():
        return rows
    counts = pd.Series(set_of[dropped]).value_counts()
    kept = rows[~dropped]
    members = counts.reindex(kept["id"].astype(object).to_numpy()).fillna(0).astype("int64")
    return kept.assign(member_vms=members.to_numpy())


def _with_members(messages: pd.Series, rows: pd.DataFrame) -> pd.Series:
    """A scale set's message says how many of its members it answers for."""
    if "member_vms" not in rows.columns:
        return messages
    count = rows["member_vms"]
    said = messages.astype(object) + " Its " + count.astype(str) \
        + np.where(count == 1, " member VM in the snapshot, on the same image, is",
                   " member VMs in the snapshot, on the same image, are") \
        + " covered by this finding."
    return messages.where(count == 0, said)


def findings_for(rule: Rule, estate: Estate) -> pd.DataFrame:
    params = rule.params
    rows = _members_left_to_their_set(rule, _violations(rule, estate, params), estate)
    rows = _platform_managed_left_out(rule, rows, estate)
    if rows.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    region = rows["region"] if "region" in rows.columns else pd.Series(None, index=rows.index)
    resource_id = rows["arm_id"] if "arm_id" in rows.columns else rows["id"]
    messages = rows["message"] if "message" in rows.columns else render(rule.message, rows, params)
    messages = _with_members(messages, rows)
    region_text = region.astype("object").where(region.notna(), None)
    fingerprint = rule.id + ":" + rows["id"].astype(str).str.lower()
    fingerprint = fingerprint.where(region_text.isna(), fingerprint + "@" + region_text.astype(str))
    if "resource_type" in rows.columns:
        resource_type = rows["resource_type"]
    elif rule.tables[0] == "machines" and "kind" in rows.columns:
        resource_type = rows["kind"].map({"vm": "Microsoft.Compute/virtualMachines",
                                          "vmss": "Microsoft.Compute/virtualMachineScaleSets"})
    else:
        resource_type = RESOURCE_TYPES[rule.tables[0]]
    out = pd.DataFrame({
        "rule_id": rule.id, "rule_name": rule.name,
        # A check may judge each row's severity (a `severity` column); a severity the config
        # sets for the rule still applies to all of them.
        "severity": rows["severity"] if "severity" in rows.columns
        and not rule.severity_from_config else rule.severity,
        "title": rule.title, "resource_type": resource_type, "resource_id": resource_id,
        "resource_name": rows.get("name"), "subscription_id": rows.get("subscription_id"),
        "resource_group": rows.get("resource_group"), "location": rows.get("location"),
        "region": region_text, "message": messages, "remediation": rule.remediation,
        "evidence": _evidence(rows, rule.evidence, estate), "exempted": False,
        "exemption_reason": None, "status": None, "fingerprint": fingerprint,
        "monthly_cost": np.nan,  # the flagged resource's storage cost, filled by auditor.cost
    }, index=rows.index)
    return out[FINDING_COLUMNS]


def evaluate(estate: Estate, rules: list[Rule]) -> pd.DataFrame:
    """Every enabled rule over the estate: one findings frame, in a deterministic order.
    A rule over an input the estate was not given (no exemptions file) has nothing to judge."""
    frames = [findings_for(rule, estate) for rule in rules if rule.enabled and not rule.retired
              and all(table in estate.tables for table in rule.tables)]
    return sort_findings(frames)


def sort_findings(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Findings frames as one, most severe first, then by rule and fingerprint (a stable
    sort). Frames of one rule each, as `evaluate` makes them, are sorted one by one and
    concatenated in order: a million findings are never copied twice."""
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=FINDING_COLUMNS).astype({"exempted": bool})
    keys = [_one_rule(f) for f in frames]
    if None not in keys and len(set(keys)) == len(keys):
        ordered = sorted(zip(keys, frames, strict=True), key=lambda pair: pair[0])
        return pd.concat([_by_fingerprint(f) for _, f in ordered], ignore_index=True)
    findings = pd.concat(frames, ignore_index=True)
    keys = pa.table({
        "rank": pa.array(findings["severity"].map(SEVERITY_RANK).to_numpy(dtype=np.int64)),
        "rule": arrow_strings(findings["rule_id"]),
        "fingerprint": arrow_strings(findings["fingerprint"])})
    order = pc.sort_indices(keys, sort_keys=[("rank", "descending"), ("rule", "ascending"),
                                             ("fingerprint", "ascending")])  # stable
    return findings.take(order.to_numpy()).reset_index(drop=True)


def _one_rule(frame: pd.DataFrame) -> tuple[int, str] | None:
    """(-severity rank, rule id) when the frame holds one rule at one severity."""
    rule, severity = frame["rule_id"], frame["severity"]
    if (rule != rule.iat[0]).any() or (severity != severity.iat[0]).any():
        return None
    return -SEVERITY_RANK[severity.iat[0]], rule.iat[0]


def _by_fingerprint(frame: pd.DataFrame) -> pd.DataFrame:
    order = pc.sort_indices(arrow_strings(frame["fingerprint"]))  # stable
    return frame.take(order.to_numpy())
