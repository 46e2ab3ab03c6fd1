"""Exemptions: time-boxed, approved decisions to accept a finding. A matched finding stays in
every output, marked exempted with its reason, and no longer counts toward `--fail-on`.

The file is validated whole at load. Applying it marks the findings, then evaluates the EXM
rules over the entries (expired, matching nothing) through the engine like any other rule.
Each EXM finding's resource is the entry, with the stable id `exemption:<RULE>:<resource>`
(lower-cased in the fingerprint); the entry's number in the file goes into its name only,
so reordering the file changes no fingerprint. Two entries for one rule and resource are an
error, which keeps that id unique.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from auditor import schema as schemas
from auditor.engine import BoundedLoader, Rule, evaluate, file_schema, load_yaml, sort_findings
from auditor.errors import AuditError, shown
from auditor.estate import Estate

FIELDS = ["rule", "resource", "reason", "approved_by", "expires"]  # as schemas/exemptions.json
GLOB_CHARS = r"[*?\[]"


def _entry(item: dict, index: int, where: str, rule_ids: set[str]) -> dict:
    """One entry the exemptions schema accepted, checked for what the schema cannot say."""
    rule = item["rule"].strip().upper()
    at = f"{where}: entry {index + 1} ({rule})"
    if rule not in rule_ids:
        raise AuditError(f"{at}: unknown rule id {shown(item['rule'])} (see `image-audit rules list`)")
    if rule.startswith("EXM"):
        raise AuditError(f"{at}: {rule} findings are about this file; fix the entry instead")
    return {"entry": index + 1, "rule": rule, "resource": item["resource"].strip(),
            "reason": item["reason"].strip(), "approved_by": item["approved_by"].strip(),
            "expires": _date(item["expires"], at)}


def _date(value: str, at: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise AuditError(f"{at}: expires: expected a date (YYYY-MM-DD), got {shown(value)}, "
                         "which is not a day of the calendar") from None


def _entry_label(document, path):
    """`entry 3 (PIN001)` for a place inside the third entry."""
    if len(path) >= 2 and path[0] == "exemptions" and isinstance(path[1], int):
        item = document["exemptions"][path[1]]
        rule = item.get("rule") if isinstance(item, dict) else None
        named = isinstance(rule, str) and re.fullmatch(r"\s*[A-Za-z]{3}\d{3}\s*", rule)
        return f"entry {path[1] + 1}" + (f" ({rule.strip().upper()})" if named else ""), path[2:]
    return "", path


class _DatesAsText(BoundedLoader):
    """Leave `expires: 2027-02-30` as text, so a bad date is reported with its entry."""


_DatesAsText.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


@dataclass
class Exemptions:
    """The validated entries of one exemptions file, in file order."""

    file: str
    entries: pd.DataFrame

    def apply(self, findings: pd.DataFrame, estate: Estate, rules: list[Rule]) -> pd.DataFrame:
        """Mark the findings that unexpired entries match, and add the EXM findings."""
        entries = self.entries.assign(
            expired=self.entries["expires"] < estate.as_of.date())
        matches = _matches(findings, entries)
        counts = matches.groupby("entry").size()
        entries["matched"] = entries["entry"].map(counts).fillna(0).astype(int)

        expired = entries.loc[entries["expired"].astype(bool), "entry"]
        active = matches[~matches["entry"].isin(expired)]
        first = active.sort_values("entry", kind="stable").drop_duplicates("finding")
        reasons = (entries["reason"] + " (approved by " + entries["approved_by"] + ", expires "
                   + entries["expires"].map(dt.date.isoformat) + "; " + self.file + " entry "
                   + entries["entry"].astype(str) + ")").set_axis(entries["entry"])
        findings = findings.copy()
        findings["exempted"] = False
        findings["exemption_reason"] = None
        if not first.empty:
            rows = first["finding"].to_numpy()
            findings.loc[rows, "exempted"] = True
            findings.loc[rows, "exemption_reason"] = first["entry"].map(reasons).to_numpy()
        findings["exempted"] = findings["exempted"].astype(bool)

        with_entries = copy.copy(estate)
        with_entries.tables = {**estate.tables, "exemptions": self._table(entries)}
        exemption_rules = [rule for rule in rules if "exemptions" in rule.tables]
        return sort_findings([findings, evaluate(with_entries, exemption_rules)])

    def _table(self, entries: pd.DataFrame) -> pd.DataFrame:
        """The entries as the EXM rules read them (see engine.INPUT_COLUMNS)."""
        ids = "exemption:" + entries["rule"] + ":" + entries["resource"]
        return entries.assign(
            id=ids, arm_id=ids, name=self.file + " entry " + entries["entry"].astype(str),
            expires=entries["expires"].map(dt.date.isoformat))


def _glob_regex(glob: str) -> str:
    """fnmatch's glob syntax (`*`, `?`, `[seq]`, `[!seq]`) as an unanchored regex that RE2,
    the engine behind Arrow's string matching, accepts: no look-arounds or atomic groups."""
    out, i = [], 0
    while i < len(glob):
        char, i = glob[i], i + 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            start = i + (glob[i:i + 1] == "!")
            start += glob[start:start + 1] == "]"
            end = glob.find("]", start)
            if end < 0:
                out.append(re.escape(char))
                continue
            body = glob[i:end].replace("\\", "\\\\").replace("[", "\\[")
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


def _full_match(keys: pa.Array, regexes: list[str]) -> np.ndarray:
    pattern = "(?s)^(?:" + "|".join(regexes) + ")$"
    return pc.match_substring_regex(keys, pattern).to_numpy(zero_copy_only=False)


# One RE2 pattern holds a few thousand globs ("pattern too large" beyond): globs without a
# literal prefix are screened in chunks of this many.
GLOB_CHUNK = 256


def _literal_prefix(glob: str) -> str:
    """The glob's text before its first wildcard: every id it matches starts with it."""
    cut = re.search(GLOB_CHARS, glob)
    return glob[:cut.start()] if cut else glob


def _literal_suffix(glob: str) -> str:
    """The glob's text after its last wildcard (or `]`): every id it matches ends with it."""
    cuts = [m.end() for m in re.finditer(r"[*?\[\]]", glob)]
    return glob[cuts[-1]:] if cuts else glob


def _prefix_end(prefix: str) -> str | None:
    """The smallest text above every text that starts with `prefix` (None: no such text)."""
    stem = prefix.rstrip(chr(0x10FFFF))
    return stem[:-1] + chr(ord(stem[-1]) + 1) if stem else None


class _SortedIds:
    """One rule's ids sorted (or sorted by their reversed text, to find suffixes): the ids
    that start with a text are one range, found by binary search."""

    def __init__(self, keys: np.ndarray, finding: np.ndarray, reverse: bool = False):
        sort_keys = np.array([key[::-1] for key in keys], dtype=object) if reverse else keys
        order = np.argsort(sort_keys, kind="stable")
        self.sorted, self.finding = sort_keys[order], finding[order]
        self.texts = pa.array(keys[order], pa.string())

    def ranges(self, starts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        lo = np.searchsorted(self.sorted, starts.to_numpy(dtype=object), side="left")
        ends = starts.map(_prefix_end)
        hi = np.searchsorted(self.sorted, ends.fillna("").to_numpy(dtype=object), side="left")
        hi[ends.isna().to_numpy()] = len(self.sorted)
        return lo, hi

    def pairs(self, globs: pd.DataFrame, starts: pd.Series, whole: pd.Series):
        """Each glob's regex over its range only; a `whole` glob (its prefix and a final
        `*`) takes its range as it is."""
        lo, hi = self.ranges(starts)
        for entry, regex, take_all, start, stop in zip(globs["entry"], globs["regex"], whole,
                                                       lo, hi, strict=True):
            if start == stop:
                continue
            hit = self.finding[start:stop]
            if not take_all:
                hit = hit[_full_match(self.texts[start:stop], [regex])]
            yield entry, hit


def _glob_pairs(keys: pd.Series, finding: np.ndarray, globs: pd.DataFrame) -> list[pd.DataFrame]:
    """(entry, finding) pairs of one rule's globs over that rule's lower-cased ids. A glob's
    literal prefix (`/subscriptions/x/resourcegroups/rg/*`) bounds the ids it can match to
    one range of the sorted ids, found by binary search for all globs at once; a glob
    without one but with a literal suffix (`*/vm-a`) does the same over the ids sorted by
    their reversed text. Its regex then runs over that range only. Globs with neither are
    screened in chunks of GLOB_CHUNK by one combined regex, then run over what their chunk
    matched."""
    keys = keys.to_numpy(dtype=object)
    prefixes = globs["glob"].map(_literal_prefix)
    suffixes = globs["glob"].map(_literal_suffix)
    by_prefix = (prefixes != "").to_numpy()
    by_suffix = ~by_prefix & (suffixes != "").to_numpy()
    found = []
    if by_prefix.any():
        ids = _SortedIds(keys, finding)
        found += ids.pairs(globs[by_prefix], prefixes[by_prefix],
                           globs["glob"][by_prefix] == prefixes[by_prefix] + "*")
    if by_suffix.any():
        ids = _SortedIds(keys, finding, reverse=True)
        found += ids.pairs(globs[by_suffix], suffixes[by_suffix].str[::-1],
                           globs["glob"][by_suffix] == "*" + suffixes[by_suffix])

    loose = globs[~by_prefix & ~by_suffix]
    texts = pa.array(keys, pa.string())
    for chunk in range(0, len(loose), GLOB_CHUNK):
        part = loose.iloc[chunk:chunk + GLOB_CHUNK]
        candidates = np.flatnonzero(_full_match(texts, list(part["regex"])))
        if not len(candidates):
            continue
        subset = texts.take(pa.array(candidates))
        for entry, regex in zip(part["entry"], part["regex"], strict=True):
            found.append((entry, finding[candidates[_full_match(subset, [regex])]]))
    if not found:
        return []
    return [pd.DataFrame({"entry": np.concatenate([np.full(len(hit), e) for e, hit in found]),
                          "finding": np.concatenate([hit for _, hit in found])})]


def _matches(findings: pd.DataFrame, entries: pd.DataFrame) -> pd.DataFrame:
    """(entry, finding) pairs where the entry's rule and resource id or glob match, ignoring
    case. Exact ids join in one merge; globs run as Arrow (RE2) regexes over ranges of
    sorted ids (see `_glob_pairs`), never Python per finding."""
    keys = pd.DataFrame({"rule": findings["rule_id"],
                         "key": findings["resource_id"].astype(str).str.lower(),
                         "finding": findings.index})
    pattern = entries["resource"].str.lower()
    is_glob = pattern.str.contains(GLOB_CHARS, regex=True).astype(bool)
    exact = entries.loc[~is_glob, ["entry", "rule"]].assign(key=pattern[~is_glob])
    pairs = [exact.merge(keys, on=["rule", "key"])[["entry", "finding"]]]
    globs = entries.loc[is_glob, ["entry", "rule"]].assign(
        glob=pattern[is_glob], regex=pattern[is_glob].map(_glob_regex))
    for rule, rule_globs in globs.groupby("rule", sort=False):
        candidates = keys[keys["rule"] == rule]
        if not candidates.empty:
            pairs += _glob_pairs(candidates["key"], candidates["finding"].to_numpy(), rule_globs)
    return pd.concat(pairs, ignore_index=True).astype({"entry": int, "finding": int})


def load_exemptions(path: Path, rules: list[Rule]) -> Exemptions:
    """Read and validate a whole exemptions file; errors name the file and the entry."""
    path = Path(path)
    data = load_yaml(path, loader=_DatesAsText)
    schemas.validate(data, file_schema("exemptions"), str(path), locate=_entry_label)
    items = data["exemptions"]
    rule_ids = {rule.id for rule in rules}
    entries = [_entry(item, index, str(path), rule_ids) for index, item in enumerate(items)]
    seen: dict[tuple[str, str], int] = {}
    for entry in entries:
        key = (entry["rule"], entry["resource"].lower())
        if key in seen:
            raise AuditError(f"{path}: entry {entry['entry']} ({entry['rule']}): same rule and "
                             f"resource as entry {seen[key]}")
        seen[key] = entry["entry"]
    frame = pd.DataFrame(entries, columns=["entry"] + FIELDS)
    return Exemptions(file=path.name, entries=frame.astype({"entry": int}))
