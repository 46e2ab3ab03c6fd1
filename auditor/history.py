"""History: each audit run appended to a Parquet dataset, so a finding has an age and a
report can say whether the estate is getting better.

A history folder holds three datasets, each partitioned by run date (Hive-style folders
`run_date=YYYY-MM-DD`), one file per run named after the run:
- `runs/`: one row per run: its identity (snapshot hash and as-of), counts, cost totals and
  savings, coverage, and the fingerprint scheme's version;
- `findings/`: every finding of every run (fingerprint, rule, severity, resource, exempted);
- `changes/`: per run, the fingerprints that appeared or disappeared since the run before
  it (a derived index that keeps `history show` fast on years of runs).
Files are written to a temporary name in the same folder, synced and renamed; the runs file
is written last, so a run exists once its runs file does and readers ignore any other file
of a run without one. Appends take a lock file (O_EXCL) in the folder, so two audits
appending at once are one after the other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from auditor.engine import FINGERPRINT_VERSION, SEVERITIES
from auditor.errors import AuditError
from auditor.report import summary

MARKER = "history.json"
FORMAT = "image-audit-history"
FORMAT_VERSION = 1
LOCK = ".lock"
LOCK_WAIT = 120.0  # seconds an append waits for another one to finish
DATASETS = ("runs", "findings", "changes")
_PARTITION = re.compile(r"run_date=\d{4}-\d{2}-\d{2}")
_RUN_FILE = re.compile(r"run-\d{8}T\d{6}Z-[0-9a-f]{20}\.parquet")
_TEMPORARY = re.compile(r"\..+\.tmp")
ALL_SCOPES = "*"  # an unknown scope that stands for every subscription

TIME = pa.timestamp("us", tz="UTC")  # microseconds: what Spark and the lakehouses read
_RULE_COUNT = pa.struct([("rule_id", pa.string()), ("severity", pa.string()),
                         ("open", pa.int64()), ("exempted", pa.int64())])
_COST_LINE = pa.struct([("section", pa.string()), ("key", pa.string()),
                        ("monthly_cost", pa.float64()), ("unpriced", pa.int64())])
_UNKNOWN_SCOPE = pa.struct([("subscription_id", pa.string()), ("kind", pa.string()),
                            ("status", pa.string()), ("detail", pa.string())])
RUNS = pa.schema([
    ("run_id", pa.string()), ("snapshot_sha256", pa.string()), ("as_of", TIME),
    ("collected_at", TIME), ("recorded_at", TIME), ("tool_version", pa.string()),
    ("fingerprint_version", pa.int32()), ("source", pa.string()),
    ("open", pa.int64()), ("exempted", pa.int64()),
    *[(f"open_{severity}", pa.int64()) for severity in reversed(SEVERITIES)],
    ("currency", pa.string()), ("monthly_cost", pa.float64()),
    ("savings_deletable_now", pa.float64()), ("savings_blocked", pa.float64()),
    ("coverage_state", pa.string()), ("scopes_not_read", pa.int64()),
    ("coverage_gaps", pa.int64()),
    ("open_by_rule", pa.list_(_RULE_COUNT)), ("cost", pa.list_(_COST_LINE)),
    ("unknown_scopes", pa.list_(_UNKNOWN_SCOPE)),
])
FINDINGS = pa.schema([
    ("run_id", pa.string()), ("as_of", TIME), ("fingerprint", pa.string()),
    ("rule_id", pa.string()), ("severity", pa.string()), ("resource_type", pa.string()),
    ("resource_id", pa.string()), ("resource_name", pa.string()),
    ("subscription_id", pa.string()), ("region", pa.string()), ("exempted", pa.bool_()),
    ("monthly_cost", pa.float64()),
])
CHANGES = pa.schema([
    ("run_id", pa.string()), ("as_of", TIME), ("fingerprint", pa.string()),
    ("rule_id", pa.string()), ("subscription_id", pa.string()), ("change", pa.string()),
])
SCHEMAS = {"runs": RUNS, "findings": FINDINGS, "changes": CHANGES}


# --- the folder -----------------------------------------------------------------------------

def open_folder(path: Path | str, create: bool = False) -> Path:
    """The history folder, checked: made (with its marker) when `create` and missing or
    empty; refused with one line naming the first file that is not part of a history."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise AuditError(f"{root}: not a folder (a history is a folder)")
    if not root.exists() or not any(not _TEMPORARY.fullmatch(e.name) for e in root.iterdir()):
        if not create:
            raise AuditError(f"{root}: no history here (record runs with `audit --history` "
                             "or `history add`)")
        try:
            root.mkdir(parents=True, exist_ok=True)
            _write_bytes(root / MARKER, json.dumps(
                {"format": FORMAT, "format_version": FORMAT_VERSION}, indent=1).encode())
        except OSError as exc:
            raise AuditError(f"{root}: cannot create the history ({exc.strerror or exc})") from None
    _check_marker(root / MARKER)
    for entry in sorted(root.iterdir()):
        if entry.name in (MARKER, LOCK) or _TEMPORARY.fullmatch(entry.name):
            continue
        if entry.name not in DATASETS or not entry.is_dir():
            _foreign(entry)
        for partition in sorted(entry.iterdir()):
            if not (partition.is_dir() and _PARTITION.fullmatch(partition.name)):
                _foreign(partition)
            for file in sorted(partition.iterdir()):
                if not (_RUN_FILE.fullmatch(file.name) or _TEMPORARY.fullmatch(file.name)):
                    _foreign(file)
    return root


def _foreign(path: Path):
    raise AuditError(f"{path}: not part of an image-audit history (foreign file); move it out "
                     "of the history folder")


def _check_marker(marker: Path) -> None:
    try:
        content = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuditError(f"{marker.parent}: not an image-audit history (no {MARKER}); give an "
                         "empty or new folder to start one") from None
    except (OSError, ValueError) as exc:
        raise AuditError(f"{marker}: corrupt history marker ({exc})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise AuditError(f"{marker}: not an image-audit history marker")
    if content.get("format_version") != FORMAT_VERSION:
        raise AuditError(f"{marker}: history format version {content.get('format_version')!r}; "
                         f"this image-audit reads version {FORMAT_VERSION}")


def _write_bytes(path: Path, data: bytes) -> None:
    """Write beside `path` under a temporary name readers ignore, sync, rename, sync the
    folder: a reader or a crash never sees half a file."""
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _write_table(root: Path, dataset: str, run_id: str, as_of: pd.Timestamp,
                 table: pa.Table) -> None:
    folder = root / dataset / f"run_date={as_of:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    pq.write_table(table.cast(SCHEMAS[dataset]), sink)
    _write_bytes(folder / f"{run_id}.parquet", sink.getvalue().to_pybytes())


def _run_path(root: Path, dataset: str, run_id: str, as_of: pd.Timestamp) -> Path:
    return root / dataset / f"run_date={as_of:%Y-%m-%d}" / f"{run_id}.parquet"


@contextlib.contextmanager
def _append_lock(root: Path, wait: float = LOCK_WAIT):
    """One append at a time: a lock file made with O_EXCL; one whose process is gone from
    this host is taken over, another is waited for."""
    lock, owner = root / LOCK, f"{os.getpid()} {socket.gethostname()}\n".encode()
    deadline = time.monotonic() + wait
    while not _claimed(lock, owner):
        if _holder_gone(lock):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        elif time.monotonic() > deadline:
            raise AuditError(f"{lock}: another image-audit has been appending for {wait:.0f} s; "
                             "remove the lock file if no run is active")
        else:
            time.sleep(0.05)
    try:
        yield
    finally:
        if lock.exists() and lock.read_bytes() == owner:  # taken over meanwhile: not ours
            lock.unlink()


def _claimed(lock: Path, owner: bytes) -> bool:
    try:
        handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.write(handle, owner)
    os.close(handle)
    return True


def _holder_gone(lock: Path) -> bool:
    try:
        pid, _, host = lock.read_text().strip().partition(" ")
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):  # unreadable, or being written: held
        return False
    return False


# --- recording a run ------------------------------------------------------------------------

def run_id(snapshot_sha256: str, as_of: pd.Timestamp) -> str:
    """The run's name: its as-of (sortable) and a digest of snapshot hash and exact as-of."""
    digest = hashlib.sha256(f"{snapshot_sha256}|{as_of.isoformat()}".encode()).hexdigest()
    return f"run-{as_of:%Y%m%dT%H%M%SZ}-{digest[:20]}"


def _utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")) \
        .as_unit("us")


def unknown_scopes(coverage: dict | None) -> list[dict]:
    """What a run could not see, as subscriptions (`*` for all): its findings there are
    unknown in that run, never resolved. A subscription not read is unknown; a collection
    gap names subscriptions (by id or in ARM ids) or else stands for all of them; a run whose
    snapshot records no scope (an import) could have missed anything."""
    coverage = coverage or {"state": "unknown"}
    if str(coverage.get("state", "unknown")).startswith("unknown"):
        return [{"subscription_id": ALL_SCOPES, "kind": "scope unknown",
                 "status": str(coverage.get("state")), "detail": ""}]
    scopes = []
    for item in coverage.get("not_read") or []:
        scope = str(item.get("scope", "")).lower()
        scopes.append({"subscription_id": scope if re.fullmatch(r"[0-9a-f-]{36}", scope)
                       else ALL_SCOPES, "kind": "not read", "status": str(item.get("status", "")),
                       "detail": str(item.get("name") or item.get("detail") or "")})
    for gap in coverage.get("gaps") or []:
        try:
            item = json.loads(gap) if isinstance(gap, str) else dict(gap)
        except (ValueError, TypeError):
            item = {"detail": str(gap)}
        named = [str(s).lower() for s in item.get("subscriptions") or []]
        if not named and item.get("scope") == "subscriptions":
            named = [str(s).lower() for s in item.get("ids") or []]
        if not named:
            named = [m.lower() for i in item.get("ids") or []
                     for m in re.findall(r"/subscriptions/([0-9a-fA-F-]{36})", str(i))]
        for scope in named or [ALL_SCOPES]:
            scopes.append({"subscription_id": scope, "kind": f"gap: {item.get('table', '')}",
                           "status": str(item.get("status", "")),
                           "detail": str(item.get("detail", ""))})
    return scopes


def _runs_row(findings: pd.DataFrame, context: dict, cost_totals: pd.DataFrame | None,
              rid: str, source: str) -> pa.Table:
    counts = summary(findings)
    by_rule = findings.assign(open=~findings["exempted"].astype(bool),
                              exempted=findings["exempted"].astype(bool)) \
        .groupby(["rule_id", "severity"], sort=True)[["open", "exempted"]].sum().reset_index()
    coverage = context.get("coverage") or {}
    cost = cost_totals if cost_totals is not None else pd.DataFrame(
        columns=["section", "key", "monthly_cost", "unpriced", "currency"])
    total = cost[cost["section"] == "total"]["monthly_cost"]
    savings = context.get("savings") or {}
    row = {
        "run_id": rid, "snapshot_sha256": context["snapshot_sha256"],
        "as_of": _utc(context["as_of"]),
        "collected_at": _utc(context["collected_at"]) if context.get("collected_at") else None,
        "recorded_at": pd.Timestamp.now(tz="UTC").as_unit("us"),
        "tool_version": str(context.get("tool_version", "")),
        "fingerprint_version": int(context.get("fingerprint_version", 1)), "source": source,
        "open": counts["open"], "exempted": counts["exempted"],
        **{f"open_{s}": n for s, n in counts["open_by_severity"].items()},
        "currency": savings.get("currency") or (str(cost["currency"].iloc[0]) if len(cost) else None),
        "monthly_cost": float(total.iloc[0]) if len(total) else None,
        "savings_deletable_now": (savings.get("deletable_now") or {}).get("monthly_cost"),
        "savings_blocked": (savings.get("blocked") or {}).get("monthly_cost"),
        "coverage_state": str(coverage.get("state", "unknown")),
        "scopes_not_read": len(coverage.get("not_read") or []),
        "coverage_gaps": len(coverage.get("gaps") or []),
        "open_by_rule": [{"rule_id": r.rule_id, "severity": r.severity, "open": int(r.open),
                          "exempted": int(r.exempted)} for r in by_rule.itertuples()],
        "cost": [{"section": str(r.section), "key": str(r.key), "monthly_cost": float(r.monthly_cost),
                  "unpriced": int(r.unpriced)} for r in cost.itertuples()],
        "unknown_scopes": unknown_scopes(coverage),
    }
    return pa.Table.from_pylist([row], schema=RUNS)


def _text_column(frame: pd.DataFrame, column: str) -> pa.Array:
    values = frame[column] if column in frame.columns else pd.Series(None, index=frame.index)
    return pa.array(values.astype("object").where(values.notna(), None).to_numpy(dtype=object),
                    type=pa.string(), from_pandas=True)


def _findings_table(findings: pd.DataFrame, rid: str, as_of: pd.Timestamp) -> pa.Table:
    order = findings["fingerprint"].astype(str).str.lower().argsort(kind="stable").to_numpy()
    frame = findings.iloc[order]
    columns = {"run_id": pa.array([rid] * len(frame), pa.string()),
               "as_of": pa.array([as_of] * len(frame), TIME)}
    for name in FINDINGS.names[2:]:
        if name == "exempted":
            columns[name] = pa.array(frame[name].astype(bool).to_numpy(), pa.bool_())
        elif name == "monthly_cost":
            cost = frame[name] if name in frame.columns else pd.Series(np.nan, index=frame.index)
            columns[name] = pa.array(pd.to_numeric(cost, errors="coerce").to_numpy(dtype=float),
                                     pa.float64(), from_pandas=True)
        else:
            columns[name] = _text_column(frame, name)
    return pa.table(columns, schema=FINDINGS)


def _changes_table(current: pa.Table, before: pa.Table | None, rid: str,
                   as_of: pd.Timestamp) -> pa.Table:
    """Fingerprints of `current` that `before` lacks (appeared) and the reverse (disappeared)."""
    def keyed(table: pa.Table) -> pd.DataFrame:
        frame = table.select(["fingerprint", "rule_id", "subscription_id"]).to_pandas()
        frame["fingerprint"] = frame["fingerprint"].str.lower()
        frame["subscription_id"] = frame["subscription_id"].str.lower()
        return frame.drop_duplicates("fingerprint")
    now = keyed(current)
    then = keyed(before) if before is not None else now.iloc[:0]
    appeared = now[~now["fingerprint"].isin(then["fingerprint"])].assign(change="appeared")
    gone = then[~then["fingerprint"].isin(now["fingerprint"])].assign(change="disappeared")
    frame = pd.concat([appeared, gone], ignore_index=True)
    return pa.table({"run_id": pa.array([rid] * len(frame), pa.string()),
                     "as_of": pa.array([as_of] * len(frame), TIME),
                     **{c: _text_column(frame, c) for c in CHANGES.names[2:]}}, schema=CHANGES)


def record(folder: Path | str, findings: pd.DataFrame, context: dict,
           cost_totals: pd.DataFrame | None = None, source: str = "audit") -> bool:
    """Append one run (its findings, counts, cost totals, savings and coverage). The snapshot
    hash and as-of identify it: a run already recorded changes nothing (returns False). A
    run older than others goes in date order: the run after it is compared with it anew."""
    root = open_folder(folder, create=True)
    as_of = _utc(context["as_of"])
    rid = run_id(context["snapshot_sha256"], as_of)
    version = int(context.get("fingerprint_version", 1))
    with _append_lock(root):
        if _run_path(root, "runs", rid, as_of).exists():
            return False
        runs = _read(root, "runs", ["run_id", "as_of", "fingerprint_version"]).to_pandas()
        runs = runs.sort_values(["as_of", "run_id"])
        earlier = runs[(runs["as_of"] < as_of) | ((runs["as_of"] == as_of) & (runs["run_id"] < rid))]
        later = runs.drop(earlier.index)
        current = _findings_table(findings, rid, as_of)
        _write_table(root, "findings", rid, as_of, current)
        before = earlier.iloc[-1] if len(earlier) else None
        same_series = before is not None and int(before["fingerprint_version"]) == version
        _write_table(root, "changes", rid, as_of, _changes_table(
            current, _run_findings(root, before) if same_series else None, rid, as_of))
        _write_table(root, "runs", rid, as_of, _runs_row(findings, context, cost_totals, rid, source))
        if len(later) and int(later.iloc[0]["fingerprint_version"]) == version:
            after = later.iloc[0]
            after_as_of = _utc(after["as_of"])
            _write_table(root, "changes", after["run_id"], after_as_of, _changes_table(
                _run_findings(root, after), current, after["run_id"], after_as_of))
    return True


def _run_findings(root: Path, run: pd.Series) -> pa.Table:
    path = _run_path(root, "findings", run["run_id"], _utc(run["as_of"]))
    try:
        return pq.read_table(path, columns=["fingerprint", "rule_id", "subscription_id"])
    except (OSError, pa.ArrowException) as exc:
        raise AuditError(f"{path}: corrupt history file ({exc})") from None


def add_findings_file(folder: Path | str, path: Path | str) -> tuple[bool, str]:
    """Record a run made elsewhere from its findings.json (which holds the run's context:
    snapshot hash, as-of, coverage, savings) and, when present beside it, its cost.csv (the
    cost totals; without it the run has no cost). Returns (recorded, run id)."""
    from auditor.baseline import load_baseline

    path = Path(path)
    findings_list = load_baseline(path).findings
    context = json.loads(path.read_text(encoding="utf-8"))
    for key in ("snapshot_sha256", "as_of"):
        if not isinstance(context.get(key), str):
            raise AuditError(f"{path}: not a findings.json of image-audit (no {key!r})")
    try:
        _utc(context["as_of"])
    except ValueError:
        raise AuditError(f"{path}: as_of {context['as_of']!r} is not a time") from None
    findings = pd.DataFrame(findings_list)
    for column in FINDINGS.names[2:]:
        if column not in findings.columns:
            findings[column] = False if column == "exempted" else None
    cost_file = path.parent / "cost.csv"
    cost = None
    if cost_file.is_file():
        try:
            cost = pd.read_csv(cost_file, encoding="utf-8-sig")
        except (OSError, ValueError) as exc:
            raise AuditError(f"{cost_file}: cannot read ({exc})") from None
        if not {"section", "key", "monthly_cost", "unpriced"} <= set(cost.columns):
            raise AuditError(f"{cost_file}: not a cost.csv of image-audit")
        cost = cost.fillna({"unpriced": 0, "monthly_cost": 0.0})
    recorded = record(folder, findings, context, cost, source=str(path))
    return recorded, run_id(context["snapshot_sha256"], _utc(context["as_of"]))


# --- reading it back ------------------------------------------------------------------------

def _files(root: Path, dataset: str) -> list[str]:
    folder = root / dataset
    if not folder.is_dir():
        return []
    return sorted(str(f) for f in folder.glob("run_date=*/run-*.parquet"))


def _read(root: Path, dataset: str, columns: list[str] | None = None,
          run_ids: list[str] | None = None) -> pa.Table:
    """A dataset's rows (of the given runs), read with pyarrow.dataset; a file that is not
    Parquet of the expected columns is named in a one-line error."""
    files = _files(root, dataset)
    if run_ids is not None:
        keep = {f"{r}.parquet" for r in run_ids}
        files = [f for f in files if os.path.basename(f) in keep]
    schema = SCHEMAS[dataset]
    try:
        return ds.dataset(files, schema=schema, format="parquet").to_table(columns=columns)
    except (OSError, pa.ArrowException) as exc:
        for file in files:
            try:
                found = pq.read_schema(file)
            except (OSError, pa.ArrowException) as error:
                raise AuditError(f"{file}: corrupt history file ({error})") from None
            if not set(schema.names) <= set(found.names):
                raise AuditError(f"{file}: corrupt history file (columns {found.names})") from None
        raise AuditError(f"{root / dataset}: cannot read the history ({exc})") from None


@dataclass
class History:
    """A history as pandas frames: `runs` (one row per run, in date order), `open_by_rule`,
    `cost` and `unknown_scopes` (a row per item of each run), `changes`, `episodes` (each
    spell a finding was open: when it opened, when it was resolved) and, read on first use,
    `findings` (every finding of every run)."""

    root: Path
    runs: pd.DataFrame
    changes: pd.DataFrame

    @cached_property
    def findings(self) -> pd.DataFrame:
        return _read(self.root, "findings", run_ids=list(self.runs["run_id"])).to_pandas()

    def _exploded(self, column: str) -> pd.DataFrame:
        frame = self.runs[["run_id", "as_of", column]].explode(column).dropna(subset=[column])
        if frame.empty:
            fields = [f.name for f in RUNS.field(column).type.value_type]
            return pd.DataFrame(columns=["run_id", "as_of", *fields])
        return pd.concat([frame[["run_id", "as_of"]].reset_index(drop=True),
                          pd.json_normalize(frame[column].tolist())], axis=1)

    @cached_property
    def open_by_rule(self) -> pd.DataFrame:
        return self._exploded("open_by_rule")

    @cached_property
    def cost(self) -> pd.DataFrame:
        return self._exploded("cost")

    @cached_property
    def unknown_scopes(self) -> pd.DataFrame:
        return self._exploded("unknown_scopes")

    @cached_property
    def episodes(self) -> pd.DataFrame:
        return episodes(self.runs, self.changes)

    def since(self, since) -> History:
        """The runs from `since` on; spells are judged on the whole history, then those
        still open at `since` or opened after it are kept."""
        start = _utc(since)
        kept = self.runs[self.runs["as_of"] >= start].reset_index(drop=True)
        cut = History(self.root, kept, self.changes[self.changes["run_id"].isin(kept["run_id"])])
        spells = self.episodes
        cut.__dict__["episodes"] = spells[spells["end"].isna() | (spells["end"] >= start)]
        return cut


def load(folder: Path | str, since=None) -> History:
    """The history in `folder` as pandas frames, runs in date order (from `since` on)."""
    root = open_folder(folder)
    recorded = [Path(f).stem for f in _files(root, "runs")]  # changes of these runs only
    with ThreadPoolExecutor(2) as pool:  # a file per run: read both datasets at once
        runs, changes = pool.map(lambda name: _read(root, name, run_ids=recorded).to_pandas(),
                                 ["runs", "changes"])
    runs = runs.sort_values(["as_of", "run_id"], ignore_index=True)
    history = History(root, runs, changes)
    if since is not None:
        history = history.since(since)
    return history


def _since(history: History, since) -> History:
    start = _utc(since)
    runs = history.runs
    kept = runs[runs["as_of"] >= start]
    # episodes need the runs before too: computed on the whole, then cut
    whole = history.episodes
    cut = History(history.root, kept.reset_index(drop=True),
                  history.changes[history.changes["run_id"].isin(kept["run_id"])])
    cut.__dict__["episodes"] = whole[(whole["end"].isna()) | (whole["end"] >= start)]
    return cut


History.since = _since


def episodes(runs: pd.DataFrame, changes: pd.DataFrame, upto: int | None = None) -> pd.DataFrame:
    """Each spell a finding was open, from the changes: one row per (fingerprint version,
    fingerprint, start). A finding that disappeared opens a new spell when it comes back
    only if a run in between could see it (its subscription read, no gap there); it is
    resolved at the first such run, and stays open (unknown) while none could. Runs up to
    position `upto` only, when given."""
    columns = ["fingerprint_version", "fingerprint", "rule_id", "subscription_id", "start",
               "end", "days_to_resolve"]
    count = len(runs) if upto is None else upto + 1
    if not count or changes.empty:
        return pd.DataFrame(columns=columns)
    runs = runs.iloc[:count]
    stamps = runs["as_of"].astype("int64").to_numpy()  # microseconds
    if len(np.unique(stamps)) == count:  # each run its own as-of: placed by time, no text
        events = changes[changes["as_of"].astype("int64").to_numpy() <= stamps[-1]]
        position = np.searchsorted(stamps, events["as_of"].astype("int64").to_numpy())
    else:
        seq = pd.Series(np.arange(count), index=runs["run_id"].to_numpy())
        events = changes[changes["run_id"].isin(seq.index)]
        position = seq.reindex(events["run_id"]).to_numpy()
    series = runs["fingerprint_version"].to_numpy()
    # a series ends where the fingerprint scheme changes: nothing is judged across it
    boundary = np.flatnonzero(np.diff(series) != 0) + 1
    series_end = np.searchsorted(np.append(boundary, count), np.arange(count), side="right")
    series_end = np.append(boundary, count)[series_end]
    # covered[r, j]: run r could see findings of subscription column j (0: any other)
    unknown = runs["unknown_scopes"].map(lambda items: {i["subscription_id"] for i in items})
    everything_unknown = unknown.map(lambda s: ALL_SCOPES in s).to_numpy()
    named = sorted(set().union(*unknown) - {ALL_SCOPES})
    column = {sub: j + 1 for j, sub in enumerate(named)}
    covered = np.ones((count, len(named) + 1), bool)
    covered[everything_unknown, :] = False
    for r, subs in enumerate(unknown):
        covered[r, [column[s] for s in subs if s in column]] = False
    next_covered = np.full((count + 1, len(named) + 1), count)
    for r in range(count - 1, -1, -1):
        next_covered[r] = np.where(covered[r], r, next_covered[r + 1])
    # the events of each fingerprint in run order, as integer codes (a year of runs sorts fast)
    version = series[position]
    key, fingerprints = pd.factorize(events["fingerprint"])
    sub_code, subs = pd.factorize(events["subscription_id"])
    order = np.lexsort((position, key, version))
    key, version, position = key[order], version[order], position[order]
    appeared = (events["change"] == "appeared").to_numpy()[order]
    sub_column = np.append([column.get(sub, 0) for sub in subs], 0)[sub_code[order]]
    same = np.r_[False, (key[1:] == key[:-1]) & (version[1:] == version[:-1])]
    # a disappearance is resolved at the first run that could see it, before the finding
    # came back and before its series ended
    seen_at = next_covered[position, sub_column]
    following = np.where(np.r_[same[1:], False], np.r_[position[1:], count], count)
    resolved = ~appeared & (seen_at < np.minimum(following, series_end[position]))
    first = np.flatnonzero(~same | (appeared & np.r_[False, resolved[:-1]]))
    last = np.r_[first[1:] - 1, len(key) - 1]
    first, last = first[appeared[first]], last[appeared[first]]  # a spell starts by appearing
    ends = np.where(resolved[last], seen_at[last], -1)
    rows = order[first]
    result = pd.DataFrame({
        "fingerprint_version": version[first],
        "fingerprint": np.asarray(fingerprints, dtype=object)[key[first]],
        "rule_id": events["rule_id"].to_numpy(dtype=object)[rows],
        "subscription_id": events["subscription_id"].to_numpy(dtype=object)[rows],
        "start": pd.to_datetime(stamps[position[first]], unit="us", utc=True),
        "end": pd.to_datetime(np.where(ends >= 0, stamps[np.maximum(ends, 0)], np.iinfo(np.int64).min),
                              unit="us", utc=True)})
    result["days_to_resolve"] = (result["end"] - result["start"]).dt.total_seconds() / 86400
    return result[columns]


def annotate(history: History, findings: pd.DataFrame, context: dict) -> pd.DataFrame:
    """The run's findings with `first_seen` (the as-of of the earliest run of the history
    that had the same fingerprint, across gaps), `age_days`, `reopened` (how many times it
    was resolved and came back) and `last_reopened`, from the runs up to this one."""
    as_of = _utc(context["as_of"])
    rid = run_id(context["snapshot_sha256"], as_of)
    position = int(np.flatnonzero(history.runs["run_id"].to_numpy() == rid)[0])
    spells = episodes(history.runs, history.changes, upto=position)
    version = int(context.get("fingerprint_version", FINGERPRINT_VERSION))
    spells = spells[spells["fingerprint_version"] == version]
    per_finding = spells.groupby("fingerprint").agg(first=("start", "min"), last=("start", "max"),
                                                    spells=("start", "size"))
    key = findings["fingerprint"].astype(str).str.lower()
    found = per_finding.reindex(key.to_numpy())
    def times(column: str) -> pd.Series:
        return pd.Series(pd.to_datetime(found[column].to_numpy(), utc=True), index=findings.index)
    first = times("first").fillna(as_of)
    reopened = pd.Series(found["spells"].fillna(1).to_numpy() - 1, index=findings.index)
    last = times("last").where(reopened > 0)
    iso = "%Y-%m-%dT%H:%M:%S+00:00"
    return findings.assign(
        first_seen=first.dt.strftime(iso).astype(object),
        age_days=((as_of - first).dt.total_seconds() // 86400).astype("int64"),
        reopened=reopened.astype("int64"),
        last_reopened=last.dt.strftime(iso).astype(object).where(last.notna(), None))


# --- what the reports show ------------------------------------------------------------------

def monthly(history: History) -> pd.DataFrame:
    """Cost and savings per calendar month: the mean of the month's runs (each run prices the
    estate per month as it stood that day)."""
    runs = history.runs
    month = runs["as_of"].dt.strftime("%Y-%m")
    return runs.groupby(month).agg(
        runs=("run_id", "size"), monthly_cost=("monthly_cost", "mean"),
        savings_deletable_now=("savings_deletable_now", "mean"),
        savings_blocked=("savings_blocked", "mean")).rename_axis("month").reset_index()


def by_rule(history: History) -> pd.DataFrame:
    """Per rule: open findings in the first and last run, spells resolved and reopened, and
    the mean days from a spell's start to the run that saw it resolved."""
    counts = history.open_by_rule.groupby(["run_id", "rule_id"])["open"].sum().unstack(fill_value=0)
    counts = counts.reindex(history.runs["run_id"]).fillna(0)
    spells = history.episodes
    resolved = spells.dropna(subset=["end"])
    per_rule = pd.DataFrame({
        "open_first": counts.iloc[0] if len(counts) else pd.Series(dtype=int),
        "open_last": counts.iloc[-1] if len(counts) else pd.Series(dtype=int)})
    per_rule["resolved"] = resolved.groupby("rule_id").size()
    starts = spells.groupby(["fingerprint_version", "fingerprint"]).cumcount()
    per_rule["reopened"] = spells[starts > 0].groupby("rule_id").size()
    per_rule["mean_days_to_resolve"] = resolved.groupby("rule_id")["days_to_resolve"].mean()
    per_rule = per_rule.fillna({"open_first": 0, "open_last": 0, "resolved": 0, "reopened": 0})
    return per_rule.astype({"open_first": int, "open_last": int, "resolved": int, "reopened": int}) \
        .rename_axis("rule_id").reset_index()


def series_notes(history: History) -> list[str]:
    """One sentence per change of the fingerprint scheme: a new series starts there."""
    runs = history.runs
    changed = runs[runs["fingerprint_version"].diff().fillna(0) != 0]
    return [f"fingerprint scheme version {int(r.fingerprint_version)} from {r.as_of:%Y-%m-%d}: "
            "a new series starts (findings before it are not matched with those after)"
            for r in changed.itertuples()]


def per_run(history: History) -> pd.DataFrame:
    runs = history.runs
    columns = ["as_of", "open", *[f"open_{s}" for s in reversed(SEVERITIES)], "exempted",
               "monthly_cost", "savings_deletable_now", "savings_blocked", "coverage_state",
               "scopes_not_read", "coverage_gaps", "fingerprint_version"]
    return runs[columns]


def trend(history: History) -> dict:
    """The trend as plain data for the reports (summary.md, workbook, HTML): per run, per
    rule, per month, and the fingerprint series."""
    def records(frame: pd.DataFrame) -> list[dict]:
        return json.loads(frame.to_json(orient="records", date_format="iso", date_unit="s"))
    return {"runs": records(per_run(history)), "rules": records(by_rule(history)),
            "months": records(monthly(history)), "series": series_notes(history)}


SHORT = {"as_of": "as of", "open_critical": "crit", "open_high": "high", "open_medium": "med",
         "open_low": "low", "open_info": "info", "exempted": "exempt", "monthly_cost": "cost/mo",
         "savings_deletable_now": "save now", "savings_blocked": "blocked",
         "coverage_state": "coverage", "scopes_not_read": "not read", "coverage_gaps": "gaps",
         "mean_days_to_resolve": "mean days to resolve"}


def show(history: History, console, last: int = 30) -> None:
    """`history show`: readable terminal tables (rich) of the `last` runs, and per month."""
    from rich.table import Table

    def table(title: str, frame: pd.DataFrame) -> Table:
        out = Table(title=title, title_justify="left")
        for name in frame.columns:
            numeric = pd.api.types.is_numeric_dtype(frame[name])
            out.add_column(SHORT.get(str(name), str(name)), justify="right" if numeric else "left")
        for row in frame.itertuples(index=False):
            out.add_row(*[_cell(v) for v in row])
        return out

    runs = per_run(history).drop(columns=["fingerprint_version"]).tail(last)
    runs["as_of"] = runs["as_of"].dt.strftime("%Y-%m-%d %H:%M")
    console.print(table(f"Open findings by severity, cost and coverage per run (last {len(runs)} "
                        f"of {len(history.runs)} runs)", runs))
    last = min(last, 8)
    counts = history.open_by_rule.groupby(["as_of", "rule_id"])["open"].sum().unstack(fill_value=0)
    recent = counts.tail(last).T
    recent.columns = [f"{c:%m-%d}" for c in recent.columns]
    rules = by_rule(history).drop(columns=["open_first", "open_last"]).set_index("rule_id")
    console.print(table(f"Open findings per rule (last {len(recent.columns)} runs), resolved and "
                        "reopened, mean days to resolve",
                        recent.join(rules, how="outer").fillna(dict.fromkeys(
                            [*recent.columns, "resolved", "reopened"], 0))
                        .rename_axis("rule").reset_index()))
    console.print(table("Cost and savings per month (mean of the month's runs)", monthly(history)))
    for note in series_notes(history):
        console.print(note)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def trend_sheet(book, trend: dict) -> None:
    """A Trend sheet: open findings per run by severity with a line chart; then the sheets
    "Trend by rule" and "Trend by month" (cost and savings)."""
    from openpyxl.chart import LineChart, Reference

    from auditor.workbook import Styles, write_table

    runs = pd.DataFrame(trend["runs"])
    if runs.empty:
        return
    runs["as_of"] = runs["as_of"].str[:10]
    shown_columns = ["as_of", "open", *[f"open_{s}" for s in reversed(SEVERITIES)], "exempted",
                     "monthly_cost", "savings_deletable_now", "coverage_state"]
    sheet, last_row = write_table(book, "Trend", runs[shown_columns],
                                  Styles(money=["monthly_cost", "savings_deletable_now"]))
    chart = LineChart()
    chart.title = "Open findings per run"
    chart.y_axis.title = "open findings"
    chart.height, chart.width = 9, 22
    data = Reference(sheet, min_col=2, max_col=2 + len(SEVERITIES), min_row=1, max_row=last_row)
    chart.add_data(data, titles_from_data=True)
    chart.set_categories(Reference(sheet, min_col=1, min_row=2, max_row=last_row))
    sheet.add_chart(chart, "M2")
    write_table(book, "Trend by rule", pd.DataFrame(trend["rules"]))
    write_table(book, "Trend by month", pd.DataFrame(trend["months"]),
                Styles(money=["monthly_cost", "savings_deletable_now", "savings_blocked"]))
