"""Security properties: no SAS token reaches a snapshot, a report or a message; the
dependency audit fails only on a known vulnerability (see SECURITY.md)."""

import json
import subprocess
import sys

import pytest
from openpyxl import load_workbook

from auditor.cli import main
from auditor.normalize import normalize
from auditor.snapshot import Snapshot
from tests.builders import gallery, managed_image, vm

SECRET = "sig=S3CR3TSIGNATURE"
SAS = f"?sv=2024-01-01&se=2030-01-01&sp=r&{SECRET}"
BLOB = "https://acct.blob.core.windows.net/vhds/"


def _sas_estate():
    version_with_vhd = {
        "id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/galleries/gal/"
              "images/base/versions/1.0.0",
        "type": "Microsoft.Compute/galleries/images/versions", "name": "1.0.0",
        "location": "westeurope",
        "properties": {"publishingProfile": {"targetRegions": [{"name": "West Europe"}]},
                       "storageProfile": {"osDiskImage": {"source": {"uri": BLOB + "a.vhd" + SAS}},
                                          "source": {"uri": BLOB + "b.vhd" + SAS.upper()}}}}
    unmanaged = vm("legacy", image={})
    unmanaged["properties"]["storageProfile"]["osDisk"] = {
        "osType": "Linux", "image": {"uri": BLOB + "c.vhd" + SAS}, "vhd": {"uri": BLOB + "d.vhd" + SAS}}
    return [gallery(), version_with_vhd, managed_image(blob_uri=BLOB + "e.vhd" + SAS), unmanaged,
            managed_image("img-bad") | {"properties": {"storageProfile": {"osDisk": [BLOB + SAS]}}}]


def test_no_sas_token_in_snapshot_reports_or_problems(tmp_path, capsys):
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(_sas_estate()))
    for args in (["import", str(raw), "-o", str(tmp_path / "snap")],
                 ["audit", str(tmp_path / "snap"), "-o", str(tmp_path / "out")]):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 0
    printed = capsys.readouterr()
    texts = [printed.out, printed.err, (tmp_path / "snap" / "manifest.json").read_text()]
    snapshot = Snapshot.read(tmp_path / "snap")
    for frame in snapshot.tables.values():
        texts.append(frame.astype("object").to_json())
    for path in (tmp_path / "out").iterdir():
        if path.suffix == ".xlsx":
            book = load_workbook(path, read_only=True)
            texts += [str(cell) for sheet in book.worksheets
                      for row in sheet.iter_rows(values_only=True) for cell in row]
        else:
            texts.append(path.read_text(encoding="utf-8-sig"))
    everything = "\n".join(texts)
    assert "S3CR3T" not in everything.upper()
    assert BLOB + "e.vhd" in everything  # the URI itself is kept, without its query
    assert snapshot.manifest["problem_count"] == 1  # the list where osDisk belongs


def test_problem_messages_never_carry_a_url_query():
    bad = managed_image() | {"properties": {"storageProfile": {"osDisk": BLOB + "x.vhd" + SAS}}}
    problems = normalize([bad]).problems
    assert len(problems) == 1 and "S3CR3T" not in problems[0] and "x.vhd?..." in problems[0]


def _audit(tmp_path, report) -> subprocess.CompletedProcess:
    path = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    if report is not None:
        path.write_text(json.dumps(report))
    return subprocess.run([sys.executable, "tools/audit_deps.py", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_dependency_audit_fails_only_on_a_known_vulnerability(tmp_path):
    vulnerable = {"dependencies": [
        {"name": "PyYAML", "version": "5.0", "vulns": [{"id": "PYSEC-X", "fix_versions": ["6.0"]}]},
        {"name": "some-ci-tool", "version": "1", "vulns": [{"id": "PYSEC-Y", "fix_versions": []}]}]}
    result = _audit(tmp_path, vulnerable)
    assert result.returncode == 1
    assert "pyyaml 5.0: PYSEC-X (fixed in 6.0)" in result.stdout
    assert "some-ci-tool" not in result.stdout  # not one of image-audit's dependencies
    skipped = {"dependencies": [{"name": "pandas", "version": "9", "skip_reason": "not found"}]}
    result = _audit(tmp_path, skipped)
    assert result.returncode == 0 and "could not be looked up: pandas" in result.stdout
    result = _audit(tmp_path, None)
    assert result.returncode == 0 and "dependency audit skipped" in result.stdout


def test_the_package_never_executes_anything():
    """The cleanup script is written, never run: the package has no way to run a command."""
    import re
    from pathlib import Path

    import auditor

    forbidden = re.compile(r"\b(subprocess|os\.system|os\.popen|os\.exec\w*|os\.spawn\w*|pty)\b")
    for source in Path(auditor.__file__).parent.rglob("*.py"):
        hits = forbidden.findall(source.read_text(encoding="utf-8"))
        assert not hits, (source.name, hits)


# --- the cleanup script: names no command may carry (issue 14, item 4) ------------------------

def _plan(resources, flagged):
    import pandas as pd

    from auditor.cleanup import cleanup_plan
    from auditor.engine import FINDING_COLUMNS
    from tests.builders import definition, estate_of
    from tests.test_cleanup import flag
    findings = pd.DataFrame([flag(r) for r in flagged], columns=FINDING_COLUMNS)
    return cleanup_plan(findings, estate_of(gallery(), definition(), *resources))


def _named(version_name=None, image_name=None, definition_name="base"):
    from tests.builders import managed_image, rid, version
    if image_name is not None:
        item = managed_image("img-ok")
        item["id"], item["name"] = rid("images", image_name), image_name
        return item
    item = version("1.0.0", published="2020-01-01T00:00:00Z")
    item["id"] = rid("galleries", "gal", "images", definition_name, "versions", version_name)
    item["name"] = version_name
    return item


@pytest.mark.parametrize("name", ["1.0.0\x00", "1.0.0\n", "1.0.0\r", "1.0.0\x1b[2J", "\x7f",
                                  "1.0.0\u0085", "1.0.0\u202e", "1.0.0\u2066", "1.0.0\u200f",
                                  "1.0.0\u061c", ".", ".."])
def test_a_version_name_no_command_may_carry_is_blocked(name):
    from auditor.cleanup import UNSAFE_NAME
    from tests.builders import version
    item = _named(name)
    plan = _plan([item, version("2.0.0")], [item])
    assert plan.deletions.empty, plan.deletions["command"].tolist()
    assert list(plan.blocked["reason"]) == [UNSAFE_NAME]
    script = plan.script({"tool_version": "t", "snapshot": "s", "snapshot_sha256": "x",
                          "as_of": "2026-11-15"})
    assert not [line for line in script.splitlines() if line.startswith("az ")]
    assert not any(ch in script for ch in "\x00\r\x1b\x7f\u0085\u202e\u2066\u200f\u061c")


@pytest.mark.parametrize("name", ["img\x00x", "img\t", "..", "img\u202egpj.exe"])
def test_a_managed_image_name_no_command_may_carry_is_blocked(name):
    from auditor.cleanup import UNSAFE_NAME
    item = _named(image_name=name)
    plan = _plan([item], [item])
    assert plan.deletions.empty and list(plan.blocked["reason"]) == [UNSAFE_NAME]


@pytest.mark.parametrize("name", ["-e 0.0.5", "0.0.4 --yes", "1.0", "v1.0.0", "1.0.0-beta",
                                  "\u0661.0.0"])
def test_a_version_not_named_major_minor_patch_gets_no_command(name):
    """Azure names gallery versions MAJOR.MINOR.PATCH (ASCII digits): anything else cannot be
    the version the CLI would delete, and a leading `-` could be read as an option."""
    from auditor.cleanup import NOT_SEMVER, UNSAFE_NAME
    from tests.builders import version
    item = _named(name)
    plan = _plan([item, version("2.0.0")], [item])
    assert plan.deletions.empty, plan.deletions["command"].tolist()
    assert list(plan.blocked["reason"]) == [UNSAFE_NAME if name.startswith("-") else NOT_SEMVER]


@pytest.mark.parametrize("name", ["-n", "--yes", "-img"])
def test_a_name_that_starts_like_an_option_gets_no_command(name):
    from auditor.cleanup import UNSAFE_NAME
    item = _named(image_name=name)
    plan = _plan([item], [item])
    assert plan.deletions.empty and list(plan.blocked["reason"]) == [UNSAFE_NAME]


def test_a_definition_or_group_name_no_command_may_carry_is_blocked():
    from auditor.cleanup import UNSAFE_NAME
    from tests.builders import rid, version
    item = _named("1.0.0", definition_name="..")
    odd_group = version("1.0.0", published="2020-01-01T00:00:00Z")
    odd_group["id"] = rid("galleries", "gal", "images", "base", "versions", "1.0.0", rg="rg\x00")
    plan = _plan([item, odd_group, version("2.0.0")], [item, odd_group])
    assert plan.deletions.empty and len(plan.blocked) == 2
    assert all(reason.startswith(UNSAFE_NAME) for reason in plan.blocked["reason"])


def test_bidi_controls_in_comments_are_shown_escaped():
    from tests.builders import version
    item = version("1.0.0", published="2020-01-01T00:00:00Z")
    plan = _plan([item, version("2.0.0")], [item])
    plan.deletions.at[0, "why"] = ["flagged: abc\u202edcba\u2067x\u200ey"]
    script = plan.script({"tool_version": "t", "snapshot": "s", "snapshot_sha256": "x",
                          "as_of": "2026-11-15"})
    assert "#   flagged: abc\\u202edcba\\u2067x\\u200ey" in script.splitlines()


def test_a_version_not_named_major_minor_patch_is_never_the_newest():
    """Unranked, `latest-build` sorted after every MAJOR.MINOR.PATCH and counted as the
    newest, so the real newest version got a delete command."""
    from auditor.cleanup import NO_SEMVER, NOT_SEMVER
    from tests.builders import version
    only = version("1.0.0", published="2020-01-01T00:00:00Z")
    odd = _named("latest-build")
    plan = _plan([only, odd], [only])
    assert plan.deletions.empty
    assert list(plan.blocked["reason"]) == ["it is the newest version of base; keep at least one"]
    plan = _plan([odd], [odd])  # no version to rank: keep them all
    assert plan.deletions.empty and list(plan.blocked["reason"]) == [f"{NOT_SEMVER}; {NO_SEMVER}"]


# --- SAS tokens in free text (issue 14, item 6) ------------------------------------------------

@pytest.mark.parametrize("text", [
    "acct.blob.core.windows.net/vhds/x.vhd?sv=2024-01-01&se=2030&sp=r&sig=S3CR3T",
    "//acct.blob.core.windows.net/c/x.vhd?SIG=S3CR3T&SV=1",
    "see x.vhd?skoid=abc&sktid=S3CR3T here",
    "token: sig=S3CR3T%2Fx&sv=2024",
    "https://acct.blob.core.windows.net/c/x.vhd?sig=S3CR3T"])
def test_problem_messages_never_carry_a_sas_from_a_scheme_less_url_or_free_text(text):
    from tests.builders import managed_image
    bad = managed_image() | {"properties": {"storageProfile": {"osDisk": text}}}
    odd = managed_image("img-2")
    odd["id"] = odd["id"] + "?sv=1&sig=S3CR3T"
    odd["properties"]["storageProfile"]["osDisk"]["diskSizeGB"] = text
    problems = normalize([bad, odd]).problems
    assert problems and not [p for p in problems if "S3CR3T" in p.upper()], problems
