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
