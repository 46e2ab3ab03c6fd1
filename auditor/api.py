"""The audit as one library call. `image-audit audit`, `cost` and `cleanup-plan` are this call
plus option parsing and output, so a notebook gets the findings, counts, cost and savings
the reports show, from the same code:

    import auditor
    run = auditor.audit("snapshots/2026-12-01", config="image-audit.yaml", as_of="2026-12-01")
    run.counts["open_by_severity"]        # what every report counts
    run.findings[run.findings.severity == "high"]
    run.savings["deletable_now"]          # what cleanup-plan would delete
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from auditor import __version__
from auditor import cost as costing
from auditor import prices as price_table
from auditor.baseline import load_baseline
from auditor.cleanup import CleanupPlan, cleanup_plan
from auditor.engine import (
    FINGERPRINT_VERSION,
    Rule,
    apply_config,
    evaluate,
    load_config,
    load_rules,
    rules_dir,
)
from auditor.errors import AuditError
from auditor.estate import Estate
from auditor.exemptions import Exemptions, load_exemptions
from auditor.importer import sample_config, sample_exemptions_path, sample_snapshot
from auditor.report import cost_totals, coverage, file_sha256, summary
from auditor.snapshot import Snapshot

SAMPLE = "sample"  # `audit("sample")`: the bundled fictional estate, with its policy


@dataclass
class Audit:
    """One audit: the findings (with cost, exemption and baseline status), the storage cost,
    the cleanup plan the savings come from, and the context every report records."""

    snapshot: Snapshot
    estate: Estate
    rules: list[Rule]
    findings: pd.DataFrame
    cost: costing.Cost
    plan: CleanupPlan
    context: dict
    exemptions: Exemptions | None = None
    resolved: list[dict] = field(default_factory=list)
    history: object | None = None  # auditor.history.History, when the run was recorded

    @property
    def counts(self) -> dict:
        """Open findings by severity and rule, exempted apart: the one count convention."""
        return summary(self.findings)

    @property
    def savings(self) -> dict:
        """Monthly savings deletable now (the plan's deletions) and blocked."""
        return self.plan.savings()


def file_evidence(path: Path) -> dict:
    """A file the run read, as evidence: its path and SHA-256."""
    try:
        digest = file_sha256(Path(path))
    except OSError as exc:
        raise AuditError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return {"path": str(path), "sha256": digest}


def rule_pack(config: Path | str | dict | None = None, sample: bool = False) -> list[Rule]:
    """The rule pack with a config applied: a file, a dict, or none. The sample's own
    policy comes first when auditing the sample; the given config still applies on top."""
    rules = load_rules()
    if sample:
        rules = apply_config(rules, sample_config(), where="sample config")
    if isinstance(config, dict):
        return apply_config(rules, config, where="config")
    path = Path(config) if config is not None else None
    return apply_config(rules, load_config(path), where=str(path or "config"))


def rule_pack_hashes() -> dict[str, str]:
    """SHA-256 of each rule file, so a report names the exact rule pack that produced it."""
    return {path.name: file_sha256(path) for path in sorted(rules_dir().glob("*.yaml"))}


def parse_time(value: str | datetime | None, option: str = "as_of") -> datetime | None:
    """An ISO 8601 time (a date alone is midnight); one without a zone is UTC."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        raise AuditError(f"{option}: cannot parse {value!r} as a date or time "
                         "(use ISO 8601, like 2026-11-15 or 2026-11-15T06:00:00Z)") from None
    if stamp is pd.NaT:
        raise AuditError(f"{option}: cannot parse {value!r} as a date or time")
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).to_pydatetime()


def audit(snapshot: Snapshot | Path | str, *, config: Path | str | dict | None = None,
          exemptions: Path | str | None = None, baseline: Path | str | None = None,
          as_of: str | datetime | None = None, prices: Path | str | None = None,
          occupancy: float | None = None, retain_tag: str | None = None,
          rule_ids: tuple[str, ...] | None = None, history: Path | str | None = None) -> Audit:
    """Evaluate the rule pack over a snapshot (a folder, a Snapshot, or "sample") and price
    its storage. `exemptions` and `baseline` are files; `as_of` is the "now" of time-based
    rules (default: the snapshot's time); `rule_ids` evaluates only those rules (cost and
    cleanup-plan need only the deletion rules); `history` is a folder the run is appended to,
    whose earlier runs give each finding its first_seen and age. Raises AuditError with a one-line message
    on bad input."""
    sample = isinstance(snapshot, str) and snapshot == SAMPLE
    rules = rule_pack(config, sample=sample)
    if sample and exemptions is None:
        exemptions = sample_exemptions_path()
    accepted = load_exemptions(Path(exemptions), rules) if exemptions is not None else None
    earlier = load_baseline(Path(baseline)) if baseline is not None else None
    if history is not None:
        from auditor import history as run_history
        run_history.open_folder(history, create=True)  # a bad folder fails before the audit
    if isinstance(snapshot, Snapshot):
        loaded, label = snapshot, "snapshot object"
    elif sample:
        loaded, label = sample_snapshot(), "sample estate"
    else:
        loaded, label = Snapshot.read(Path(snapshot)), str(snapshot)
    estate = Estate(loaded, parse_time(as_of, "--as-of"))
    evaluated = [rule for rule in rules if rule_ids is None or rule.id in rule_ids]
    findings = evaluate(estate, evaluated)
    if accepted is not None:
        findings = accepted.apply(findings, estate, evaluated)
    cost = costing.estimate(estate, price_table.load_prices(Path(prices) if prices else None),
                            occupancy)
    findings = cost.with_finding_costs(findings)
    if retain_tag is None:
        retain_tag = next((str(r.params["retain_tag"]) for r in rules if "retain_tag" in r.params),
                          "retain")
    retention = next((dict(r.params) for r in rules if r.id == "RET001" and r.enabled), None)
    plan = cleanup_plan(findings, estate, retain_tag=retain_tag,
                        monthly_cost=cost.resource_costs, currency=cost.currency,
                        retention=retention)
    context = {
        "tool_version": __version__,
        "snapshot": label,
        "snapshot_sha256": loaded.sha256,
        "collected_at": loaded.manifest["collected_at"],
        "as_of": estate.as_of.isoformat(),
        "manifest": loaded.manifest,
        "table_hashes": loaded.table_hashes,
        "rule_pack": rule_pack_hashes(),
        "coverage": coverage(loaded.tables, loaded.manifest),
        "cost_basis": cost.basis,
        "savings": plan.savings(),
        "fingerprint_version": FINGERPRINT_VERSION,
    }
    if isinstance(config, (str, Path)):
        context["config"] = file_evidence(Path(config))
    if accepted is not None:
        context["exemptions"] = str(exemptions)
        context["exemptions_sha256"] = file_evidence(Path(exemptions))["sha256"]
    resolved: list[dict] = []
    if earlier is not None:
        findings, resolved = earlier.compare(findings)
        context["baseline"] = earlier.summary(findings, resolved)
        context["resolved"] = resolved
    recorded = None
    if history is not None:
        recorded_now = run_history.record(history, findings, context,
                                          cost_totals(cost, findings, plan))
        recorded = run_history.load(history)
        findings = run_history.annotate(recorded, findings, context)
        context["history"] = {"folder": str(history), "runs": len(recorded.runs),
                              "recorded": recorded_now}
        context["trend"] = run_history.trend(recorded)
    return Audit(snapshot=loaded, estate=estate, rules=rules, findings=findings, cost=cost,
                 plan=plan, context=context, exemptions=accepted, resolved=resolved,
                 history=recorded)
