"""Benchmark: write the workbook for a large audit, in openpyxl's write-only and normal modes,
and report.html (mode `html`).

    python bench/bench_report.py                      # 200,000 findings, 100,000 machines
    python bench/bench_report.py --findings 2000 --machines 1000   # a quick look
    python bench/bench_report.py --modes html         # report.html alone

Each mode runs in its own process, so peak memory (max RSS) is measured for that mode alone;
the figure "write peak" is how far RSS rose while the workbook was written.

Measured on a 2-core machine (200,000 findings, 100,000 machines): write-only 91 s, peak RSS
874 MB (291 MB while writing); normal mode 114 s, peak RSS 2,484 MB (1,928 MB while writing).
auditor.workbook uses write-only mode: rows stream to disk instead of living as cell objects.

report.html (mode html), same machine and size: 8.5 s, peak RSS 654 MB (88 MB while writing),
18.0 MB (95 bytes per finding: this benchmark's messages are short). With the sample's
findings repeated to 200,000 (messages of 200 characters, evidence of 250) it is about 20 s
and 54 MB (282 bytes per finding); headless Chromium opens that file in about 6 s, filters
by severity in 25 ms, searches in 0.5 to 1.6 s and sorts in about 1 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditor.cost import estimate  # noqa: E402
from auditor.engine import FINDING_COLUMNS  # noqa: E402
from auditor.estate import Estate  # noqa: E402
from auditor.htmlreport import write_html  # noqa: E402
from auditor.normalize import TABLE_SCHEMAS  # noqa: E402
from auditor.snapshot import Snapshot  # noqa: E402
from auditor.workbook import write_workbook  # noqa: E402

SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-{}/providers/"


def _frame(name: str, columns: dict) -> pa.Table:
    schema = TABLE_SCHEMAS[name]
    size = len(next(iter(columns.values())))
    data = {f.name: columns.get(f.name, pd.Series([None] * size)) for f in schema}
    return pa.Table.from_pandas(pd.DataFrame(data), schema=schema, preserve_index=False)


def synthetic_estate(machines: int, versions: int = 2000) -> Estate:
    """Galleries, versions replicated to three regions, and `machines` VMs using them."""
    rng = np.random.default_rng(7)
    regions = np.array(["westeurope", "northeurope", "eastus"])
    definition = np.arange(versions) // 10
    version_ids = [f"{SUB.format('img')}microsoft.compute/galleries/gal{d % 4}/images/def{d}/"
                   f"versions/1.0.{v}" for v, d in enumerate(definition)]
    version_table = _frame("image_versions", {
        "id": version_ids, "arm_id": version_ids, "name": [f"1.0.{v}" for v in range(versions)],
        "definition_id": [v.rsplit("/versions/", 1)[0] for v in version_ids],
        "gallery_id": [v.split("/images/")[0] for v in version_ids],
        "published_date": pd.Series(pd.Timestamp("2026-01-01", tz="UTC")
                                    - pd.to_timedelta(rng.integers(0, 900, versions), "D")),
        "os_disk_size_gb": rng.choice([30.0, 64.0, 127.0], versions),
        "data_disk_size_gb": np.zeros(versions), "storage_account_type": ["Standard_LRS"] * versions,
        "tags": ['{"team": "platform"}'] * versions})
    region_table = _frame("version_regions", {
        "version_id": np.repeat(version_ids, 3), "region": np.tile(regions, versions),
        "regional_replica_count": np.tile([2, 1, 1], versions),
        "storage_account_type": np.tile(["Standard_ZRS", "Standard_LRS", "Standard_LRS"],
                                        versions),
        "exclude_from_latest": np.zeros(versions * 3, dtype=bool)})
    machine_ids = [f"{SUB.format('app')}microsoft.compute/virtualmachines/vm-{i:06d}"
                   for i in range(machines)]
    used = rng.integers(0, versions, machines)
    machine_table = _frame("machines", {
        "id": machine_ids, "arm_id": machine_ids, "name": [f"vm-{i:06d}" for i in range(machines)],
        "kind": ["vm"] * machines, "location": regions[rng.integers(0, 3, machines)],
        "capacity": np.ones(machines, dtype=np.int64), "image_kind": ["gallery"] * machines,
        "image_version": [f"1.0.{u}" for u in used],
        "image_id": [version_ids[u] for u in used],
        "image_definition_id": [version_ids[u].rsplit("/versions/", 1)[0] for u in used],
        "power_state": ["running"] * machines, "tags": ['{"team": "apps"}'] * machines})
    tables = {name: pa.Table.from_pylist([], schema=schema)
              for name, schema in TABLE_SCHEMAS.items()}
    tables.update(image_versions=version_table, version_regions=region_table,
                  machines=machine_table)
    manifest = {"collected_at": "2026-11-15T06:00:00+00:00", "tool_version": "bench",
                "format_version": 1, "gaps": []}
    return Estate(Snapshot(tables, manifest))


def synthetic_findings(estate: Estate, count: int) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    machines = estate.machines
    pick = rng.integers(0, len(machines), count)
    severities = np.array(["critical", "high", "medium", "low", "info"])
    rules = np.array(["PIN001", "PIN002", "TAG001", "TAG002", "REP001", "RET001", "STL001"])
    rule = rules[rng.integers(0, len(rules), count)]
    ids = machines["arm_id"].to_numpy()[pick]
    names = machines["name"].to_numpy()[pick]
    frame = pd.DataFrame({
        "rule_id": rule, "rule_name": "bench-rule", "severity": severities[rng.integers(0, 5, count)],
        "title": "A bench rule title", "resource_type": "Microsoft.Compute/virtualMachines",
        "resource_id": ids, "resource_name": names,
        "subscription_id": "00000000-0000-0000-0000-000000000001", "resource_group": "rg-app",
        "location": machines["location"].to_numpy()[pick], "region": None,
        "message": [f"{n} deploys an unpinned image." for n in names],
        "remediation": "Pin the version.", "evidence": '{"image_version": "latest"}',
        "exempted": False, "exemption_reason": None, "status": None,
        "fingerprint": [f"{r}:{i.lower()}" for r, i in zip(rule, ids, strict=True)],
        "monthly_cost": np.nan})
    frame.iloc[::50, frame.columns.get_loc("resource_name")] = "=HYPERLINK(\"x\",\"y\")"
    return frame[FINDING_COLUMNS]


def run_one(mode: str, findings: int, machines: int) -> dict:
    started = time.perf_counter()
    estate = synthetic_estate(machines)
    frame = synthetic_findings(estate, findings)
    cost = estimate(estate)
    frame = cost.with_finding_costs(frame)
    prepared = time.perf_counter() - started
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    context = {"as_of": "2026-11-15T06:00:00+00:00"}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("report.html" if mode == "html" else "bench.xlsx")
        started = time.perf_counter()
        if mode == "html":
            write_html(path, frame, context, cost=cost)
        else:
            write_workbook(path, frame, estate.tables, context, cost=cost,
                           write_only=(mode == "write-only"))
        seconds = time.perf_counter() - started
        size = path.stat().st_size
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "findings": findings, "machines": machines,
            "seconds": round(seconds, 1), "prepare_seconds": round(prepared, 1),
            "peak_rss_mb": round(after / 1024), "write_peak_mb": round((after - before) / 1024),
            "file_mb": round(size / 2**20, 1), "bytes_per_finding": round(size / findings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=200_000)
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--modes", default="write-only,normal,html")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.findings, args.machines)))
        return
    results = []
    for mode in args.modes.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--findings",
                              str(args.findings), "--machines", str(args.machines)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'mode':<11} {'findings':>9} {'machines':>9} {'write s':>8} {'peak RSS MB':>12} "
          f"{'write peak MB':>14} {'file MB':>8} {'B/finding':>10}")
    for r in results:
        print(f"{r['mode']:<11} {r['findings']:>9,} {r['machines']:>9,} {r['seconds']:>8} "
              f"{r['peak_rss_mb']:>12} {r['write_peak_mb']:>14} {r['file_mb']:>8} "
              f"{r['bytes_per_finding']:>10}")


if __name__ == "__main__":
    main()
