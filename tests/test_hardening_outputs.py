"""Outputs: every file is written to a temporary name and renamed into place, so an
interrupted run (Ctrl-C, kill, disk full) leaves the previous file intact and no partial one;
and no output path is built from Azure data (a resource named `../../x` stays a name)."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import auditor.report
import auditor.snapshot
from auditor.cli import main
from auditor.errors import AuditError
from auditor.importer import sample_snapshot
from auditor.report import atomic_write
from auditor.snapshot import Snapshot, build_snapshot
from tests.builders import AS_OF, gallery, marketplace, vm


def _listing(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left")])
def test_atomic_write_interrupted_mid_write_keeps_previous(tmp_path, interrupt):
    target = tmp_path / "findings.json"
    target.write_text("previous")

    def write(temporary):
        temporary.write_text("half of the new cont")
        raise interrupt
    with pytest.raises((KeyboardInterrupt, AuditError)) as info:
        atomic_write(target, write)
    if isinstance(interrupt, OSError):
        assert str(info.value) == f"{target}: cannot write (No space left)"
    assert _listing(tmp_path) == {"findings.json": b"previous"}


def test_atomic_write_refused_folder_is_one_line(tmp_path):
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(AuditError, match=r"reports/findings.csv: cannot write"):
        atomic_write(blocker / "findings.csv", lambda t: t.write_text("x"))


def test_killed_writer_leaves_previous_file(tmp_path):
    """SIGKILL while the new file is half written: the old one is untouched."""
    target = tmp_path / "image-audit.xlsx"
    target.write_bytes(b"previous workbook")
    script = textwrap.dedent(f"""
        import sys, time
        from auditor.report import atomic_write
        def write(temporary):
            with open(temporary, "wb") as handle:
                handle.write(b"partial")
                handle.flush()
                print("writing", flush=True)
                time.sleep(60)
        atomic_write({str(target)!r}, write)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert child.stdout.readline().strip() == b"writing"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert target.read_bytes() == b"previous workbook"
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(name.startswith(".image-audit.xlsx.") and name.endswith(".tmp")
               for name in leftovers)  # a hidden temporary, never the output's own name


def test_every_report_interrupted_at_every_file(tmp_path, capsys, monkeypatch):
    """Ctrl-C while each report file in turn is being finished: files not yet renamed are
    exactly the previous ones, the rest are complete, and no temporary is left behind."""
    out = tmp_path / "reports"
    with pytest.raises(SystemExit):
        main(["audit", "--sample", "-o", str(out), "--as-of", "2026-01-01"])
    before = _listing(out)
    assert len(before) >= 3
    real_fsync = os.fsync
    for stop_at in range(1, len(before) + 1):
        calls = []

        def fsync(fd, stop_at=stop_at, calls=calls):
            calls.append(fd)
            if len(calls) == stop_at:
                raise KeyboardInterrupt
            real_fsync(fd)
        monkeypatch.setattr(auditor.report.os, "fsync", fsync)
        with pytest.raises(SystemExit) as info:
            main(["audit", "--sample", "-o", str(out), "--as-of", "2027-06-01"])
        assert info.value.code == 130
        after = _listing(out)
        assert sorted(os.listdir(out)) == sorted(before), "a temporary was left behind"
        changed = [name for name in after if after[name] != before[name]]
        assert len(changed) == stop_at - 1
        for name in changed:
            if name.endswith(".json"):
                json.loads(after[name])
        monkeypatch.setattr(auditor.report.os, "fsync", real_fsync)
        with pytest.raises(SystemExit):  # back to the previous state for the next round
            main(["audit", "--sample", "-o", str(out), "--as-of", "2026-01-01"])
        before = _listing(out)
    capsys.readouterr()


def test_snapshot_interrupted_while_writing_tables(tmp_path, monkeypatch):
    target = tmp_path / "snap"
    old = build_snapshot([gallery(), vm()], collected_at=AS_OF)
    old.write(target)
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)
    real = auditor.snapshot._write_synced
    monkeypatch.setattr(auditor.snapshot, "_write_synced", failing)
    with pytest.raises(AuditError, match="No space left on device"):
        sample_snapshot().write(target, overwrite=True)
    assert Snapshot.read(target).sha256 == old.sha256
    assert os.listdir(tmp_path) == ["snap"]


def test_snapshot_interrupted_between_the_two_renames(tmp_path, monkeypatch):
    """The old snapshot is moved aside before the new one moves in: a failure in between
    must put the old one back, not leave the path empty."""
    target = tmp_path / "snap"
    old = build_snapshot([gallery(), vm()], collected_at=AS_OF)
    old.write(target)
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_replace(src, dst)
    monkeypatch.setattr(auditor.snapshot.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        sample_snapshot().write(target, overwrite=True)
    monkeypatch.setattr(auditor.snapshot.os, "replace", real_replace)
    assert Snapshot.read(target).sha256 == old.sha256
    assert os.listdir(tmp_path) == ["snap"]


HOSTILE_NAMES = ["../../escaped", "..\\..\\escaped", "/tmp/escaped", "a/../../escaped",
                 "con", "x\x00y", "name with spaces; rm -rf ~", "$(touch escaped)", "`id`"]


def test_hostile_resource_names_never_become_paths(tmp_path, capsys):
    """Names from Azure end up in reports as text, never in a file or folder name."""
    work = tmp_path / "work"
    out = work / "reports"
    work.mkdir()
    resources = [vm(name, image=marketplace("latest"), tags={"team": name})
                 for name in HOSTILE_NAMES]
    raw = work / "raw.json"
    raw.write_text(json.dumps(resources))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        for args in (["import", str(raw), "-o", str(work / "snap")],
                     ["audit", str(work / "snap"), "-o", str(out)]):
            with pytest.raises(SystemExit) as info:
                main(args)
            assert info.value.code == 0, capsys.readouterr().err
    finally:
        os.chdir(cwd)
    everything = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert not [p for p in everything if "escaped" in p or "touch" in p or "id`" in p], everything
    assert not [p for p in everything if not p.startswith("work")]
    report = json.loads((out / "findings.json").read_text())
    assert {f["resource_name"] for f in report["findings"]} >= set(HOSTILE_NAMES) - {"x\x00y"}
