"""The bundled sample estate: in sync with its generator, and each rule fires exactly on the
resources built to trigger it (tagged `sample-case`) and on no clean one."""

import importlib.util
import json
from pathlib import Path

import pytest

from auditor.engine import INPUT_COLUMNS, apply_config, evaluate
from auditor.estate import Estate
from auditor.importer import sample_config, sample_snapshot

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample():
    return sample_snapshot()


@pytest.fixture(scope="module")
def sample_rules(rules):
    """The pack with the sample tenant's policy applied, as `audit --sample` runs it."""
    return {r.id: r for r in apply_config(list(rules.values()), sample_config())}


@pytest.fixture(scope="module")
def findings(sample, sample_rules):
    return evaluate(Estate(sample), [r for r in sample_rules.values() if r.enabled])


def test_sample_file_matches_generator():
    spec = importlib.util.spec_from_file_location("build_sample", ROOT / "tools" / "build_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "auditor" / "data" / "sample_estate.json").read_text(encoding="utf-8")
    assert committed == module.render(), "run: python tools/build_sample.py"


def test_sample_size(sample):
    tables = sample.tables
    assert tables["machines"]["subscription_id"].nunique() >= 3
    assert len(tables["galleries"]) >= 2 and len(tables["image_definitions"]) >= 6
    assert len(tables["image_versions"]) >= 40
    assert (tables["machines"]["kind"] == "vm").sum() >= 300
    assert (tables["machines"]["kind"] == "vmss").sum() >= 3
    assert len(tables["managed_images"]) >= 3
    assert {"marketplace", "gallery", "shared", "community", "managed", "vhd"} <= set(
        tables["machines"]["image_kind"])


def test_every_enabled_rule_fires(findings, sample_rules):
    enabled = {r.id for r in sample_rules.values() if r.enabled and not r.retired
               and not set(r.tables) & set(INPUT_COLUMNS)}  # EXM: tested in test_rules_exm
    assert enabled <= set(findings["rule_id"])


def test_every_rule_of_the_pack_fires(findings, rules):
    assert {r.id for r in rules.values() if not r.retired
            and not set(r.tables) & set(INPUT_COLUMNS)} <= set(findings["rule_id"])


def test_sample_coverage_gap(findings):
    gaps = findings[findings["rule_id"] == "COV001"]
    assert list(gaps["resource_name"]) == ["Northwind Contractors"]


SAMPLE_CASE_RULES = [
    "PIN001", "PIN002", "PIN003", "REP007", "REP012", "TAG001", "TAG002", "GEN001", "GEN002",
    "GEN003", "REP001", "REP002",
    "REP003", "REP004", "REP005", "REP006", "STL001", "STL002", "STL003", "STL004", "STL005",
    "RET001", "RET002", "RET003", "LIC001", "LEG001", "ENV001", "APR001", "VER001",
    "STL006", "SEC001", "SEC002", "SEC003", "IMG002", "DEP001", "DEP002", "REP011", "COV002"]


@pytest.mark.parametrize("rule_id", SAMPLE_CASE_RULES)
def test_findings_only_on_resources_built_for_them(sample, findings, rule_id):
    tags = sample.tables["resource_tags"]
    cases = tags[(tags["key"] == "sample-case")]
    built = set(cases.loc[cases["value"].str.split(",").map(lambda v: rule_id in v),
                          "resource_id"])
    flagged = set(findings.loc[findings["rule_id"] == rule_id, "fingerprint"]
                  .str.split(":", n=1).str[1].str.split("@").str[0])
    assert flagged == built


def test_sample_raw_json_shapes():
    document = json.loads((ROOT / "auditor" / "data" / "sample_estate.json").read_text())
    # Marketplace version GET bodies carry no `type` (their id says what they are).
    types = {item.get("type") for item in document["data"]}
    assert "microsoft.compute/galleries/images" in types and \
        "Microsoft.Compute/galleries/images" in types


def test_sharing_recovery_lineage_and_environment_findings(findings):
    """What SHR, REP008, LIC002 and ENV002 report on the sample tenant, resource by resource."""
    mine = findings[findings["rule_id"].isin(
        ["SHR001", "SHR002", "SHR003", "REP008", "LIC002", "ENV002"])]
    assert sorted(zip(mine["rule_id"], mine["resource_name"], strict=True)) == [
        ("ENV002", "gal_apps_shared"),  # batch-worker is tagged dev
        ("LIC002", "fortigate-hardened"), ("LIC002", "vm-fw-gallery-01"),
        ("REP008", "fortigate-hardened/1.0.0"), ("REP008", "gal_apps_shared"),
        ("REP008", "gal_network_appliances"), ("REP008", "gal_platform_prod"),
        # the security cases' versions are replicated to westeurope only
        ("REP008", "ubuntu-24-tl/1.0.0"), ("REP008", "win2016-gen1/1.0.0"),
        ("SHR001", "gal_community"), ("SHR002", "gal_network_appliances"),
        ("SHR003", "vm-community-pinned"), ("SHR003", "vm-community-unpinned"),
        ("SHR003", "vm-shared-0"), ("SHR003", "vm-shared-1"), ("SHR003", "vm-shared-2"),
        ("SHR003", "vm-shared-3")]


def test_sample_locks_and_marketplace_reads(findings):
    """Lock lists were saved for the platform and apps subscriptions only: their galleries
    without a delete lock are REP009 findings; the data subscription's are unknown."""
    assert sorted(findings.loc[findings["rule_id"] == "REP009", "resource_name"]) == [
        "gal_community", "gal_network_appliances", "gal_partner", "gal_sandbox",
        "gal_team_sandbox"]
    dep001 = findings[findings["rule_id"] == "DEP001"].set_index("resource_name")["severity"]
    assert dep001.to_dict() == {"vm-focal-deprecated": "high", "vmss-jammy-gone": "high",
                                "vm-jammy-scheduled": "medium"}
