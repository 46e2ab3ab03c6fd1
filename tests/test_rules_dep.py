"""DEP: deprecated Marketplace images and operating systems past end of support (as-of
2026-11-15 unless a test says otherwise)."""

import json

from tests.builders import (
    azure_fixture,
    definition,
    gallery,
    marketplace,
    rid,
    version,
    vm,
    vmss,
)

JAMMY = marketplace(version="22.04.202410020")


def test_dep001_triggers_on_a_scheduled_deprecation_with_its_alternative(run_rule):
    findings = run_rule("DEP001", vm("a", image=JAMMY),
                        azure_fixture("marketplace_version_scheduled"))
    assert findings.iloc[0]["severity"] == "medium"
    assert findings.iloc[0]["message"] == (
        "a uses Marketplace image Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:"
        "22.04.202410020, which is scheduled for deprecation on 2027-01-15; Azure names the "
        "alternative Offer Canonical:ubuntu-24_04-lts:server.")


def test_dep001_is_high_once_the_scheduled_time_has_passed(run_rule):
    findings = run_rule("DEP001", vm("a", image=JAMMY),
                        azure_fixture("marketplace_version_scheduled"), as_of="2027-02-01")
    assert findings.iloc[0]["severity"] == "high"
    assert "was scheduled for deprecation on 2027-01-15" in findings.iloc[0]["message"]


def test_dep001_latest_uses_the_exact_version_and_a_404_is_a_finding(run_rule):
    body = azure_fixture("marketplace_version_scheduled")
    gone = {"id": body["id"].replace("22.04.202410020", "22.04.202301010"),
            "error": {"code": "NotFound", "message": "Artifact: VMImage was not found."}}
    latest = vmss("s", image=marketplace(version="latest", exactVersion="22.04.202301010"))
    findings = run_rule("DEP001", latest, gone)
    assert findings.iloc[0]["severity"] == "high"
    assert "22.04.202301010, which no longer exists" in findings.iloc[0]["message"]


def test_dep001_pass_when_active_or_not_read(run_rule):
    active = azure_fixture("marketplace_version_active_cli")
    assert run_rule("DEP001", vm("a", image=JAMMY), active).empty
    # Not read (no --marketplace): unknown, not a finding.
    assert run_rule("DEP001", vm("a", image=JAMMY)).empty
    # Read in another region: not this machine's image.
    assert run_rule("DEP001", vm("a", image=JAMMY, location="eastus"),
                    azure_fixture("marketplace_version_scheduled")).empty


CENTOS7 = {"publisher": "OpenLogic", "offer": "CentOS", "sku": "7_9-gen2", "version": "latest"}
WS2012R2 = {"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer",
            "sku": "2012-R2-Datacenter", "version": "latest"}


def test_dep002_triggers_on_marketplace_os_past_end(run_rule):
    findings = run_rule("DEP002", vm("old", image=CENTOS7))
    row = findings.iloc[0]
    assert row["severity"] == "high"
    assert row["message"] == ("old runs OpenLogic:CentOS:7_9-gen2, CentOS 7: end of standard "
                              "support 2024-06-30 (ended 868 days ago).")
    assert json.loads(row["evidence"])["source"] == (
        "https://learn.microsoft.com/azure/virtual-machines/workloads/centos/centos-end-of-life")


def test_dep002_end_extended_counts_esu_and_shows_days_left(run_rule):
    standard = run_rule("DEP002", vm("win", image=WS2012R2))
    assert "ended 1132 days ago; ESU (free on Azure) runs to 2026-10-13" in \
        standard.iloc[0]["message"]
    extended = run_rule("DEP002", vm("win", image=WS2012R2), params={"end": "extended"},
                        as_of="2026-06-01")
    assert extended.iloc[0]["severity"] == "medium"
    assert "end of ESU (free on Azure) 2026-10-13 (ends in 134 days)" in \
        extended.iloc[0]["message"]


def test_dep002_triggers_on_definitions_by_identifier_and_builder_tag(run_rule):
    by_identifier = definition("bionic", identifier={
        "publisher": "Canonical", "offer": "UbuntuServer", "sku": "18.04-LTS"})
    tagged = version("1.0.0", definition_name="base",
                     tags={"baseosimg": "RedHat:RHEL:7-LVM:7.9.2021051701"})
    findings = run_rule("DEP002", gallery(), definition(), by_identifier, tagged)
    assert sorted(findings["resource_name"]) == ["base", "bionic"]
    assert set(findings["resource_type"]) == {"Microsoft.Compute/galleries/images"}


def test_dep002_overrides_come_first(run_rule):
    override = [{"os": "Contoso Linux 1", "pattern": "^contoso:base:", "standard_end": "2026-01-01"}]
    findings = run_rule("DEP002", gallery(), definition(), params={"overrides": override})
    assert "Contoso Linux 1: end of standard support 2026-01-01" in findings.iloc[0]["message"]


def test_dep002_pass_on_supported_os_and_far_dates(run_rule):
    # Ubuntu 22.04 ends 2027-06-30: beyond 180 days on 2026-11-15, within 365.
    assert run_rule("DEP002", gallery(), definition(), vm("a", image=JAMMY)).empty
    assert len(run_rule("DEP002", vm("a", image=JAMMY), params={"due_within_days": 365})) == 1
    assert run_rule("DEP002", vm("w", image=dict(WS2012R2, sku="2022-datacenter-g2"))).empty
    assert rid("x")  # builders import stays used


def test_dep001_from_saved_get_bodies_through_import(tmp_path, rules):
    """`import` takes the saved version GET bodies (REST or `az vm image show`), named by
    their own `id`, beside the machines."""
    from auditor.engine import evaluate
    from auditor.estate import Estate
    from auditor.importer import import_files

    files = []
    for index, item in enumerate([[vm("a", image=JAMMY)],
                                  azure_fixture("marketplace_version_scheduled")]):
        files.append(tmp_path / f"{index}.json")
        files[-1].write_text(json.dumps(item))
    snapshot = import_files(files, collected_at=None)
    table = snapshot.tables["marketplace_versions"]
    assert table.iloc[0]["location"] == "westeurope" and table.iloc[0]["sku"] == "22_04-lts-gen2"
    findings = evaluate(Estate(snapshot, as_of="2026-11-15"), [rules["DEP001"]])
    assert list(findings["resource_name"]) == ["a"]


def test_dep002_config_overrides_are_validated_with_one_line_errors(rules):
    import pytest

    from auditor.engine import apply_config
    from auditor.errors import AuditError

    pack = list(rules.values())
    for params, fragment in [({"end": "both"}, "params.end: bad value 'both'"),
                             ({"overrides": [{"os": "X", "pattern": "(", "standard_end":
                                              "2026-01-01"}]}, "overrides[0].pattern"),
                             ({"overrides": [{"os": "X", "pattern": "^x:"}]},
                              "missing required field 'standard_end'")]:
        with pytest.raises(AuditError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            apply_config(pack, {"rules": {"DEP002": {"params": params}}})


def test_arm_bodies_in_json_lines_read_as_in_a_document(tmp_path):
    """A JSON lines block holding ARM GET bodies (no `type`, or a lock list) is read by the
    per-resource normaliser, with the same rows as a JSON document gives."""
    from auditor.importer import import_files
    from tests.test_rules_rep_storage import LOCKS, lock

    items = [vm("a", image=JAMMY), azure_fixture("marketplace_version_scheduled"),
             {"id": LOCKS, "value": [lock("/subscriptions/" + rid("x").split("/")[2])]}]
    lines, document = tmp_path / "e.jsonl", tmp_path / "e.json"
    lines.write_text("".join(json.dumps(item) + "\n" for item in items))
    document.write_text(json.dumps(items))
    as_lines, as_document = import_files([lines]), import_files([document])
    for table in ("machines", "marketplace_versions", "locks", "lock_reads"):
        assert len(as_lines.tables[table]) == 1
        assert as_lines.table_hashes[table] == as_document.table_hashes[table]
