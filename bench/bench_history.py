"""`image-audit history show` on a year of daily runs of a large estate.

The history is made by `auditor.history.record`, the code `audit --history` runs, from one
real audit of a synthetic estate (`auditor.synth`) whose findings then change day by day:
each day some are fixed, some fixed earlier come back, some are new, one subscription is
unread every 30th day, and the cost moves. Running the year's audits themselves would add
nothing to what is measured (`history show` reads only the history) and take far longer.
`history show` is then timed as a command, in a fresh process, like a person runs it.

    python bench/bench_history.py                        # 365 runs of 100,000 machines
    python bench/bench_history.py --machines 10000 --runs 60
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

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
    """`runs` daily runs recorded one by one; returns the seconds it took."""
    rng = np.random.default_rng(seed)
    pool = findings.reset_index(drop=True)
    present = np.ones(len(pool), bool)
    fixed_ever = np.zeros(len(pool), bool)
    subscriptions = pool["subscription_id"].dropna().unique()
    started = time.perf_counter()
    for day in range(runs):
        if day:
            open_rows = np.flatnonzero(present)
            fixed = rng.choice(open_rows, size=len(open_rows) // 200, replace=False)
            present[fixed], fixed_ever[fixed] = False, True
            back = np.flatnonzero(fixed_ever & ~present)
            present[rng.choice(back, size=min(len(back), len(open_rows) // 600), replace=False)] = True
            new = pool.sample(n=max(1, len(open_rows) // 300), random_state=day).copy()
            new["fingerprint"] = new["fingerprint"] + f"#day{day}"
            pool = pd.concat([pool, new], ignore_index=True)
            present = np.append(present, np.ones(len(new), bool))
            fixed_ever = np.append(fixed_ever, np.zeros(len(new), bool))
        as_of = pd.Timestamp(COLLECTED_AT) + timedelta(days=day)
        today = pool[present]
        not_read = []
        if day % 30 == 29 and len(subscriptions):
            unread = subscriptions[day % len(subscriptions)]
            today = today[today["subscription_id"] != unread]
            not_read = [{"scope": unread, "name": "", "status": "denied", "detail": ""}]
        scale = 1 + 0.3 * np.sin(day / 58)
        day_totals = totals.assign(monthly_cost=totals["monthly_cost"] * scale)
        day_context = {**context, "snapshot_sha256": f"{day:064x}", "as_of": as_of.isoformat(),
                       "coverage": {"state": "partial" if not_read else "complete",
                                    "not_read": not_read, "gaps": []}}
        history.record(folder, today, day_context, day_totals)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=365)
    parser.add_argument("--work", type=Path, help="Folder to keep the history in (default: temporary).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        folder = work / "history"
        findings, context, totals = base_run(work, args.machines)
        made = make_history(folder, findings, context, totals, args.runs)
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
          f"| findings of the first run | {len(findings):,} |\n"
          f"| finding rows in the history | {total_findings:,} |\n"
          f"| history on disk | {size / 2**20:,.0f} MiB |\n"
          f"| recording the runs (history.record, each) | {made / args.runs:.3f} s |\n"
          f"| `image-audit history show` (fresh process, best of 3) | {best:.2f} s |\n"
          f"| the same, each try | {', '.join(f'{t:.2f}' for t in timings)} s |\n"
          f"| its CPU time (user + system), each try | {', '.join(f'{t:.2f}' for t in cpu)} s |\n"
          f"| load average before showing | {load_average} |\n"
          f"| load + per rule + per month, in process | {in_process:.2f} s |\n\n"
          f"Target: under {TARGET_SECONDS:.0f} s: **{'met' if best < TARGET_SECONDS else 'missed'}** "
          f"(wall clock; CPU time {min(cpu):.2f} s).")


if __name__ == "__main__":
    main()
