"""Collect a synthetic 100,000-VM estate from the fake Resource Graph holding the default quota
(15 requests per 5 seconds per user), with 0, 0.3, 1 and 2 s of latency per page, and write the
figures to bench/collect_results.md. Not part of the test suite: a run takes a few minutes.

    python bench/bench_collect.py [--vms 100000] [--latency 0 0.3 1 2]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.core.credentials import AccessToken  # noqa: E402

from auditor.collect import Scope, collect_resources  # noqa: E402
from tests.fake_arg import FakeArg, estate  # noqa: E402

QUOTA, WINDOW = 15, 5.0


class Credential:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("bench", int(time.time()) + 3600)


FAULTS = [("500", 4), ("drop", 2), ("429-bare", 4)]


def run(rows, names, latency: float, workers: int, faults=()) -> dict:
    with FakeArg(rows, subscriptions=names, quota=QUOTA, window=WINDOW, latency=latency) as fake:
        for kind, times in faults:
            fake.add_fault(kind, times=times, when=lambda body, path: "$skipToken" in str(body))
        started = time.monotonic()
        got = collect_resources(Scope(), credential=Credential(), endpoint=fake.endpoint, max_workers=workers)
        elapsed = time.monotonic() - started
        throttled = fake.throttled
    pages = got.stats["pages"]
    return {
        "faults": ", ".join(f"{n} x {kind}" for kind, n in faults) or "none",
        "latency": latency,
        "elapsed": elapsed,
        "floor": pages / (QUOTA / WINDOW),
        "pages": pages,
        "requests": got.stats["requests"],
        "retries": sum(got.stats["retries"].values()) + got.stats["throttled"],
        "throttled": throttled,
        "quota_waits": got.stats["quota_waits"],
        "rows": sum(got.stats["rows"].values()),
        "vms": got.stats["rows"]["virtual_machines"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100_000)
    parser.add_argument("--vms-per-subscription", type=int, default=250)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.3, 1.0, 2.0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "collect_results.md")
    args = parser.parse_args()
    subscriptions = math.ceil(args.vms / args.vms_per_subscription)
    rows, names = estate(subscriptions=subscriptions, vms=args.vms_per_subscription)
    print(f"estate: {len(rows):,} resources in {subscriptions} subscriptions", file=sys.stderr)
    runs = [(latency, ()) for latency in args.latency] + [(0.3, FAULTS)]
    results = []
    for latency, faults in runs:
        result = run(rows, names, latency, args.workers, faults)
        results.append(result)
        print(
            f"latency {latency:>4} s: {result['elapsed']:6.1f} s (floor {result['floor']:.1f} s, "
            f"{result['elapsed'] / result['floor']:.2f}x); {result['requests']} requests for "
            f"{result['pages']} pages; {result['throttled']} x 429",
            file=sys.stderr,
        )
    lines = [
        "# Collector benchmark",
        "",
        f"Synthetic estate: {args.vms:,} VMs in {subscriptions} subscriptions "
        f"({args.vms_per_subscription} each; half on a gallery version, with their OS disk), "
        f"{len(rows):,} resources in all, collected from the fake Resource Graph "
        f"(`tests/fake_arg.py`) holding the default quota of {QUOTA} requests per {WINDOW:g} s "
        f"per user, with the quota headers on every answer. Latency is added by the server to "
        f"every page. Page size 1000, subscription batches of 300, {args.workers} threads.",
        "",
        "The floor is pages needed / quota rate (3 requests a second): no client can be faster "
        "once the quota is the limit. Pages needed: 100 for the machines, 50 for the OS disks of "
        "gallery-made machines (the disk query keeps only those), and the rest for subscription "
        "discovery, the machine count per subscription that sizes the chains, scale sets, "
        "galleries, image definitions, versions and managed images. Retries are those forced by "
        "the injected faults (on paging requests); 429s counts the quota 429s the server "
        "answered, which pacing by the headers avoids.",
        "",
        "| latency per page | injected faults | elapsed | floor | elapsed / floor | requests sent "
        "| pages needed | retries | 429s (quota) | rows |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['latency']:g} s | {r['faults']} | {r['elapsed']:.1f} s | {r['floor']:.1f} s | "
            f"{r['elapsed'] / r['floor']:.2f}x | {r['requests']} | {r['pages']} | {r['retries']} "
            f"| {r['throttled']} | {r['rows']:,} |"
        )
    lines += [
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()}; run with `python bench/bench_collect.py`.",
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
