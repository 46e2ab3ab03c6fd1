"""Fuzz the import path: bytes on disk -> import_files -> Estate -> every rule -> reports.

Hypothesis generates the inputs (real resource shapes with fields dropped, re-cased and
mistyped, wrapped in every accepted document shape, then optionally corrupted byte-wise).
The only acceptable outcomes are a snapshot or an AuditError; anything else is a crash, and
one input per distinct crash (exception type and innermost auditor frame) is saved under
tests/regressions/ for tests/test_hardening_regressions.py to replay.

    python tools/fuzz_import.py --minutes 5            # the documented fuzzing pass
    python tools/fuzz_import.py --seconds 20 --no-save # a smoke run
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor.engine import evaluate, load_rules  # noqa: E402
from auditor.errors import AuditError  # noqa: E402
from auditor.estate import Estate  # noqa: E402
from auditor.importer import import_files  # noqa: E402
from auditor.report import write_reports  # noqa: E402
from tests.test_properties import mutated_resource  # noqa: E402

REGRESSIONS = ROOT / "tests" / "regressions"
RULES = [rule for rule in load_rules() if rule.enabled]


# Text an attacker or a clumsy user might put in a name or a tag: control characters,
# formulas, paths, shell syntax, bidi overrides, very long and non-ASCII strings.
HOSTILE_TEXT = st.one_of(
    st.text(st.characters(max_codepoint=0x20), min_size=1, max_size=5),
    st.sampled_from(["=cmd|' /C calc'!A0", "+1", "-1", "@SUM(A1)", "\t=1", "../../x", "..\\x",
                     "$(touch pwned)", "`id`", "a'b\"c", "\u202egnp.exe", "\ud7ff\ue000",
                     "?sig=SECRET", "x" * 70_000, "\u00e9" * 5000, "", " "]),
    st.text(max_size=50),
)


@st.composite
def hostile(draw, resource):
    """Hostile text in the name and in tag keys and values of a resource object."""
    if isinstance(resource, dict) and draw(st.booleans()):
        resource = dict(resource)
        resource["tags"] = draw(st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=3))
        if draw(st.booleans()):
            resource["name"] = draw(HOSTILE_TEXT)
    return resource


@st.composite
def input_file(draw) -> tuple[str, bytes]:
    """A file name and its bytes, as a user might pass them to `image-audit import`."""
    resources = [draw(hostile(r)) for r in draw(st.lists(mutated_resource(), max_size=6))]
    shape = draw(st.sampled_from(["list", "data", "value", "single", "jsonl"]))
    if shape == "jsonl":
        name, data = "fuzz.jsonl", b"\n".join(json.dumps(r).encode() for r in resources)
    else:
        document = {"list": resources, "data": {"data": resources}, "value": {"value": resources},
                    "single": resources[0] if resources else {}}[shape]
        name, data = "fuzz.json", json.dumps(document).encode()
    corruption = draw(st.sampled_from(["none", "none", "truncate", "flip", "insert"]))
    if corruption != "none" and data:
        at = draw(st.integers(0, len(data) - 1))
        if corruption == "truncate":
            data = data[:at]
        elif corruption == "flip":
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        else:
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if draw(st.booleans()) and draw(st.booleans()):
        name, data = name + ".gz", gzip.compress(data)
    return name, data


def signature(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "auditor" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


def run_one(name: str, data: bytes, workdir: Path) -> None:
    """The import path end to end; raises whatever the code under test raises."""
    path = workdir / name
    path.write_bytes(data)
    try:
        snapshot = import_files([path])
    except AuditError:
        return
    estate = Estate(snapshot)
    findings = evaluate(estate, RULES)
    # The workbook is slow to write: every fourth input, so the run stays about parsing.
    formats = ["json", "csv"] + (["xlsx"] if hashlib.sha256(data).digest()[0] % 4 == 0 else [])
    write_reports(workdir / "out", findings, estate.tables, {"tool_version": "fuzz"}, formats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=0)
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--no-save", action="store_true", help="do not write regression files")
    args = parser.parse_args()
    budget = args.minutes * 60 + args.seconds or 60
    crashes: dict[str, tuple[str, bytes, str]] = {}
    runs = 0
    started = time.process_time()
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-import-"))

    @settings(max_examples=25, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(input_file())
    def batch(case):
        nonlocal runs
        runs += 1
        try:
            run_one(*case, workdir)
        except Exception as exc:  # noqa: BLE001 - every non-AuditError is a finding
            crashes.setdefault(signature(exc), (case[0], case[1], traceback.format_exc()))

    round_number = 0
    while time.process_time() - started < budget:
        seed(round_number)(batch)()
        round_number += 1
    cpu = time.process_time() - started
    print(f"{runs} inputs in {cpu:.0f} s of CPU; {len(crashes)} distinct crashes")
    for key, (name, data, trace) in sorted(crashes.items()):
        print(f"\n== {key}\n{trace.strip().splitlines()[-1]}")
        if not args.no_save:
            REGRESSIONS.mkdir(exist_ok=True)
            digest = hashlib.sha256(data).hexdigest()[:12]
            target = REGRESSIONS / f"{digest}-{name}"
            target.write_bytes(data)
            print(f"saved {target.relative_to(ROOT)}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
