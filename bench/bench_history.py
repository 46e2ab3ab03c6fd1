"""`image-audit history show` on a year of daily runs of a large estate.

The history is generated directly as Parquet, with the writer and tables of
`auditor.history` (`record` would read each day's run back to compare it with the next, and
take most of an hour at this size), from one real audit of a synthetic estate
(`auditor.synth`) whose findings then change day by day: each day some are fixed, some fixed
earlier come back, some are new, one subscription is unread every 30th day, and the cost
moves. A small history made both ways is checked to give the same spells first.
`history show` is then timed as a command, in a fresh process, like a person runs it.

    python bench/bench_history.py                        # 365 runs of 100,000 machines
    python bench/bench_history.py --machines 10000 --runs 60
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

import auditor
from auditor import history
from auditor.importer import import_files
from auditor.report import cost_totals
from auditor.synth import COLLECTED_AT, write_estate

TARGET_SECONDS = 5.0


def base_run(work: Path, machines: int):
    """One real audit of a synthetic estate: its findings, context and cost totals."""
    raw = work / "estate.jsonl"
    write_estate(raw, machines, seed=0)
    run = auditor.audit(import_files([raw], collected_at=COLLECTED_AT))
    return run.findings, run.context, cost_totals(run.cost, run.findings, run.plan)


def make_history(folder: Path, findings: pd.DataFrame, context: dict, totals: pd.DataFrame,
                 runs: int, seed: int = 0) -> float:
    """`runs` daily runs written as `history.record` writes them (the same tables, file names
    and writer), with each day's changes taken from the day's own diff instead of reading the
    day before back: a year of 100k-machine runs is written in minutes. Returns the seconds."""
    rng = np.random.default_rng(seed)
    added_per_day = max(1, len(findings) // 300)
    extra = findings.sample(n=added_per_day * runs, replace=True, random_state=seed).copy()
    extra["fingerprint"] = extra["fingerprint"] + [f"#new{i}" for i in range(len(extra))]
    pool = pd.concat([findings, extra], ignore_index=True)
    born = np.zeros(len(pool), int)
    born[len(findings):] = 1 + np.arange(len(extra)) // added_per_day  # the day each is new
    every = history._findings_table(pool, "pool", pd.Timestamp(COLLECTED_AT))  # sorted, as record
    order = pool["fingerprint"].astype(str).str.lower().argsort(kind="stable").to_numpy()
    pool, born = pool.iloc[order].reset_index(drop=True), born[order]
    history.open_folder(folder, create=True)
    fixed = np.zeros(len(pool), bool)
    subscriptions = pool["subscription_id"].dropna().unique()
    lowered = pa.array(pool["fingerprint"].str.lower())
    before = np.zeros(len(pool), bool)
    started = time.perf_counter()
    for day in range(runs):
        open_now = np.flatnonzero((born <= day) & ~fixed)
        if day:
            fixed[rng.choice(open_now, size=len(open_now) // 200, replace=False)] = True
            back = np.flatnonzero(fixed)
            fixed[rng.choice(back, size=min(len(back), len(open_now) // 600), replace=False)] = False
        present = (born <= day) & ~fixed
        not_read = []
        if day % 30 == 29 and len(subscriptions):
            unread = subscriptions[day % len(subscriptions)]
            present &= (pool["subscription_id"] != unread).to_numpy()
            not_read = [{"scope": unread, "name": "", "status": "denied", "detail": ""}]
        as_of = history._utc(pd.Timestamp(COLLECTED_AT) + timedelta(days=day))
        day_context = {**context, "snapshot_sha256": f"{day:064x}", "as_of": as_of.isoformat(),
                       "coverage": {"state": "partial" if not_read else "complete",
                                    "not_read": not_read, "gaps": []}}
        rid = history.run_id(day_context["snapshot_sha256"], as_of)
        rows = np.flatnonzero(present)
        table = every.take(rows)
        table = table.set_column(0, "run_id", pa.array([rid] * len(rows), pa.string())) \
            .set_column(1, "as_of", pa.array([as_of] * len(rows), history.TIME))
        history._write_table(folder, "findings", rid, as_of, table)
        moved = np.flatnonzero(present != before)
        changes = pa.table({
            "run_id": pa.array([rid] * len(moved), pa.string()),
            "as_of": pa.array([as_of] * len(moved), history.TIME),
            "fingerprint": lowered.take(moved),
            "rule_id": every.column("rule_id").take(moved),
            "subscription_id": pa.array(pool["subscription_id"].iloc[moved].str.lower()),
            "change": pa.array(np.where(present[moved], "appeared", "disappeared"))})
        history._write_table(folder, "changes", rid, as_of, changes)
        scale = 1 + 0.3 * np.sin(day / 58)
        day_totals = totals.assign(monthly_cost=totals["monthly_cost"] * scale)
        history._write_table(folder, "runs", rid, as_of, history._runs_row(
            pool.iloc[rows], day_context, day_totals, rid, "bench"))
        before = present
    return time.perf_counter() - started


def check_against_record(work: Path, findings, context, totals) -> None:
    """The generated history equals what history.record makes of the same runs (small)."""
    generated, recorded = work / "generated", work / "recorded"
    for folder in (generated, recorded):
        shutil.rmtree(folder, ignore_errors=True)
    make_history(generated, findings, context, totals, 8)
    written = history.load(generated)
    for run in written.runs.itertuples():
        rows = written.findings[written.findings["run_id"] == run.run_id]
        day = {**context, "snapshot_sha256": run.snapshot_sha256, "as_of": run.as_of.isoformat(),
               "coverage": {"state": run.coverage_state, "not_read": [], "gaps": []}}
        history.record(recorded, rows, day, totals)
    again = history.load(recorded)
    key = ["fingerprint", "start"]
    pd.testing.assert_frame_equal(written.episodes.sort_values(key, ignore_index=True),
                                  again.episodes.sort_values(key, ignore_index=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=365)
    parser.add_argument("--work", type=Path, help="Folder to keep the history in (default: temporary).")
    parser.add_argument("--reuse", action="store_true",
                        help="Time `history show` on the history left in --work by an earlier run.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        folder = work / "history"
        if args.reuse:
            made, first = float("nan"), history.load(folder).runs.iloc[0]
            first_findings = int(first["open"] + first["exempted"])
        else:
            shutil.rmtree(folder, ignore_errors=True)
            findings, context, totals = base_run(work, args.machines)
            check_against_record(work, findings.head(2000), context, totals)
            made = make_history(folder, findings, context, totals, args.runs)
            first_findings = len(findings)
        rows = sum(1 for _ in folder.glob("findings/*/*.parquet"))
        load_average = " / ".join(f"{v:.1f}" for v in os.getloadavg())
        size = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
        timings, cpu = [], []
        for _ in range(3):
            started = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            shown = subprocess.run([sys.executable, "-m", "auditor.cli", "history", "show",
                                    str(folder)], capture_output=True, text=True)
            timings.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if shown.returncode:
                sys.exit(shown.stderr)
        started = time.perf_counter()
        loaded = history.load(folder)
        history.by_rule(loaded), history.monthly(loaded)
        in_process = time.perf_counter() - started
        total_findings = int(loaded.runs["open"].sum() + loaded.runs["exempted"].sum())
    best = min(timings)
    print(f"# History benchmark\n\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
          f"by `python bench/bench_history.py --machines {args.machines} --runs {args.runs}` on a "
          f"shared machine ({platform.machine()}, {os.cpu_count()} cores; other work ran at the "
          f"same time).\n\n"
          f"| what | figure |\n| --- | ---: |\n"
          f"| machines | {args.machines:,} |\n| runs (daily) | {rows:,} |\n"
          f"| findings of the first run | {first_findings:,} |\n"
          f"| finding rows in the history | {total_findings:,} |\n"
          f"| history on disk | {size / 2**20:,.0f} MiB |\n"
          f"| generating the runs (each) | {made / args.runs:.3f} s |\n"
          f"| `image-audit history show` (fresh process, best of 3) | {best:.2f} s |\n"
          f"| the same, each try | {', '.join(f'{t:.2f}' for t in timings)} s |\n"
          f"| its CPU time (user + system), each try | {', '.join(f'{t:.2f}' for t in cpu)} s |\n"
          f"| load average before showing | {load_average} |\n"
          f"| load + per rule + per month, in process | {in_process:.2f} s |\n\n"
          f"Target: under {TARGET_SECONDS:.0f} s: **{'met' if best < TARGET_SECONDS else 'missed'}** "
          f"(wall clock; CPU time {min(cpu):.2f} s).")


if __name__ == "__main__":
    main()
