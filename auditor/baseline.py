"""Baselines: compare a run with an earlier run's findings.json, so CI can fail on what is new
and a report can say what was fixed.

Findings are matched by fingerprint (rule id with the normalised resource id, and the region
for per-region rules), compared ignoring case so that a baseline written before or after a
casing change in Azure still matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from auditor.errors import AuditError


@dataclass
class Baseline:
    """The findings of an earlier run, as findings.json lists them."""

    file: str
    findings: list[dict]

    def compare(self, findings: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
        """The findings with status new or existing, and the baseline's findings that are
        gone (status resolved), in the baseline's order."""
        earlier = pd.Series([f["fingerprint"] for f in self.findings], dtype="object").str.lower()
        current = findings["fingerprint"].astype(str).str.lower()
        findings = findings.assign(status=current.isin(earlier).map({True: "existing",
                                                                    False: "new"}))
        gone = ~earlier.isin(current).to_numpy()
        resolved = [{**finding, "status": "resolved"}
                    for finding, is_gone in zip(self.findings, gone, strict=True) if is_gone]
        return findings, resolved

    def summary(self, findings: pd.DataFrame, resolved: list[dict]) -> dict:
        """Counts for the run context: what the baseline was and how this run compares."""
        status = findings["status"].value_counts()
        return {"file": self.file, "new": int(status.get("new", 0)),
                "existing": int(status.get("existing", 0)), "resolved": len(resolved)}


def load_baseline(path: Path) -> Baseline:
    """Read an earlier findings.json; a file of any other shape is a one-line error."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuditError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise AuditError(f"{path}: not a findings.json (malformed JSON: {exc})") from None
    findings = document.get("findings") if isinstance(document, dict) else None
    if not isinstance(findings, list):
        raise AuditError(f"{path}: not a findings.json (no 'findings' list)")
    for index, finding in enumerate(findings):
        if not isinstance(finding, dict) or not isinstance(finding.get("fingerprint"), str) \
                or not finding["fingerprint"]:
            raise AuditError(f"{path}: findings[{index}] has no 'fingerprint'")
    return Baseline(file=str(path), findings=findings)
