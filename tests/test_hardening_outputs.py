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
from auditor.htmlreport import embedded_data
from auditor.importer import sample_snapshot
from auditor.report import atomic_write
from auditor.snapshot import Snapshot, build_snapshot
from tests.builders import AS_OF, gallery, marketplace, vm
from tests.builders import run_cli as _audit_cli


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
    for stop_at in range(1, len(set(before) - {"run.json"}) + 1):  # each report in turn
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
        # the interrupted run removed the last run's record first: nothing vouches for the mix
        assert "run.json" in before and "run.json" not in after
        assert sorted(os.listdir(out)) == sorted(set(before) - {"run.json"}), \
            "a temporary was left behind"
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


# --- hostile text in every output (issue 14, items 5, 6 and 10) ------------------------------

NONCHARACTERS = "a\ufffeb\uffffc\ufdd0d"


def _hostile_snapshot(tmp_path, capsys):
    from tests.builders import definition, managed_image, version
    resources = [gallery(), definition(),
                 version("1.0.0", published="2020-01-01T00:00:00Z",
                         tags={"team": NONCHARACTERS, "note": "x\r=1+2"}),
                 version("1.1.0"),
                 vm("vm\ufffe", tags={"team": "ops\r=HYPERLINK(1)\n+2", "owner": "\x1b[31m"}),
                 managed_image("img\uffff", tags={"team": "t\x01\r@SUM(1)"})]
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(resources))
    assert _audit_cli(capsys, "import", str(raw), "-o", str(tmp_path / "snap"))[0] == 0
    return tmp_path / "snap"


ALL_OUTPUTS = {"findings.json", "findings.csv", "image-audit.xlsx", "findings.sarif",
               "findings.junit.xml", "report.html", "summary.md", "cost.csv", "cost_lines.csv"}


def test_noncharacters_in_tags_and_names_leave_every_output_written_and_valid(tmp_path, capsys):
    """U+FFFE/U+FFFF in one tag crashed the workbook (exit 2, four tracebacks) and no SARIF,
    JUnit, summary or cost was written. Now every output is written and reads back."""
    import xml.etree.ElementTree as ET

    from openpyxl import load_workbook
    snap = _hostile_snapshot(tmp_path, capsys)
    code, out, err = _audit_cli(capsys, "audit", str(snap), "-o", str(tmp_path / "out"))
    assert code == 0 and err == "", err
    assert {p.name for p in (tmp_path / "out").iterdir()} == ALL_OUTPUTS | {"run.json"}
    ET.parse(tmp_path / "out" / "findings.junit.xml")
    json.loads((tmp_path / "out" / "findings.sarif").read_text(encoding="utf-8"))
    json.loads((tmp_path / "out" / "findings.json").read_text(encoding="utf-8"))
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "img\uffff" in embedded_data(page)["findings"]["columns"]["resource_name"]
    book = load_workbook(tmp_path / "out" / "image-audit.xlsx")
    texts = [c.value for s in book.worksheets for row in s.iter_rows() for c in row
             if isinstance(c.value, str)]
    assert all(c.data_type != "f" for s in book.worksheets for row in s.iter_rows() for c in row)
    assert "vm\\ufffe" in texts  # shown escaped, not dropped: names stay distinguishable
    assert any("a\\ufffeb\\uffffc\ufdd0d" in t for t in texts)  # U+FDD0 is legal XML


def test_one_failing_report_never_stops_the_others(tmp_path, capsys):
    """findings.sarif cannot be written (a folder is in its way): every other report is
    written, one line names the failed one, and the exit code is 2."""
    out = tmp_path / "out"
    (out / "findings.sarif").mkdir(parents=True)
    code, stdout, err = _audit_cli(capsys, "audit", "--sample", "-o", str(out))
    assert code == 2
    assert err.splitlines() == [f"image-audit: error: {out / 'findings.sarif'}: cannot write "
                                "(Is a directory)"]
    assert {p.name for p in out.iterdir()} == ALL_OUTPUTS  # the sarif "file" is the folder
    assert (out / "findings.sarif").is_dir()
    for name in ALL_OUTPUTS - {"findings.sarif"}:
        assert f"wrote {out / name}" in stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_an_unexpected_failure_of_one_report_is_one_escaped_line(tmp_path, capsys, monkeypatch):
    import auditor.junit

    def broken(*args, **kwargs):
        raise RuntimeError("bad \x1b]0;title\x07 value\nsecond line")
    monkeypatch.setattr(auditor.junit, "write_junit", broken)
    out = tmp_path / "out"
    code, _, err = _audit_cli(capsys, "audit", "--sample", "-o", str(out))
    assert code == 2
    assert err.splitlines() == [
        f"image-audit: error: {out / 'findings.junit.xml'}: not written: internal error: "
        "RuntimeError: bad \\x1b]0;title\\x07 value second line"]
    assert {p.name for p in out.iterdir()} == ALL_OUTPUTS - {"findings.junit.xml"}


def test_a_run_that_fails_leaves_no_record_vouching_for_the_folder(tmp_path, capsys,
                                                                   monkeypatch):
    """run.json names the files of the last complete run. A later run that fails half way
    removes it first, so the folder, now mixing two runs, is never vouched for."""
    import hashlib

    import auditor.junit
    out = tmp_path / "out"
    assert _audit_cli(capsys, "audit", "--sample", "-o", str(out))[0] == 0
    record = json.loads((out / "run.json").read_text())
    assert set(record["files"]) == ALL_OUTPUTS
    for name, digest in record["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    # `cost` into the same folder: its record lists only the files it wrote
    assert _audit_cli(capsys, "cost", "--sample", "-o", str(out))[0] == 0
    assert set(json.loads((out / "run.json").read_text())["files"]) == {"cost.csv",
                                                                        "cost_lines.csv"}

    def broken(*args, **kwargs):
        raise RuntimeError("disk trouble")
    monkeypatch.setattr(auditor.junit, "write_junit", broken)
    assert _audit_cli(capsys, "audit", "--sample", "-o", str(out))[0] == 2
    assert not (out / "run.json").exists()


def test_junit_is_well_formed_with_hostile_exempted_ids_and_messages(tmp_path):
    import xml.etree.ElementTree as ET

    import pandas as pd

    from auditor.engine import FINDING_COLUMNS
    from auditor.junit import write_junit
    rows = []
    for number, (exempted, text) in enumerate([(True, "id\ufffe\x01"), (False, "m\uffff\x1b"),
                                               (True, "r\x0b\ud800")]):
        row = dict.fromkeys(FINDING_COLUMNS)
        row.update(rule_id="TAG001", rule_name="missing-tag", title="Tagged", severity="low",
                   resource_id=f"/subscriptions/s/x/{text}", message=f"msg {text}",
                   exempted=exempted, exemption_reason=f"because {text}", fingerprint=str(number))
        rows.append(row)
    path = tmp_path / "findings.junit.xml"
    write_junit(path, pd.DataFrame(rows, columns=FINDING_COLUMNS, dtype=object), None,
                {"as_of": "2026-11-15\x00"})
    root = ET.parse(path).getroot()
    resources = {p.get("value") for p in root.iter("property") if p.get("name") == "resource_id"}
    assert resources == {"/subscriptions/s/x/id\\ufffe\\x01", "/subscriptions/s/x/m\\uffff\\x1b",
                         "/subscriptions/s/x/r\\x0b\\ud800"}
    assert {s.get("message") for s in root.iter("skipped")} == {
        "exempted: because id\\ufffe\\x01", "exempted: because r\\x0b\\ud800"}
    assert root.find(".//failure").get("message") == "msg m\\uffff\\x1b"


def test_lone_surrogates_keep_json_sarif_and_workbook_valid(tmp_path, capsys):
    """A snapshot folder whose name is not UTF-8 reaches the reports' context as lone
    surrogates (Python's surrogateescape): every output stays valid UTF-8 JSON or XML."""
    import os

    from openpyxl import load_workbook
    sample_snapshot().write(tmp_path / "snap")
    odd = tmp_path / os.fsdecode(b"snap\xff")
    os.rename(tmp_path / "snap", odd)
    out = tmp_path / "out"
    code, _, err = _audit_cli(capsys, "audit", str(odd), "-o", str(out))
    assert code == 0, err
    sarif = json.loads((out / "findings.sarif").read_bytes().decode("utf-8"))
    assert sarif["runs"][0]["properties"]["snapshot"].endswith("snap\\udcff")
    document = json.loads((out / "findings.json").read_bytes().decode("utf-8"))
    assert document["snapshot"].endswith("snap\\udcff")
    load_workbook(out / "image-audit.xlsx")


def _csv_rows(path):
    import csv
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def _formula_lines(rows):
    """Every field, and every line within a field, that starts like a formula."""
    prefixes = ("=", "+", "-", "@", "\t", "\r")
    return [line for row in rows for field in row
            for line in [field, *field.replace("\r\n", "\n").replace("\r", "\n").split("\n")[1:]]
            if line.startswith(prefixes)]


def test_csv_quotes_line_breaks_and_defuses_the_lines_after_them(tmp_path):
    """A bare CR inside a value was written unquoted, and LibreOffice starts a record there:
    the text after it became a live formula in the first cell of a new row."""
    import pandas as pd

    from auditor.report import write_csv
    values = ["plain", "a\r=1+2", "b\n+cmd", "c\r\n@SUM(1)", "d\r\r-1", "\r=x", "-2"]
    write_csv(tmp_path / "t.csv", pd.DataFrame({"text": values, "n": range(len(values))}))
    raw = (tmp_path / "t.csv").read_bytes().decode("utf-8-sig")
    assert '"a\r\'=1+2"' in raw and '"d\r\'\r\'-1"' in raw
    rows = _csv_rows(tmp_path / "t.csv")
    assert len(rows) == len(values) + 1 and all(len(row) == 2 for row in rows)
    assert not _formula_lines(rows)
    assert [row[0] for row in rows[1:]][:2] == ["plain", "a\r'=1+2"]


def test_csv_reports_of_a_hostile_estate_hold_no_formula(tmp_path, capsys):
    snap = _hostile_snapshot(tmp_path, capsys)
    assert _audit_cli(capsys, "audit", str(snap), "-o", str(tmp_path / "out"))[0] == 0
    for name in ("findings.csv", "cost.csv", "cost_lines.csv"):
        rows = _csv_rows(tmp_path / "out" / name)
        assert len({len(row) for row in rows}) == 1, name
        assert not _formula_lines(rows), name
    assert any("t\x01\r'@SUM(1)" in field
               for row in _csv_rows(tmp_path / "out" / "cost_lines.csv") for field in row)


def _libreoffice():
    import shutil
    return shutil.which("soffice") or shutil.which("libreoffice")


@pytest.mark.skipif(_libreoffice() is None, reason="needs LibreOffice (libreoffice-calc-nogui)")
def test_libreoffice_reads_no_formula_from_the_csv_reports(tmp_path, capsys):
    """The check as a spreadsheet user makes it: LibreOffice opens each CSV (UTF-8, comma,
    double quote) and saves it as xlsx; openpyxl finds no formula cell in what it read."""
    from openpyxl import load_workbook
    snap = _hostile_snapshot(tmp_path, capsys)
    out = tmp_path / "out"
    assert _audit_cli(capsys, "audit", str(snap), "-o", str(out))[0] == 0
    names = ["findings.csv", "cost.csv", "cost_lines.csv"]
    converted = tmp_path / "converted"
    subprocess.run([_libreoffice(), "--headless", f"-env:UserInstallation=file://{tmp_path}/lo",
                    "--infilter=CSV:44,34,76,1", "--convert-to", "xlsx", "--outdir",
                    str(converted), *[str(out / name) for name in names]],
                   check=True, capture_output=True, timeout=300)
    for name in names:
        sheet = load_workbook(converted / name.replace(".csv", ".xlsx")).active
        formulas = [c.coordinate for row in sheet.iter_rows() for c in row if c.data_type == "f"]
        assert not formulas, (name, formulas)
        assert sheet.max_row == len(_csv_rows(out / name)), name  # no record split in two


def test_summary_code_spans_show_names_literally(tmp_path):
    import pandas as pd

    from auditor.engine import FINDING_COLUMNS
    from auditor.report import summary_markdown
    names = ["a\\b`c", "``x", "plain", "esc\x1b[2Jx", "rtl\u202eexe.txt"]
    rows = []
    for name in names:
        row = dict.fromkeys(FINDING_COLUMNS)
        row.update(rule_id="TAG001", severity="low", title="t", resource_name=name,
                   message=f"{name} [link](http://x) <b>&amp;", exempted=False)
        rows.append(row)
    text = summary_markdown(pd.DataFrame(rows, columns=FINDING_COLUMNS), {})
    assert "TAG001 ``a\\b`c``:" in text  # the backslash is literal, the backtick fenced
    assert "TAG001 ``` ``x ```:" in text
    assert "TAG001 `plain`: plain \\[link\\]\\(http://x\\) \\<b\\>\\&amp;" in text
    assert "`esc\\x1b[2Jx`" in text and "`rtl\\u202eexe.txt`" in text
    assert "\x1b" not in text and "\u202e" not in text


def test_error_messages_never_echo_escape_sequences(tmp_path, capsys):
    hostile = tmp_path / "snap\x1b]0;owned\x07\x1b[2J\u009b31m"
    code, _, err = _audit_cli(capsys, "audit", str(hostile), "-o", str(tmp_path / "out"))
    assert code == 2 and len(err.splitlines()) == 1
    assert "\x1b" not in err and "\x07" not in err and "\u009b" not in err
    assert "snap\\x1b]0;owned\\x07\\x1b[2J\\x9b31m" in err
    code, _, err = _audit_cli(capsys, "audit", "--sample", "--format", "x\x1b[2J",
                              "-o", str(tmp_path / "out"))
    assert code == 2 and "\x1b" not in err


def test_workbook_headers_from_the_data_are_text(tmp_path):
    """The Replicas sheet names a column after each region, which comes from the data: a
    region like `=1+2` was a formula header, one with a control character crashed the book."""
    from openpyxl import load_workbook

    from auditor.engine import evaluate, load_rules
    from auditor.estate import Estate
    from auditor.report import write_reports
    from tests.builders import definition, version
    regions = (("=1+2", 1, "Standard_LRS"), ("#N/A", 1, "Standard_LRS"),
               ("r\x01\ufffe", 1, "Standard_LRS"))
    snapshot = build_snapshot([gallery(), definition(), version(regions=regions)],
                              collected_at=AS_OF)
    estate = Estate(snapshot)
    write_reports(tmp_path, evaluate(estate, load_rules()), estate.tables, {}, ["xlsx"],
                  usage=estate.usage)
    sheet = load_workbook(tmp_path / "image-audit.xlsx")["Replicas"]
    header = [cell for cell in next(sheet.iter_rows(max_row=1))]
    assert all(cell.data_type == "s" for cell in header)
    assert {"=1+2 replicas", "#n/a replicas", "r\\x01\\ufffe replicas"} <= \
        {cell.value for cell in header}


def test_csv_with_lone_surrogates_and_formulas_is_written(tmp_path):
    """An exemption reason may come from a YAML `\\udfff` escape: the CSV is still written,
    valid UTF-8, with the surrogate shown escaped and the formula defused."""
    import pandas as pd

    from auditor.report import write_csv
    frame = pd.DataFrame({"reason": pd.Series(["=\udfff", "ok\ud800"], dtype=object)})
    write_csv(tmp_path / "t.csv", frame)
    rows = _csv_rows(tmp_path / "t.csv")
    assert rows == [["reason"], ["'=\\udfff"], ["ok\\ud800"]]
