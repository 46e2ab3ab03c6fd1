"""Check pip-audit's JSON report for known vulnerabilities in image-audit's runtime
dependencies (the installed closure of its requirements, not the CI machine's own tools).

    pip-audit -f json -o report.json; python tools/audit_deps.py report.json

Exit 1 only for a known vulnerability; a missing report (advisory service unreachable) or a
package the service could not look up is a warning, so the network never makes CI flaky.
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata


def runtime_closure(root: str = "image-audit") -> set[str]:
    """Normalised names of `root` and everything its requirements pull in (no extras)."""
    seen, todo = set(), [root]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r]
    return seen


def main(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        print("pip-audit: no report (advisory service unreachable?); dependency audit skipped")
        return 0
    ours = runtime_closure()
    vulnerable, skipped, audited = [], [], 0
    for dep in report.get("dependencies", []):
        name = re.sub(r"[-_.]+", "-", dep.get("name", "")).lower()
        if name not in ours:
            continue
        if dep.get("skip_reason"):
            skipped.append(name)
        else:
            audited += 1
        for vuln in dep.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            vulnerable.append(f"{name} {dep.get('version')}: {vuln.get('id')} (fixed in {fixed})")
    if skipped:
        print(f"pip-audit: warning: {len(skipped)} dependencies could not be "
              f"looked up: {', '.join(sorted(skipped))}")
    for line in vulnerable:
        print(f"pip-audit: vulnerable: {line}")
    print(f"pip-audit: {audited} dependencies audited, "
          f"{len(vulnerable)} known vulnerabilities")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
