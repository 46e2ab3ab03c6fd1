"""Exemptions: file validation, matching (ids and globs, ignoring case), expiry against the
as-of date, the EXM rules, and the whole path through the CLI."""

import csv
import fnmatch
import io
import json
import random
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from openpyxl import load_workbook

from auditor.cli import main
from auditor.engine import FINDING_COLUMNS, evaluate, load_rules
from auditor.errors import AuditError
from auditor.exemptions import _full_match, _glob_regex, load_exemptions
from tests.builders import compliant_estate_resources, estate_of, marketplace, rid, vm

LATEST = marketplace("latest")


def write(tmp_path, body: str, name="exemptions.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def entry(rule="PIN001", resource=None, reason="vendor appliance", approved_by="ciso@example.com",
          expires="2027-01-31") -> dict:
    return {"rule": rule, "resource": resource or rid("virtualMachines", "vm-a"), "reason": reason,
            "approved_by": approved_by, "expires": expires}


def exemptions_file(tmp_path, *entries) -> str:
    lines = ["exemptions:"]
    for item in entries:
        lines.append("  - " + "\n    ".join(f"{key}: {json.dumps(value)}"
                                           for key, value in item.items()))
    path = tmp_path / "exemptions.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def pack():
    return load_rules()


def audit(tmp_path, pack, *entries, machines=("vm-a", "vm-b"), as_of=None, rules=None):
    """PIN001 findings on the named machines, with the given exemptions applied."""
    estate = estate_of(*compliant_estate_resources(), *(vm(n, image=LATEST) for n in machines),
                       as_of=as_of)
    rules = rules or pack
    exemptions = load_exemptions(exemptions_file(tmp_path, *entries), pack)
    return exemptions.apply(evaluate(estate, rules), estate, rules)


def by_rule(findings, rule_id):
    return findings[findings["rule_id"] == rule_id]


# --- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ("exemptions:\n  - {rule: PIN001, resource: x, reason: r, approved_by: a}\n",
     "exemptions.yaml: entry 1 (PIN001): missing required field 'expires'"),
    ("exemptions:\n  - {rule: PIN001, resource: x, reason: '  ', approved_by: a, expires: 2027-01-01}\n",
     "entry 1 (PIN001): reason: expected non-blank text, got '  '"),
    ("exemptions:\n  - {rule: PIN001, resource: '', reason: r, approved_by: a, expires: 2027-01-01}\n",
     "entry 1 (PIN001): resource: expected non-blank text, got ''"),
    ("exemptions:\n  - {rule: PIN001, resource: x, reason: r, approved_by: a, expires: 2027-01-01,"
     " ticket: 7}\n", "entry 1 (PIN001): ticket: unknown key (known: rule, resource, reason"),
    ("exemptions:\n  - {rule: PIN001, resource: x, reason: r, approved_by: a, expires: soon}\n",
     "entry 1 (PIN001): expires: expected a date (YYYY-MM-DD), got 'soon'"),
    ("exemptions:\n  - {rule: PIN001, resource: x, reason: r, approved_by: a, expires: 2027-02-30}\n",
     "entry 1 (PIN001): expires: expected a date (YYYY-MM-DD), got '2027-02-30', which is not a day"),
    ("exemptions:\n  - {rule: PIN001, resource: x, reason: r, approved_by: a,"
     " expires: 2027-01-01T10:00:00Z}\n",
     "expires: expected a date (YYYY-MM-DD), got '2027-01-01T10:00:00Z'"),
    ("exemptions:\n  - {rule: PIN001, resource: x, reason: r, approved_by: a, expires: 2027-01-01}\n"
     "  - {rule: XYZ999, resource: x, reason: r, approved_by: a, expires: 2027-01-01}\n",
     "entry 2 (XYZ999): unknown rule id 'XYZ999'"),
    ("exemptions:\n  - {rule: EXM002, resource: x, reason: r, approved_by: a, expires: 2027-01-01}\n",
     "entry 1 (EXM002): EXM002 findings are about this file"),
    ("exemptions:\n  - {rule: PIN001, resource: 42, reason: r, approved_by: a, expires: 2027-01-01}\n",
     "entry 1 (PIN001): resource: expected non-blank text, got 42"),
    ("exemptions:\n  - {rule: PIN001, resource: /A/*, reason: r, approved_by: a, expires: 2027-01-01}\n"
     "  - {rule: pin001, resource: /a/*, reason: s, approved_by: b, expires: 2028-01-01}\n",
     "entry 2 (PIN001): same rule and resource as entry 1"),
    ("exemptions:\n  - just a string\n",
     "entry 1: expected a mapping of rule, resource, reason, approved_by, expires, got 'just a string'"),
    ("- {rule: PIN001}\n", "expected a mapping with only a top-level 'exemptions:' list, got [{"),
    ("exemptions: []\nrules: {}\n", "exemptions.yaml: rules: unknown key (known: exemptions)"),
    ("", "expected a mapping with only a top-level 'exemptions:' list, got None"),
    ("exemptions: [\n", "invalid YAML at line"),
])
def test_bad_files_are_one_line_errors_naming_the_entry(tmp_path, pack, body, message):
    with pytest.raises(AuditError) as info:
        load_exemptions(write(tmp_path, body), pack)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_valid_file_loads_with_normalised_rule_ids(tmp_path, pack):
    path = write(tmp_path, """\
        exemptions:
          - rule: pin001
            resource: "/subscriptions/*/resourceGroups/rg-lab/*"
            reason: lab machines are rebuilt nightly
            approved_by: ciso@example.com
            expires: "2027-03-31"
        """)
    entries = load_exemptions(path, pack).entries
    assert entries.to_dict("records") == [{
        "entry": 1, "rule": "PIN001", "resource": "/subscriptions/*/resourceGroups/rg-lab/*",
        "reason": "lab machines are rebuilt nightly", "approved_by": "ciso@example.com",
        "expires": pd.Timestamp("2027-03-31").date()}]


def test_empty_list_is_allowed(tmp_path, pack):
    estate = estate_of(*compliant_estate_resources(), vm("vm-a", image=LATEST))
    exemptions = load_exemptions(write(tmp_path, "exemptions: []\n"), pack)
    findings = exemptions.apply(evaluate(estate, pack), estate, pack)
    assert list(findings["rule_id"]) == ["PIN001"] and not findings["exempted"].any()


# --- matching -------------------------------------------------------------------------------

def test_exact_id_exempts_ignoring_case_and_keeps_the_finding(tmp_path, pack):
    findings = audit(tmp_path, pack, entry(resource=rid("virtualMachines", "vm-a").upper()))
    pin = by_rule(findings, "PIN001").set_index("resource_name")
    assert pin.loc["vm-a", "exempted"] and not pin.loc["vm-b", "exempted"]
    assert pin.loc["vm-a", "exemption_reason"] == (
        "vendor appliance (approved by ciso@example.com, expires 2027-01-31; "
        "exemptions.yaml entry 1)")
    assert pd.isna(pin.loc["vm-b", "exemption_reason"])
    assert list(findings.columns) == FINDING_COLUMNS
    assert by_rule(findings, "EXM001").empty and by_rule(findings, "EXM002").empty


def test_glob_matches_many_ignoring_case(tmp_path, pack):
    glob = "/SUBSCRIPTIONS/*/resourcegroups/RG-IMG/providers/*/virtualmachines/vm-?"
    findings = audit(tmp_path, pack, entry(resource=glob), machines=("vm-a", "vm-b", "vm-cc"))
    exempted = by_rule(findings, "PIN001").set_index("resource_name")["exempted"]
    assert exempted.to_dict() == {"vm-a": True, "vm-b": True, "vm-cc": False}


def test_glob_is_anchored_at_both_ends(tmp_path, pack):
    findings = audit(tmp_path, pack, entry(resource="*/vm-a"), entry(resource="/subscriptions/*/vm"))
    exempted = by_rule(findings, "PIN001").set_index("resource_name")["exempted"]
    assert exempted.to_dict() == {"vm-a": True, "vm-b": False}
    assert list(by_rule(findings, "EXM002")["resource_name"]) == ["exemptions.yaml entry 2"]


def test_globs_mean_what_fnmatch_says():
    """Globs run as RE2 regexes in Arrow; they must match exactly what fnmatch would."""
    rng = random.Random(7)
    names = ["".join(rng.choice("ab/-.[]!^\\") for _ in range(rng.randint(0, 6)))
             for _ in range(300)]
    targets = pa.array(names, pa.string())
    for _ in range(500):
        glob = "".join(rng.choice("ab/-.*?[]!^\\") for _ in range(rng.randint(1, 6)))
        matched = _full_match(targets, [_glob_regex(glob)])
        assert list(matched) == [fnmatch.fnmatchcase(n, glob) for n in names], glob


def test_exemption_applies_only_to_its_rule(tmp_path, pack):
    findings = audit(tmp_path, pack, entry(rule="PIN002", resource="*"))
    assert not findings["exempted"].any()
    assert list(by_rule(findings, "EXM002")["resource_id"]) == ["exemption:PIN002:*"]


def test_first_matching_entry_gives_the_reason_and_both_count_as_used(tmp_path, pack):
    findings = audit(tmp_path, pack, entry(resource="*", reason="whole fleet"),
                     entry(reason="this one"), machines=("vm-a",))
    reason = by_rule(findings, "PIN001")["exemption_reason"].iloc[0]
    assert reason.startswith("whole fleet") and "entry 1" in reason
    assert by_rule(findings, "EXM002").empty


def test_many_findings_and_entries(tmp_path, pack):
    """Exact ids join in one merge and globs run once per entry, not once per finding."""
    machines = [f"vm-{i:04d}" for i in range(600)]
    entries = [entry(resource=rid("virtualMachines", n)) for n in machines[:300:3]]
    entries += [entry(resource=f"*/vm-05{d}*", reason=f"glob {d}") for d in range(10)]
    findings = audit(tmp_path, pack, *entries, machines=machines)
    pin = by_rule(findings, "PIN001")
    assert len(pin) == 600 and int(pin["exempted"].sum()) == 100 + 100
    assert by_rule(findings, "EXM002").empty


# --- end to end through the CLI ----------------------------------------------------------------

@pytest.fixture
def snapshot(tmp_path):
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(compliant_estate_resources() + [vm("vm-a", image=LATEST)]))
    with pytest.raises(SystemExit):
        main(["import", str(raw), "-o", str(tmp_path / "snap"), "--collected-at", "2026-11-15"])
    return tmp_path / "snap"


def run(*args, capsys):
    """The CLI; an audit writes findings.json only unless the test names its formats."""
    args = [str(a) for a in args]
    if args[0] == "audit" and "--format" not in args:
        args += ["--format", "json"]
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr()


def test_cli_exempted_finding_does_not_fail_the_build(tmp_path, snapshot, capsys):
    out = tmp_path / "out"
    assert run("audit", snapshot, "-o", out, "--fail-on", "low", capsys=capsys)[0] == 1
    path = exemptions_file(tmp_path, entry())
    formats = [arg for name in ("json", "csv", "xlsx", "sarif", "junit") for arg in ("--format", name)]
    code, printed = run("audit", snapshot, "-o", out, "--fail-on", "low", "--exemptions", path,
                        *formats, capsys=capsys)
    assert code == 0 and "1 exempted" in printed.out
    document = json.loads((out / "findings.json").read_text())
    assert document["exemptions"] == str(path)
    assert [(f["rule_id"], f["exempted"]) for f in document["findings"]] == [("PIN001", True)]
    reason = document["findings"][0]["exemption_reason"]
    assert reason.startswith("vendor appliance (approved by ciso@example.com")

    # The finding stays in every output, marked exempted with its reason.
    rows = list(csv.DictReader(io.StringIO((out / "findings.csv").read_text("utf-8-sig"))))
    assert [(r["rule_id"], r["exempted"], r["exemption_reason"]) for r in rows] == [
        ("PIN001", "True", reason)]
    sarif = json.loads((out / "findings.sarif").read_text())
    [result] = sarif["runs"][0]["results"]
    assert result["suppressions"][0]["justification"] == reason
    assert "exempted" in (out / "findings.junit.xml").read_text()
    sheet = load_workbook(out / "image-audit.xlsx", read_only=True)["Exemptions"]
    assert "vendor appliance" in [cell for row in sheet.iter_rows(values_only=True) for cell in row]


def test_cli_expired_exemption_fails_the_build(tmp_path, snapshot, capsys):
    path = exemptions_file(tmp_path, entry(expires="2026-11-01"))
    code, printed = run("audit", snapshot, "-o", tmp_path / "out", "--fail-on", "low",
                        "--exemptions", path, capsys=capsys)
    assert code == 1 and "EXM001  1" in printed.out
    code, _ = run("audit", snapshot, "-o", tmp_path / "out", "--fail-on", "low",
                  "--exemptions", path, "--as-of", "2026-10-31", capsys=capsys)
    assert code == 0


def test_cli_bad_exemptions_file_is_exit_2_before_any_output(tmp_path, snapshot, capsys):
    path = write(tmp_path, "exemptions:\n  - {rule: PIN001, resource: x, reason: r}\n")
    code, printed = run("audit", snapshot, "-o", tmp_path / "out", "--exemptions", path,
                        capsys=capsys)
    assert code == 2
    assert printed.err == (f"image-audit: error: {path}: entry 1 (PIN001): missing required "
                           "field 'approved_by'\n")
    assert not (tmp_path / "out").exists()


# --- many globs and hostile files ---------------------------------------------------------------

def test_ten_thousand_globs_for_one_rule_match_like_fnmatch(tmp_path):
    """Far past the ~4,000 globs one combined RE2 pattern holds ("pattern too large"), with
    ids long enough to fill it; the pairs must be exactly fnmatch's."""
    from auditor.exemptions import _matches

    rng = random.Random(3)
    long = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-{}/providers/" \
           "microsoft.compute/virtualmachines/vm-{}"
    ids = [long.format(rng.randrange(50), i) for i in range(400)]
    globs = []
    for i in range(10_000):
        base = ids[rng.randrange(len(ids))]
        cut = rng.randrange(len(base) // 2, len(base))
        globs.append([base[:cut] + "*", "*" + base[cut:], base[:cut] + "?*[0-9]", f"*x{i}*",
                      "*?" + base[cut:], "*[0-9]" + base[-2:], "*" + base[cut:-1] + "?"][i % 7])
    findings = pd.DataFrame({"rule_id": "PIN001", "resource_id": ids})
    entries = pd.DataFrame({"entry": range(1, len(globs) + 1), "rule": "PIN001", "resource": globs})
    pairs = _matches(findings, entries)
    got = set(zip(pairs["entry"], pairs["finding"], strict=True))
    expected = {(e + 1, f) for e, glob in enumerate(globs) for f in
                np.flatnonzero(np.array([fnmatch.fnmatchcase(i, glob) for i in ids]))}
    assert got == expected and len(expected) > 10_000


@pytest.mark.parametrize("body, message", [
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "exemptions: [{rule: PIN001, resource: *d, reason: r, approved_by: a, expires: 2027-01-01}]\n",
     "aliases expand to more than 10,000 nodes"),
    ("exemptions: &e [{rule: PIN001, resource: x, reason: *e, approved_by: a, expires: 2027-01-01}]\n",
     "refers to a node that contains it"),
    ("exemptions: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64 levels"),
    ("exemptions: [{rule: PIN001, resource: x, reason: r, approved_by: a, expires: 2027-01-01, "
     "1: x}]\n", "key 1 must be text"),
])
def test_hostile_yaml_is_refused_in_one_short_line(tmp_path, pack, body, message):
    with pytest.raises(AuditError) as info:
        load_exemptions(write(tmp_path, body), pack)
    text = str(info.value)
    assert text.startswith(str(tmp_path / "exemptions.yaml")) and message in text
    assert "\n" not in text and len(text) < 300 + len(str(tmp_path))


def test_random_exemption_files_load_or_fail_in_one_line(tmp_path_factory, pack):
    """Random entries (any type, hostile text, dates that are not) never end in a traceback:
    the file loads and applies, or it is one line naming the file."""
    import yaml
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    text = st.one_of(st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
                     st.sampled_from(["PIN001", "pin001", "EXM001", "NOPE01", "2027-02-30",
                                      "2027-01-31", "*", "[", "/subscriptions/*", "\x1b[2J"]))
    value = st.one_of(text, st.none(), st.integers(), st.floats(), st.booleans(),
                      st.lists(text, max_size=2), st.dictionaries(text, text, max_size=2))
    item = st.dictionaries(st.sampled_from(["rule", "resource", "reason", "approved_by", "expires",
                                            "ticket"]), value, max_size=6)
    estate = estate_of(*compliant_estate_resources(), vm("vm-a", image=LATEST))
    findings = evaluate(estate, pack)
    folder = tmp_path_factory.mktemp("random-exemptions")

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(item, max_size=4))
    def check(items):
        path = folder / "exemptions.yaml"
        path.write_text(yaml.safe_dump({"exemptions": items}, allow_unicode=True))
        try:
            exemptions = load_exemptions(path, pack)
        except AuditError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc) and len(str(exc)) < 500
            return
        exemptions.apply(findings, estate, pack)

    check()


def test_glob_ranges_match_exactly_what_fnmatch_does():
    """The prefix and suffix ranges (binary search over sorted and reversed ids) must find
    exactly fnmatch's pairs, also for ids and globs of odd characters."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from auditor.exemptions import _matches

    chars = st.sampled_from(list("ab/-.[]!^*?\\") + ["\U0010ffff", "\x00"])
    ids = st.lists(st.text(chars, max_size=6),
                   min_size=1, max_size=30)

    @settings(max_examples=150, deadline=None)
    @given(ids, st.lists(st.text(chars, min_size=1, max_size=6), min_size=1, max_size=12))
    def check(keys, globs):
        globs = [g for g in globs if any(c in g for c in "*?[")] or ["*"]
        findings = pd.DataFrame({"rule_id": "PIN001", "resource_id": keys})
        entries = pd.DataFrame({"entry": range(1, len(globs) + 1), "rule": "PIN001",
                                "resource": globs})
        pairs = _matches(findings, entries)
        got = set(zip(pairs["entry"], pairs["finding"], strict=True))
        assert got == {(e + 1, f) for e, glob in enumerate(globs)
                       for f, key in enumerate(keys) if fnmatch.fnmatchcase(key, glob)}

    check()
