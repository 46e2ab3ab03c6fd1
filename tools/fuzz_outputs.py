"""Fuzz the outputs: hostile estates in real export shapes -> import -> audit -> every report
and the cleanup script, each read back the way its reader reads it.

Hypothesis builds small estates (a gallery, an image definition, versions, managed images,
VMs and scale sets in ARM shape) whose names, ids, tags and exemption reasons hold what an
attacker or a broken tool might put there: noncharacters (U+FFFE, U+FFFF, U+FDD0), lone
surrogates, CR inside values, NUL and other control characters, `.` and `..`, bidi controls,
terminal escape sequences, formula prefixes, SAS query strings and very long strings. Each
estate is exported as a list, an `az graph query` result, an ARM list or JSON lines, imported,
audited with every rule, and written in every format. The import may refuse a file with one
AuditError line; anything else that raises is a crash, and so is an output that breaks its
promise:

- findings.junit.xml parses as XML; findings.json and findings.sarif are UTF-8 JSON;
- the workbook (read back with openpyxl) holds no formula cell;
- no field of findings.csv, cost.csv or cost_lines.csv (read with the csv module), nor any
  line inside a field, starts like a formula;
- summary.md and the cleanup script hold no control, escape or bidi character, and the
  script has no command for a name holding one, or for a `.` or `..` name.

One input per distinct failure is saved under tests/regressions/ (an `az graph query` export,
replayed by tests/test_hardening_regressions.py).

    python tools/fuzz_outputs.py --minutes 10            # the documented fuzzing pass
    python tools/fuzz_outputs.py --seconds 20 --no-save  # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import shlex
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openpyxl import load_workbook  # noqa: E402

from auditor import cost as costing  # noqa: E402
from auditor.cleanup import DELETION_RULES, cleanup_plan  # noqa: E402
from auditor.engine import evaluate, load_rules  # noqa: E402
from auditor.errors import AuditError  # noqa: E402
from auditor.estate import Estate  # noqa: E402
from auditor.importer import import_files  # noqa: E402
from auditor.prices import load_prices  # noqa: E402
from auditor.report import write_reports  # noqa: E402
from tests import builders as b  # noqa: E402

REGRESSIONS = ROOT / "tests" / "regressions"
csv.field_size_limit(sys.maxsize)  # a 40,000-character tag is a field of the cost lines
RULES = [rule for rule in load_rules() if rule.enabled]
PRICES = load_prices()
FORMATS = ["json", "csv", "xlsx", "sarif", "junit", "md", "cost"]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# What may never reach summary.md or the cleanup script as it is.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                         "\u200e\u200f\u061c\ud800-\udfff\ufffe\uffff]")
UNSAFE_ARGUMENT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                             "\u200e\u200f\u061c\ud800-\udfff\ufffe\uffff]")

PIECES = ["\ufffe", "\uffff", "\ufdd0", "\ud800", "\udfff", "\udc80x", "\x00", "\x01", "\x0b",
          "\x1f", "\x7f", "\x85", "\x9b31m", "\r", "\n", "\r\n", "\t", "a\r=1+2", "x\n@SUM(1)",
          "\r-2+3", ".", "..", "\u202e", "\u2066", "\u2069", "\u200f", "\u061c", "\u2028",
          "\x1b[31m", "\x1b]0;title\x07", "\x1b[2J", "=cmd|' /C calc'!A0", "+1", "-1", "@x",
          "=HYPERLINK(\"http://x\")", "#N/A", "`", "``", "\\", "\\`", "|", "<b>", "&amp;",
          "[x](y)", "$(touch pwned)", "'", "\"", ";", "?sv=2024-01-01&sig=S3CR3T",
          "acct.blob.core.windows.net/c/x.vhd?sv=1&se=2&sig=S3CR3T", "_x000D_", "\U0001fffe",
          "\u00e9", " ", ""]
LONG = st.tuples(st.sampled_from("xy\u00e9=\r"), st.integers(200, 40_000)).map(lambda p: p[0] * p[1])
SURROGATE_PIECES = [p for p in PIECES if re.search("[\ud800-\udfff]", p)]
# The import refuses a file holding a lone surrogate (JSON cannot carry one in UTF-8), so the
# estates hold them only now and then (see `case`); text from elsewhere holds them freely.
ESTATE_PIECE = st.one_of(st.sampled_from([p for p in PIECES if p not in SURROGATE_PIECES]),
                         st.text(st.characters(exclude_categories=["Cs"]), max_size=6), LONG)
PIECE = st.one_of(st.sampled_from(PIECES), st.text(max_size=6), LONG)
HOSTILE = st.lists(PIECE, min_size=1, max_size=4).map("".join)
ESTATE_TEXT = st.lists(ESTATE_PIECE, min_size=1, max_size=4).map("".join)
NAME = st.one_of(st.sampled_from(["gal", "base", "img", "vm1", ".", ".."]), ESTATE_TEXT)
VERSION_NAME = st.one_of(st.sampled_from(["1.0.0", "1.1.0", "2.0.0", "0.0.1"]), NAME)
BLOB_URIS = ["https://acct.blob.core.windows.net/c/x.vhd?sv=1&sig=S3CR3T",
             "acct.blob.core.windows.net/c/x.vhd?sv=1&se=2&sig=S3CR3T", "\r=1?sig=S3CR3T"]
TAGS = st.dictionaries(ESTATE_TEXT, ESTATE_TEXT, max_size=3)
OLD = "2020-01-01T00:00:00Z"


@st.composite
def estate(draw) -> list[dict]:
    """Resources in ARM shape whose names (and so ids), tags and values are hostile."""
    gallery_name, definition_name = draw(NAME), draw(NAME)
    resources = [b.gallery(gallery_name, tags=draw(TAGS)),
                 b.definition(definition_name, gallery_name=gallery_name, tags=draw(TAGS))]
    versions = draw(st.lists(VERSION_NAME, min_size=1, max_size=3, unique=True))
    for name in versions:
        published = draw(st.sampled_from([OLD, "2026-11-01T00:00:00Z", "\r=1"]))
        resources.append(b.version(name, definition_name, gallery_name, published=published,
                                   end_of_life=draw(st.sampled_from([None, "2021-01-01T00:00:00Z",
                                                                     "2030-01-01T00:00:00Z"])),
                                   tags=draw(TAGS)))
    for name in draw(st.lists(NAME, max_size=2, unique=True)):
        image = b.managed_image(name, tags=draw(TAGS),
                                blob_uri=draw(st.sampled_from([None, *BLOB_URIS])))
        resources.append(image)
    for name in draw(st.lists(NAME, max_size=2, unique=True)):
        image = draw(st.sampled_from([
            b.gallery_ref(definition_name, draw(st.sampled_from([None, *versions])), gallery_name),
            b.marketplace(draw(st.sampled_from(["latest", "1.2.3", draw(ESTATE_TEXT)])))]))
        maker = draw(st.sampled_from([b.vm, b.vmss]))
        resources.append(maker(name, image=image, tags=draw(TAGS)))
    for resource in resources:  # now and then a hostile value where Azure puts text
        if draw(st.integers(0, 3)) == 0:
            resource["location"] = draw(ESTATE_TEXT)
    return resources


@st.composite
def case(draw) -> dict:
    """An estate as an export file, plus hostile text for what reaches the reports from
    elsewhere (the command line, the snapshot path, exemption reasons)."""
    resources = draw(estate())
    if draw(st.integers(0, 4)) == 0:
        resources[-1]["tags"] = {"team": draw(st.sampled_from(SURROGATE_PIECES))}
    shape = draw(st.sampled_from(["list", "data", "value", "jsonl"]))
    ascii_only = draw(st.booleans())

    def dumped(value) -> bytes:
        return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if shape == "jsonl":
        name, data = "fuzz.jsonl", b"\n".join(dumped(r) for r in resources)
    else:
        document = {"list": resources, "data": {"count": len(resources), "data": resources},
                    "value": {"value": resources}}[shape]
        name, data = "fuzz.json", dumped(document)
    return {"name": name, "data": data, "resources": resources, "command": draw(HOSTILE),
            "snapshot": draw(HOSTILE), "reason": draw(HOSTILE),
            "exempt_every": draw(st.integers(1, 4))}


def _formula_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    if len({len(row) for row in rows}) > 1:
        return ["rows of different widths"]
    return [line for row in rows for field in row
            for line in [field, *re.split(r"\r\n|\r|\n", field)[1:]]
            if line.startswith(FORMULA_PREFIXES)]


def check_outputs(out: Path, script: str) -> None:
    """Every promise of the outputs; an AssertionError names the one broken."""
    ET.parse(out / "findings.junit.xml")
    for name in ("findings.json", "findings.sarif"):
        json.loads((out / name).read_bytes().decode("utf-8"))
    book = load_workbook(out / "image-audit.xlsx", read_only=True)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert getattr(cell, "data_type", None) != "f", (sheet.title, cell.value)
    book.close()
    for name in ("findings.csv", "cost.csv", "cost_lines.csv"):
        assert not _formula_lines(out / name), (name, _formula_lines(out / name)[:3])
    summary = (out / "summary.md").read_bytes().decode("utf-8")
    assert not RAW_CONTROL.search(summary.replace("\n", "")), "raw control in summary.md"
    script.encode("utf-8")
    assert not RAW_CONTROL.search(script.replace("\n", "")), "raw control in the script"
    for line in script.splitlines():
        if line.startswith("az "):
            for argument in shlex.split(line):
                assert not UNSAFE_ARGUMENT.search(argument) and argument not in (".", ".."), \
                    ("unsafe name in a command", line)


def run_one(item: dict, workdir: Path) -> str:
    """Import, audit, report and plan one case; returns the outcome ("refused" when the
    import said no in one line, else "reported"); raises on a crash or a broken promise."""
    path = workdir / item["name"]
    path.write_bytes(item["data"])
    try:
        snapshot = import_files([path])
    except AuditError as exc:
        assert "\n" not in str(exc), "a multi-line error"
        return "refused"
    estate = Estate(snapshot)
    findings = evaluate(estate, RULES)
    findings = findings.assign(exemption_reason=findings["exemption_reason"].astype("object"),
                               exempted=findings["exempted"].astype(bool))
    exempt = findings.index[::item["exempt_every"]][1:]
    findings.loc[exempt, "exempted"] = True
    findings.loc[exempt, "exemption_reason"] = item["reason"]
    cost = costing.estimate(estate, PRICES)
    context = {"tool_version": "fuzz", "snapshot": item["snapshot"], "command": item["command"],
               "snapshot_sha256": snapshot.sha256, "as_of": estate.as_of.isoformat(),
               "collected_at": snapshot.manifest["collected_at"], "manifest": snapshot.manifest}
    out = workdir / "out"
    write_reports(out, findings, estate.tables, context, FORMATS, rules=RULES, cost=cost,
                  usage=estate.usage)
    flagged = findings[findings["rule_id"].isin(DELETION_RULES)]
    plan = cleanup_plan(flagged, estate, monthly_cost=cost.resource_costs)
    script = plan.script({**context, "cost_basis": cost.basis})
    check_outputs(out, script)
    return "reported"


def signature(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "auditor" in f.filename or "fuzz_outputs" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=0)
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--no-save", action="store_true", help="do not write regression files")
    args = parser.parse_args()
    budget = args.minutes * 60 + args.seconds or 60
    crashes: dict[str, tuple[dict, str]] = {}
    outcomes = {"refused": 0, "reported": 0, "crashed": 0}
    started, wall = time.process_time(), time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-outputs-"))

    @settings(max_examples=10, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case())
    def batch(item):
        try:
            outcomes[run_one(item, workdir)] += 1
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            outcomes["crashed"] += 1
            crashes.setdefault(signature(exc), (item, traceback.format_exc()))

    round_number = 0
    while time.process_time() - started < budget:
        seed(round_number + 10_000)(batch)()
        round_number += 1
    runs = sum(outcomes.values())
    print(f"{runs} inputs in {time.process_time() - started:.0f} s of CPU "
          f"({time.monotonic() - wall:.0f} s wall): {outcomes['reported']} audited and reported, "
          f"{outcomes['refused']} refused by the import in one line, {outcomes['crashed']} "
          f"failed; {len(crashes)} distinct failures")
    for key, (item, trace) in sorted(crashes.items()):
        print(f"\n== {key}\n{trace.strip().splitlines()[-1][:300]}")
        if not args.no_save:
            REGRESSIONS.mkdir(exist_ok=True)
            digest = hashlib.sha256(item["data"]).hexdigest()[:12]
            target = REGRESSIONS / f"{digest}-outputs-{item['name']}"
            target.write_bytes(item["data"])
            print(f"saved {target.relative_to(ROOT)}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
