"""The cleanup plan: which flagged versions and images get a delete command, which are blocked
and why, and a script that is quoted, commented, never executable and never run by the tool."""

import json
import os
import shlex
import shutil
import stat
import subprocess

import pandas as pd
import pytest

from auditor.cleanup import cleanup_plan
from auditor.cli import main
from auditor.cost import estimate
from auditor.engine import FINDING_COLUMNS
from auditor.estate import Estate
from auditor.snapshot import Snapshot
from tests.builders import (
    GOOD_TAGS,
    SUB,
    azure_shape,
    definition,
    disk,
    estate_of,
    gallery,
    gallery_ref,
    managed_image,
    version,
    vm,
    vmss,
)

VERSION = "Microsoft.Compute/galleries/images/versions"
IMAGE = "Microsoft.Compute/images"
CONTEXT = {"tool_version": "9.9", "snapshot": "snaps/2026-11-15", "snapshot_sha256": "ab12" * 16,
           "as_of": "2026-11-15T00:00:00+00:00"}


def flag(resource: dict, rule_id="RET001", exempted=False, reason=None, message=None) -> dict:
    """A finding as the engine builds it, for the resource (the RET/STL rules' own tests
    check when they fire; these check what the plan does with what they flag)."""
    row = dict.fromkeys(FINDING_COLUMNS)
    resource_type = VERSION if "/versions/" in resource["id"] else IMAGE
    row.update(rule_id=rule_id, resource_id=resource["id"], resource_type=resource_type,
               resource_name=resource["name"], message=message or f"{resource['name']} is old",
               exempted=exempted, exemption_reason=reason, severity="low",
               fingerprint=f"{rule_id}:{resource['id'].lower()}")
    return row


def built_from(item: dict, image: dict) -> dict:
    item["properties"]["storageProfile"]["source"] = {"id": image["id"]}
    return item


def plan_for(resources, flagged, **options):
    findings = pd.DataFrame([flag(*f) if isinstance(f, tuple) else flag(f) for f in flagged],
                            columns=FINDING_COLUMNS)
    return cleanup_plan(findings, estate_of(gallery(), definition(), *resources), **options)


def blocked(plan) -> dict:
    return dict(zip(plan.blocked["label"], plan.blocked["reason"], strict=True))


V1, V2, V3 = version("1.0.0", published="2025-01-10T00:00:00Z"), version("1.1.0"), version("1.2.0")


def test_unused_old_version_gets_a_commented_delete_command():
    plan = plan_for([V1, V2, V3], [V1])
    assert plan.blocked.empty
    row = plan.deletions.iloc[0]
    assert row["label"] == "image version gal/base/1.0.0" and row["rules"] == "RET001"
    assert row["why"] == [
        "flagged: 1.0.0 is old",
        "unused: no VM or scale set model references it, and no scale set runs instances "
        "created from it",
        "age: published 2025-01-10, 674 days before the as-of date",
        "not the newest: base keeps 1.2.0",
        "not marked to retain: no `retain` tag"]
    assert shlex.split(row["command"]) == [
        "az", "sig", "image-version", "delete", "--subscription", SUB, "-g", "rg-img",
        "-r", "gal", "-i", "base", "-e", "1.0.0"]


def test_only_deletion_findings_of_versions_and_images_count():
    """STL005 (no end-of-life date) is a reason to fix a version, not to delete it."""
    plan = plan_for([V1, V2, V3, vm()], [(V1, "TAG001"), (V2, "STL001"), (V1, "PIN001"),
                                         (V1, "STL005"), (V1, "RET003")])
    assert list(plan.deletions["label"]) == ["image version gal/base/1.1.0"]
    assert list(plan.deletions["rules"]) == ["STL001"]


def test_several_findings_on_one_version_give_one_command():
    plan = plan_for([V1, V2, V3], [V1, (V1, "STL001")])
    assert list(plan.deletions["rules"]) == ["RET001, STL001"]


@pytest.mark.parametrize("machine, reason", [
    (vmss("ss1", image=gallery_ref(version_name="1.0.0"), capacity=4),
     "still used by scale set ss1 (capacity 4, may scale out)"),
    (vm("vm1", image=gallery_ref(version_name="1.0.0")), "still used by VM vm1"),
])
def test_version_a_machine_references_is_blocked(machine, reason):
    plan = plan_for([V1, V2, V3, machine], [V1])
    assert plan.deletions.empty
    assert blocked(plan) == {"image version gal/base/1.0.0": reason}


def test_version_a_scale_set_was_created_from_is_blocked():
    """The scale set's model may point elsewhere now, but its instances came from 1.0.0."""
    scale_set = vmss("ss1", image=gallery_ref(version_name="1.2.0"), capacity=2)
    plan = plan_for([V1, V2, V3, scale_set, disk(scale_set, V1["id"])], [V1])
    assert blocked(plan) == {"image version gal/base/1.0.0":
                             "still used by scale set ss1 (capacity 2, may scale out)"}


def test_version_a_vm_disk_was_created_from_is_not_blocked():
    """A VM's OS disk is its own copy; deleting the version does not touch it."""
    machine = vm("vm1", image=gallery_ref(version_name="1.2.0"))
    plan = plan_for([V1, V2, V3, machine, disk(machine, V1["id"])], [V1])
    assert list(plan.deletions["label"]) == ["image version gal/base/1.0.0"]


def test_newest_version_is_kept():
    plan = plan_for([V1, V2, V3], [V1, V2, V3])
    assert list(plan.deletions["label"]) == ["image version gal/base/1.0.0",
                                             "image version gal/base/1.1.0"]
    assert blocked(plan) == {"image version gal/base/1.2.0":
                             "it is the newest version of base; keep at least one"}


def test_version_that_unversioned_references_resolve_to_is_blocked():
    newest_excluded = version("1.2.0", exclude_from_latest=True)
    machine = vm("vm-float", image=gallery_ref(version_name=None))
    # its OS disk records the version it was created from: what it runs is known
    plan = plan_for([V1, V2, newest_excluded, machine, disk(machine, V1["id"])], [V2])
    assert blocked(plan) == {"image version gal/base/1.1.0": "machines that reference the "
                             "definition without a version get this one in their region: "
                             "vm-float"}


def test_no_version_is_deleted_under_a_latest_user_that_records_none():
    """A scale set on `latest` whose instances record no version (no OS disk resource: a
    Uniform set, an ephemeral OS disk) may run any version of the definition."""
    machine = vmss("vmss-float", image=gallery_ref(version_name=None), capacity=3)
    plan = plan_for([V1, V2, V3, machine], [V1])
    assert plan.deletions.empty
    assert "used by vmss-float through `latest` with no recorded version" in \
        blocked(plan)["image version gal/base/1.0.0"]


def test_latest_is_judged_per_region():
    """In eastus, where 1.1.0 has no replica, `latest` gives 1.0.0: that one stays."""
    older = version("1.0.0", regions=(("West Europe", 1, "Standard_LRS"),
                                      ("East US", 1, "Standard_LRS")))
    newer = version("1.1.0")
    machine = vm("vm-east", image=gallery_ref(version_name=None), location="eastus")
    plan = plan_for([older, newer, V3, machine, disk(machine, V3["id"])], [older, newer])
    assert list(plan.deletions["label"]) == ["image version gal/base/1.1.0"]
    assert blocked(plan) == {"image version gal/base/1.0.0": "machines that reference the "
                             "definition without a version get this one in their region: "
                             "vm-east"}


@pytest.mark.parametrize("value, is_blocked", [("true", True), ("until-2027", True),
                                               ("false", False), ("No", False)])
def test_retain_tag(value, is_blocked):
    kept = version("1.0.0", tags=GOOD_TAGS | {"Retain": value})
    plan = plan_for([kept, V2, V3], [kept])
    assert bool(len(plan.blocked)) is is_blocked
    if is_blocked:
        assert plan.blocked["reason"].iloc[0] == "marked to retain (tag `retain`)"


def test_retain_tag_name_is_an_option():
    kept = version("1.0.0", tags=GOOD_TAGS | {"do-not-delete": "yes"})
    assert len(plan_for([kept, V2, V3], [kept]).deletions) == 1
    plan = plan_for([kept, V2, V3], [kept], retain_tag="do-not-delete")
    assert blocked(plan) == {"image version gal/base/1.0.0":
                             "marked to retain (tag `do-not-delete`)"}


def test_exempted_finding_is_blocked_with_its_reason():
    plan = plan_for([V1, V2, V3], [(V1, "RET001", True, "golden image for audits")])
    assert blocked(plan) == {"image version gal/base/1.0.0":
                             "finding exempted: golden image for audits"}


def test_gallery_deletion_lock_before_end_of_life_blocks():
    locked = version("1.0.0", end_of_life="2027-06-30T00:00:00Z")
    locked["properties"]["safetyProfile"]["blockDeletionBeforeEndOfLife"] = True
    past = version("1.1.0", end_of_life="2026-06-30T00:00:00Z")
    past["properties"]["safetyProfile"]["blockDeletionBeforeEndOfLife"] = True
    plan = plan_for([locked, past, V3], [locked, past])
    assert blocked(plan) == {"image version gal/base/1.0.0": "the gallery blocks deleting it "
                             "before its end of life (2027-06-30); to delete it sooner, set an "
                             "earlier date first (az sig image-version update --end-of-life-date)"}
    assert list(plan.deletions["label"]) == ["image version gal/base/1.1.0"]


def test_reasons_accumulate():
    kept = version("1.2.0", tags=GOOD_TAGS | {"retain": "1"})
    plan = plan_for([V1, V2, kept, vm("vm1", image=gallery_ref(version_name="1.2.0"))], [kept])
    assert blocked(plan) == {"image version gal/base/1.2.0": "still used by VM vm1; it is the "
                             "newest version of base; keep at least one; marked to retain "
                             "(tag `retain`)"}


def test_managed_images():
    unused, in_use = managed_image("img-unused"), managed_image("img-in-use")
    source_kept, source_deleted = managed_image("img-src-kept"), managed_image("img-src-gone")
    resources = [unused, in_use, source_kept, source_deleted,
                 built_from(version("1.0.0"), source_deleted),
                 built_from(version("1.1.0"), source_kept), V3,
                 vm("vm1", image={"id": in_use["id"]})]
    flagged = [(image, "RET002") for image in (unused, in_use, source_kept, source_deleted)]
    plan = plan_for(resources, flagged + [resources[4]])
    assert list(plan.deletions["label"]) == ["image version gal/base/1.0.0",
                                             "managed image img-src-gone",
                                             "managed image img-unused"]
    assert blocked(plan) == {
        "managed image img-in-use": "still used by VM vm1",
        "managed image img-src-kept": "gallery version(s) gal/base/1.1.0 were built from it"}
    assert shlex.split(plan.deletions["command"].iloc[2]) == [
        "az", "image", "delete", "--subscription", SUB, "-g", "rg-img", "-n", "img-unused"]


def test_monthly_cost_is_shown_when_known():
    cost = pd.Series({V1["id"].lower(): 1.5})
    plan = plan_for([V1, V2, V3], [V1, V2], monthly_cost=cost)
    assert plan.deletions.set_index("label")["why"].map(lambda lines: lines[-1]).to_dict() == {
        "image version gal/base/1.0.0": "saves: about 1.50 USD per month",
        "image version gal/base/1.1.0": "not marked to retain: no `retain` tag"}
    assert "2 deletion(s), 0 blocked item(s); saves about 1.50 USD per month" in plan.script(CONTEXT)
    assert "per month" not in plan_for([V1, V2, V3], [V1]).script(CONTEXT)


# --- the script -----------------------------------------------------------------------------

def hostile_plan():
    """Names that mean something to a shell: resource groups may hold parentheses and
    Unicode, and a message can carry whatever a tag or name held."""
    rg = "rg (prod)'s $(touch pwned) `x`"
    gallery_id = f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/galleries/g"
    item, newest = version("1.0.0"), version("1.1.0")
    item["id"] = gallery_id + "/images/base/versions/1.0.0"
    newest["id"] = gallery_id + "/images/base/versions/1.1.0"
    findings = pd.DataFrame([flag(item, message="x\ntouch injected #\r\u2028az vm delete")],
                            columns=FINDING_COLUMNS)
    estate = estate_of(gallery(), definition(), item, newest)
    return cleanup_plan(findings, estate), rg


def test_script_header_and_quoting():
    plan, rg = hostile_plan()
    script = plan.script(CONTEXT)
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in lines
    assert "NOTHING HAS BEEN RUN" in lines[1]
    assert f"# snapshot: snaps/2026-11-15 (sha256 {'ab12' * 16})" in lines
    assert "# as of: 2026-11-15T00:00:00+00:00" in lines
    commands = [line for line in lines if line and not line.startswith(("#", "set "))]
    assert len(commands) == 1
    assert shlex.split(commands[0])[6:8] == ["-g", rg]
    assert "#   flagged: x\\x0atouch injected #\\x0d\\u2028az vm delete" in lines


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_runs_only_its_commands_with_exact_arguments(tmp_path):
    """Run the script against a stand-in `az` that records its arguments: the proof that
    quoting holds and that no comment text escapes into a command."""
    plan, rg = hostile_plan()
    script = tmp_path / "cleanup.sh"
    script.write_text(plan.script(CONTEXT))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "az"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> "$AZ_LOG"\necho --- >> "$AZ_LOG"\n')
    fake.chmod(0o755)
    log = tmp_path / "az.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "AZ_LOG": str(log)}
    subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, check=True, timeout=30)
    assert log.read_text().split("\n")[:-1] == [
        "sig", "image-version", "delete", "--subscription", SUB, "-g", rg, "-r", "g",
        "-i", "base", "-e", "1.0.0", "---"]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "injected").exists()


def test_unexpected_id_is_blocked_not_guessed():
    odd = managed_image("img-odd")
    findings = pd.DataFrame([flag(odd, "RET002")], columns=FINDING_COLUMNS)
    estate = estate_of(odd)
    estate.tables["managed_images"] = estate.tables["managed_images"].assign(
        arm_id="/providers/Microsoft.Compute/images/img-odd")
    plan = cleanup_plan(findings, estate)
    assert plan.deletions.empty
    assert list(plan.blocked["reason"]) == [
        "its id is not in the form the delete command needs; delete it by hand if at all"]


def test_empty_plan_says_so():
    script = plan_for([V1], []).script(CONTEXT)
    assert "# Nothing to delete." in script and "\naz " not in script


# --- the command line -------------------------------------------------------------------------

def test_cli_writes_a_reviewable_non_executable_script(tmp_path, capsys):
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps([gallery(), definition(), V1, V2, V3]))
    with pytest.raises(SystemExit):
        main(["import", str(raw), "-o", str(tmp_path / "snap"), "--collected-at", "2026-11-15"])
    capsys.readouterr()
    out = tmp_path / "plans" / "cleanup.sh"
    with pytest.raises(SystemExit) as info:
        main(["cleanup-plan", str(tmp_path / "snap"), "-o", str(out)])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out}: ") and printed.endswith("nothing was run\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    text = out.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "# as of: 2026-11-15T00:00:00+00:00" in text
    assert [p.name for p in out.parent.iterdir()] == ["cleanup.sh"]  # no temporary left behind
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(out)], check=True, timeout=30)


def test_cli_needs_a_snapshot_or_sample(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["cleanup-plan", "-o", str(tmp_path / "c.sh")])
    assert info.value.code == 2 and not (tmp_path / "c.sh").exists()


# --- with the shipped rules -------------------------------------------------------------------

def test_cli_with_the_shipped_retention_rules(tmp_path, capsys):
    """Seven unused versions published long ago: RET001 keeps the newest five, so the plan
    deletes the two oldest; the unused managed image (RET002) goes too."""
    old = [version(f"1.{minor}.0", published=f"2025-0{minor + 1}-01T00:00:00Z")
           for minor in range(7)]
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps([gallery(), definition(), *old, managed_image("img-old"), vm()]))
    with pytest.raises(SystemExit):
        main(["import", str(raw), "-o", str(tmp_path / "snap"), "--collected-at", "2026-11-15"])
    out = tmp_path / "cleanup.sh"
    with pytest.raises(SystemExit) as info:
        main(["cleanup-plan", str(tmp_path / "snap"), "-o", str(out)])
    assert info.value.code == 0
    text = out.read_text()
    commands = [shlex.split(line) for line in text.splitlines() if line.startswith("az ")]
    assert [c[-1] for c in commands] == ["1.0.0", "1.1.0", "img-old"]

    # What each deletion saves comes from the cost estimate, with its basis in the header.
    cost = estimate(Estate(Snapshot.read(tmp_path / "snap")))
    deleted = [old[0]["id"], old[1]["id"], managed_image("img-old")["id"]]
    monthly = cost.resource_costs.loc[[i.lower() for i in deleted]]
    assert monthly.notna().all() and (monthly > 0).all()
    assert [f"#   saves: about {c:,.2f} USD per month" in text for c in monthly] == [True] * 3
    assert f"; saves about {monthly.sum():,.2f} USD per month" in text
    assert f"# storage cost basis: {cost.basis}" in text


def test_cli_sample_accounts_for_every_flagged_resource(tmp_path, capsys):
    out = tmp_path / "cleanup.sh"
    with pytest.raises(SystemExit) as info:
        main(["cleanup-plan", "--sample", "-o", str(out)])
    assert info.value.code == 0
    text = out.read_text()
    with pytest.raises(SystemExit):
        main(["audit", "--sample", "-o", str(tmp_path / "r"), "--format", "json"])
    findings = json.loads((tmp_path / "r" / "findings.json").read_text())["findings"]
    flagged = {f["resource_id"] for f in findings if f["rule_id"] in ("RET001", "RET002")}
    listed = {line[4:] for line in text.splitlines() if line.startswith("#   /subscriptions/")}
    # and the versions RET001 withheld: shared beyond the audit, being replicated, or of a
    # definition a scale set deploys through `latest` with no record of what it runs (4)
    withheld = text.count("(RET001, not flagged)")
    assert withheld == 7
    assert text.count("through `latest` with no recorded version") == 4
    assert flagged and flagged < listed and len(listed) == len(flagged) + withheld
    deletions = text.count("\naz ")
    blocked = text.count("\n# BLOCKED ")
    assert deletions + blocked == len(flagged) + withheld
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(out)], check=True, timeout=30)


# --- never a command for what would break someone the snapshot cannot see ------------------

def shared_plan(gallery_item, resources, flagged, **options):
    findings = pd.DataFrame([flag(f) for f in flagged], columns=FINDING_COLUMNS)
    return cleanup_plan(findings, estate_of(gallery_item, definition(), *resources), **options)


def test_versions_of_a_shared_gallery_never_get_a_command_whatever_is_flagged(rules):
    """Flagged by an older rule pack, or by STL001: the plan still blocks them."""
    community = azure_shape("gallery_community.json")
    plan = shared_plan(community, [V1, V2, V3], [V1, V2])
    assert plan.deletions.empty
    assert blocked(plan)["image version gal/base/1.0.0"] == (
        "not deletable: shared to every Azure customer (community gallery)")
    groups = shared_plan(azure_shape("gallery_groups_expanded.json"), [V1, V2, V3], [V1])
    assert blocked(groups)["image version gal/base/1.0.0"] == (
        "not deletable: shared directly to subscription 99999999-8888-7777-6666-555555555555, "
        "tenant aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee outside the audit")
    private = shared_plan(gallery(), [V1, V2, V3, azure_shape("role_assignment_gallery.json")], [V1])
    assert blocked(private)["image version gal/base/1.0.0"].startswith(
        "not deletable: readable through RBAC by Reader to ServicePrincipal 5c1d2e3f-")
    waived = shared_plan(community, [V1, V2, V3], [V1],
                         retention=rules["RET001"].params | {"consumers_in_scope": ["*/GALLERIES/GAL"]})
    assert list(waived.deletions["label"]) == ["image version gal/base/1.0.0"]


def test_a_version_in_flight_is_blocked_and_the_newest_provisioned_one_kept():
    updating = azure_shape("gallery_version_updating.json")  # 1.0.0
    newest = version("1.3.0", state="Creating")
    plan = plan_for([updating, V2, V3, newest], [updating, V2, V3])
    assert list(plan.deletions["label"]) == ["image version gal/base/1.1.0"]
    reasons = blocked(plan)
    assert reasons["image version gal/base/1.0.0"].startswith(
        "not deletable: provisioning state Updating: an operation")
    assert reasons["image version gal/base/1.2.0"] == (
        "it is the newest provisioned version of base; keep at least one")


def test_the_plan_lists_what_ret001_withheld(rules):
    community = azure_shape("gallery_community.json")
    old = [version(f"1.{n}.0", published="2026-01-01T00:00:00Z") for n in range(7)]
    estate = estate_of(community, definition(), *old)
    findings = pd.DataFrame(columns=FINDING_COLUMNS)
    plan = cleanup_plan(findings, estate, retention=dict(rules["RET001"].params))
    assert plan.deletions.empty
    assert list(plan.blocked["label"]) == ["image version gal/base/1.0.0",
                                           "image version gal/base/1.1.0"]
    assert set(plan.blocked["rules"]) == {"RET001, not flagged"}
    assert plan.blocked["reason"].iloc[0] == (
        "beyond retention and unused in the snapshot, but not deletable: shared to every "
        "Azure customer (community gallery)")


@pytest.mark.parametrize("shape", ["gallery_version_2018-06-01.json",
                                   "gallery_version_2019-03-01.json",
                                   "gallery_version_2018-06-01-preview.json"])
def test_the_managed_image_an_old_shaped_version_was_built_from_is_kept(shape):
    item = azure_shape(shape)
    source = item["properties"]["publishingProfile"]["source"]["managedImage"]["id"]
    image = managed_image(source.rsplit("/", 1)[-1])
    plan = plan_for([item, image], [(image, "RET002")])
    assert plan.deletions.empty
    assert blocked(plan)[f"managed image {image['name']}"] == (
        f"gallery version(s) gal/base/{item['name']} were built from it")


def test_every_version_a_scale_sets_instances_run_is_blocked():
    """Instances' OS disks record 1.0.0 and 1.1.0: both stay, not only the lowest."""
    scale_set = vmss("ss1", image=gallery_ref(version_name="1.2.0"), capacity=2)
    disks = [{**disk(scale_set, v["id"]), "id": disk(scale_set, v["id"])["id"] + str(n),
              "managedBy": scale_set["id"] + f"/virtualMachines/{n}"}
             for n, v in enumerate((V1, V2))]
    plan = plan_for([V1, V2, V3, scale_set, *disks], [V1, V2])
    assert plan.deletions.empty
    assert blocked(plan) == {
        "image version gal/base/1.0.0": "still used by scale set ss1 (capacity 2, may scale out)",
        "image version gal/base/1.1.0": "still used by scale set ss1 (capacity 2, may scale out)"}


def test_version_latest_gives_a_machine_whose_disk_records_another_is_blocked():
    """Its next scale-out gets what `latest` gives, whatever its instances run now."""
    scale_set = vmss("ss-float", image=gallery_ref(version_name=None), capacity=2)
    newest_excluded = version("1.2.0", exclude_from_latest=True)
    plan = plan_for([V1, V2, newest_excluded, scale_set, disk(scale_set, V1["id"])], [V2])
    assert blocked(plan) == {"image version gal/base/1.1.0": "machines that reference the "
                             "definition without a version get this one in their region: "
                             "ss-float"}
