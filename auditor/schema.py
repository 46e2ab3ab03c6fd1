"""JSON Schemas of the files people write (config, rule pack, exemptions) and one-line errors
from them.

Each format is described once, in auditor/data/schemas/<name>.json (JSON Schema draft-07,
which editors' YAML plugins understand). Lists the code owns (severities, tables, ops) are
filled in where a schema says `"x-enum-from"`; the config's per-rule params are derived from
the rule pack's defaults (`params_schema`). Validation reports the first mistake in document
order as `FILE: KEY PATH: what was expected, got VALUE`, one line, the value shortened.

Keywords of our own, which validators and editors ignore: `x-expected` (how a message names
what belongs there), `x-unknown` (what an unexpected key is called), `x-enum-from`.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from importlib.resources import files

from jsonschema import Draft7Validator, FormatChecker, validators
from jsonschema.exceptions import SchemaError

from auditor.errors import AuditError, shown, shown_text

NAMES = ("config", "rules", "exemptions")

# Bounds of a numeric param by what its name says it counts: far beyond any sensible value,
# yet inside what pandas can add to a date (about 292 years either side of 1970).
UNIT_MAXIMUM = {"_days": 36_500, "_hours": 876_000}
COUNT_MAXIMUM = 1_000_000


def _finite_number(checker, instance) -> bool:
    if not Draft7Validator.TYPE_CHECKER.is_type(instance, "number"):
        return False
    return isinstance(instance, int) or math.isfinite(instance)


def _finite_integer(checker, instance) -> bool:
    return Draft7Validator.TYPE_CHECKER.is_type(instance, "integer") and _finite_number(
        checker, instance)


# `.inf` and `.nan` are YAML numbers; no setting means them, and NaN passes every bound.
Validator = validators.extend(Draft7Validator, type_checker=Draft7Validator.TYPE_CHECKER.redefine_many(
    {"number": _finite_number, "integer": _finite_integer}))


def shipped(name: str, vocabulary: dict[str, list[str]]) -> dict:
    """The schema file `name`, with the code's lists filled in."""
    text = files("auditor.data").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    return _fill(json.loads(text), vocabulary)


def _fill(node, vocabulary):
    if isinstance(node, dict):
        node = {key: _fill(value, vocabulary) for key, value in node.items()}
        if "x-enum-from" in node:
            node["enum"] = list(vocabulary[node["x-enum-from"]])
        return node
    if isinstance(node, list):
        return [_fill(value, vocabulary) for value in node]
    return node


def param_schema(name: str, default, regex: bool = False) -> dict:
    """A param's schema from its default: same type; lists of text; numbers finite, not
    negative (when the default is not) and at most UNIT_MAXIMUM/COUNT_MAXIMUM either side;
    a mapping's known keys as in the default and other keys like its values. A default of
    null says nothing: such a param needs `param_schemas`."""
    if isinstance(default, bool):
        schema = {"type": "boolean"}
    elif isinstance(default, (int, float)):
        maximum = next((limit for suffix, limit in UNIT_MAXIMUM.items() if name.endswith(suffix)),
                       COUNT_MAXIMUM)
        schema = {"type": "integer" if isinstance(default, int) else "number",
                  "minimum": 0 if default >= 0 else -maximum, "maximum": maximum}
    elif isinstance(default, str):
        schema = {"type": "string"}
        if regex:
            schema.update({"format": "regex", "x-expected": "a regular expression"})
    elif isinstance(default, list):
        # The items are typed like the first; the default belongs to the list, not its items.
        item = param_schema(name, default[0]) if default else {"type": "string"}
        schema = {"type": "array", "items": {k: v for k, v in item.items() if k != "default"}}
    elif isinstance(default, dict):
        values = [param_schema(name, value) for value in default.values()]
        kinds = [{k: v for k, v in value.items() if k != "default"} for value in values]
        schema = {"type": "object", "x-unknown": "unknown key",
                  "properties": {key: value for key, value in zip(default, values, strict=True)},
                  "additionalProperties": kinds[0] if kinds and all(
                      kind == kinds[0] for kind in kinds) else False}
    else:
        return {}
    return {**schema, "default": copy.deepcopy(default)}


def params_schema(params: dict, declared: dict, regex_params: set[str]) -> dict:
    """The schema of one rule's `params` in a config: each param as its default says,
    with the rule's `param_schemas` keywords laid over it; no other params."""
    properties = {}
    for name, default in params.items():
        properties[name] = {**param_schema(name, default, regex=name in regex_params),
                            **declared.get(name, {})}
    return {"type": ["object", "null"], "x-unknown": "unknown param",
            "properties": properties, "additionalProperties": False}


def check_schema(schema: dict, where: str) -> None:
    """A schema fragment from a rule file must itself be valid."""
    try:
        Validator.check_schema(schema)
    except SchemaError as exc:
        raise AuditError(f"{where}: not a valid JSON Schema ({shown_text(exc.message)})") from None


# --- validation and its one-line message ----------------------------------------------------

NOUNS = {"string": "text", "array": "a list", "object": "a mapping", "integer": "a whole number",
         "number": "a finite number", "boolean": "true or false", "null": "nothing"}
# Which of several mistakes at one place is named: the one that says most about the value.
PRIORITY = {"type": 0, "additionalProperties": 1, "required": 2, "enum": 3}
MAX_ERRORS = 1000


def validate(document, schema: dict, file: str, locate=None) -> None:
    """Raise a one-line AuditError for the first mistake in document order, if any.
    `locate(document, path)` may name a place better than its key path (like `entry 3
    (PIN001)` for an exemption), returning (label, the rest of the path)."""
    errors = list(itertools.islice(Validator(schema, format_checker=FormatChecker())
                                   .iter_errors(document), MAX_ERRORS))
    if not errors:
        return
    error = _first(document, errors)
    while error.validator in ("anyOf", "oneOf") and not error.schema.get("x-expected"):
        # None of the shapes fits: name the mistake within the shape of the value's type.
        closer = [e for e in error.context if e.validator != "type"]
        if not closer:
            break
        error = _first(document, closer)
    path = list(error.absolute_path)
    what = _what(error)
    if error.validator == "additionalProperties":
        extra = _extra_keys(error)
        path.append(extra[0])
        what = _unknown(error, extra[0])
    label, rest = locate(document, path) if locate else ("", path)
    where = ": ".join(part for part in (label, key_path(rest)) if part)
    raise AuditError(f"{file}: {where}: {what}" if where else f"{file}: {what}")


def _first(document, errors):
    return min(errors, key=lambda e: (_document_order(document, list(e.absolute_path)),
                                      PRIORITY.get(e.validator, 9)))


def key_path(path) -> str:
    """`rules.TAG001.params.required_tags[0]`; odd keys shown quoted and cut."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            text = step if re.fullmatch(r"[A-Za-z0-9_:-]{1,64}", str(step)) else shown(step, 40)
            out += f".{text}" if out else text
    return out


def _document_order(document, path) -> tuple:
    order, node = [], document
    for step in path:
        if isinstance(node, dict):
            order.append(list(node).index(step) if step in node else len(node))
        else:
            order.append(step if isinstance(step, int) else 0)
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    return tuple(order)


def _extra_keys(error) -> list:
    known = error.schema.get("properties", {})
    patterns = error.schema.get("patternProperties", {})
    return [key for key in error.instance if key not in known
            and not any(re.search(p, str(key)) for p in patterns)]


def _unknown(error, key) -> str:
    noun = error.schema.get("x-unknown", "unknown key")
    known = list(error.schema.get("properties", {}))
    if "see `" in noun:
        return noun
    listed = ", ".join(known) or "none"
    return f"{noun} (known: {shown_text(listed, 200)})"


def _what(error) -> str:
    schema, value, kind, rule = error.schema, error.instance, error.validator, error.validator_value
    expected = schema.get("x-expected")
    got = f"got {shown(value)}"
    if kind == "type":
        types = rule if isinstance(rule, list) else [rule]
        nouns = [NOUNS.get(t, t) for t in types if t != "null"]
        return f"expected {expected or ' or '.join(nouns)}, {got}"
    if kind == "enum":
        return f"bad value {shown(value)} (one of {shown_text(', '.join(map(str, rule)), 200)})"
    if kind == "required":
        missing = [key for key in rule if key not in value]
        return f"missing required field '{missing[0]}'"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">",
                "exclusiveMaximum": "<"}[kind]
        noun = expected or NOUNS.get(schema.get("type"), "a number")
        return f"expected {noun} {sign} {rule:,}, {got}"
    if kind == "format" and rule == "regex":
        try:
            re.compile(value)
            detail = ""
        except (re.error, TypeError, OverflowError, RecursionError) as exc:
            detail = f" ({shown_text(exc, 80)})"
        return f"expected {expected or 'a regular expression'}, {got}{detail}"
    if kind in ("pattern", "format", "anyOf", "oneOf"):
        return f"expected {expected or 'text matching ' + shown(rule)}, {got}"
    if kind in ("minItems", "minProperties"):
        return f"expected {expected or 'at least ' + str(rule) + ' item(s)'}, {got}"
    if kind == "maxLength":
        return f"expected at most {rule:,} characters, got {len(value):,}"
    return f"not allowed here ({kind}: {shown(rule)}), {got}"
