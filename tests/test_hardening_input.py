"""Bad input, end to end through the command line: a fatal problem (the file cannot be used
at all) is one line naming the file and what is wrong, with exit code 2 and no traceback
unless --debug; a per-resource problem is recorded, counted and warned about, never fatal."""

import gzip
import json

import pandas as pd
import pytest

from auditor.cli import main
from auditor.engine import evaluate, load_rules
from auditor.estate import Estate
from auditor.importer import import_files
from auditor.normalize import normalize
from auditor.snapshot import Snapshot, build_snapshot
from tests.builders import (
    AS_OF,
    compliant_estate_resources,
    definition,
    gallery,
    managed_image,
    marketplace,
    version,
    vm,
    vmss,
)
from tests.builders import run_cli as run


def assert_one_line_error(err: str, *fragments: str):
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("image-audit: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- fatal: the file as a whole cannot be used -------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"  \n\t\n", "empty file"),
    (b"[{\"id\": ", "malformed JSON"),
    (b"{\"data\": [1, 2,]}", "malformed JSON"),
    (b"\xff\xfe\x00garbage", "malformed JSON"),
    (b"42", "not a resource list"),
    (b"\"a string\"", "not a resource list"),
    (b"null", "not a resource list"),
    (b"{\"data\": {\"id\": \"x\"}}", "not a resource list"),
    (b"{\"value\": \"nope\"}", "not a resource list"),
    (b"{}", "not a resource list"),
    (b"[]", "no gallery, image, VM or scale set resources"),
])
def test_unusable_file_is_one_line_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "export.json"
    path.write_bytes(content)
    code, _, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 2
    assert_one_line_error(err, "export.json", message)
    assert not (tmp_path / "snap").exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = tmp_path / "export.json"
    path.write_bytes(b"[{")
    code, _, err = run(capsys, "--debug", "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 2
    assert "Traceback" in err and "export.json: malformed JSON" in err


def test_unexpected_failure_is_one_line_and_debug_raises(tmp_path, capsys, monkeypatch):
    import auditor.cli

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")
    monkeypatch.setattr(auditor.cli, "import_files", broken)
    code, _, err = run(capsys, "import", "x.json", "-o", str(tmp_path / "snap"))
    assert code == 2 and "Traceback" not in err
    assert err.strip() == ("image-audit: internal error: ZeroDivisionError: boom "
                           "(run with --debug for the traceback)")
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "import", "x.json", "-o", str(tmp_path / "snap")])


def test_missing_file_and_directory(tmp_path, capsys):
    code, _, err = run(capsys, "import", str(tmp_path / "nope.json"), "-o", str(tmp_path / "s"))
    assert code == 2
    assert_one_line_error(err, "nope.json: file not found")
    code, _, err = run(capsys, "import", str(tmp_path), "-o", str(tmp_path / "s"))
    assert code == 2
    assert_one_line_error(err, str(tmp_path), "file not found")


def test_json_lines_bad_line_named(tmp_path, capsys):
    path = tmp_path / "estate.jsonl"
    path.write_text(json.dumps(vm()) + "\n" + "{not json}\n")
    code, _, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 2
    assert_one_line_error(err, "estate.jsonl: line 2: malformed JSON")


def test_corrupt_gzip(tmp_path, capsys):
    path = tmp_path / "export.json.gz"
    path.write_bytes(gzip.compress(json.dumps([vm()]).encode())[:30])
    code, _, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 2
    assert_one_line_error(err, "export.json.gz: cannot read")


def test_huge_document_refused_without_reading(tmp_path, capsys, monkeypatch):
    """A 2 GB file passed by mistake: refused from its size, before any byte is read."""
    import auditor.importer

    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:  # sparse: 2 GiB on paper, nothing on disk
        handle.truncate(2 * 2**30)
    opened = []
    monkeypatch.setattr(auditor.importer, "_open", lambda p: opened.append(p))
    code, _, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 2 and opened == []
    assert_one_line_error(err, "huge.json", "2,048 MiB is too large", ".jsonl")


def test_gzip_bomb_refused(tmp_path, monkeypatch):
    import auditor.importer

    monkeypatch.setattr(auditor.importer, "MAX_DOCUMENT_BYTES", 10_000)
    path = tmp_path / "bomb.json.gz"
    path.write_bytes(gzip.compress(b"[" + b" " * 100_000 + b"]"))
    with pytest.raises(Exception, match="bomb.json.gz: decompresses to more than"):
        import_files([path])


# --- per resource: recorded, counted, warned about; the audit goes on ---------------------------

def _problems(*resources, name="export.json"):
    result = normalize((f"{name} item {i}", r) for i, r in enumerate(resources))
    return result, result.problems


def test_wrong_type_named_with_file_item_id_and_path():
    bad = version("1.0.1", replicaCount="abc")
    result, problems = _problems(version(), bad)
    assert problems == [f'export.json item 1: {bad["id"]}: properties.publishingProfile.'
                        'replicaCount: expected a whole number, got "abc"']
    versions = result.tables["image_versions"].to_pylist()
    assert [v["replica_count"] for v in versions] == [1, None]  # the rest still read
    assert versions[1]["os_disk_size_gb"] == 30


@pytest.mark.parametrize("mutate, path, expected", [
    (lambda r: r.update(properties=[1]), "properties", "an object"),
    (lambda r: r.update(tags=["a", "b"]), "tags", "an object"),
    (lambda r: r["properties"].update(publishingProfile="x"), "properties.publishingProfile",
     "an object"),
    (lambda r: r["properties"]["publishingProfile"].update(targetRegions={"name": "x"}),
     "targetRegions", "a list"),
    (lambda r: r["properties"]["publishingProfile"]["targetRegions"][0].update(
        regionalReplicaCount=[2]), "regionalReplicaCount", "a whole number"),
    (lambda r: r["properties"]["storageProfile"]["osDiskImage"].update(sizeInGB="big"),
     "osDiskImage.sizeInGB", "a number"),
    (lambda r: r["properties"]["storageProfile"].update(osDiskImage=7), "osDiskImage",
     "an object"),
])
def test_version_wrong_shapes_recorded(mutate, path, expected):
    bad = version()
    mutate(bad)
    result, problems = _problems(bad)
    assert len(result.tables["image_versions"]) == 1
    assert len(problems) == 1 and path in problems[0] and f"expected {expected}" in problems[0]
    assert problems[0].startswith(f"export.json item 0: {bad['id']}: ")


@pytest.mark.parametrize("resource, path", [
    (vm(image={"publisher": "x"}) | {"properties": "oops"}, "properties"),
    (vmss(image=marketplace("latest")) | {"sku": {"capacity": "three"}}, "sku.capacity"),
    (managed_image() | {"properties": {"storageProfile": {"osDisk": {"diskSizeGB": {}}}}},
     "osDisk.diskSizeGB"),
    (managed_image() | {"properties": {"storageProfile": []}}, "properties.storageProfile"),
])
def test_other_types_wrong_shapes_recorded(resource, path):
    result, problems = _problems(resource)
    assert sum(result.read_types.values()) == 1
    assert len(problems) == 1 and path in problems[0]


def test_missing_and_null_properties_at_every_level_read_quietly():
    """Absent or null optional fields are not problems: Azure omits them all the time."""
    stripped = version()
    stripped["properties"]["publishingProfile"] = None
    stripped["properties"]["storageProfile"] = {"osDiskImage": None}
    bare = [gallery() | {"properties": None, "tags": None}, definition() | {"properties": None},
            stripped, managed_image() | {"properties": {}}, {"id": vm()["id"], "type": vm()["type"]},
            {"id": vmss()["id"]}]
    result, problems = _problems(*bare)
    # but a version always has a target region: one without is named, never a silent zero
    assert len(problems) == 1 and problems[0].endswith(
        "properties.publishingProfile.targetRegions: no target region (every version is "
        "replicated at least to its own)")
    assert sum(result.read_types.values()) == 6


def test_versions_outside_semver_recorded_and_audited():
    odd = [version(name) for name in ("1.0", "v1.2.3", "1.2.3.4", "latest", "1.2.3-beta")]
    result, problems = _problems(version(), *odd)
    assert len(problems) == 5 and all("expected MAJOR.MINOR.PATCH" in p for p in problems)
    table = result.tables["image_versions"].to_pandas()
    assert table["major"].isna().sum() == 5
    evaluate(Estate(build_snapshot([definition(), version(), *odd], collected_at=AS_OF)),
             [r for r in load_rules() if r.enabled])


def test_duplicate_ids_with_different_casing():
    first = vm("web")
    twin = vm("web") | {"id": first["id"].upper()}
    result, problems = _problems(first, twin)
    assert len(result.tables["machines"]) == 1
    assert result.skipped_types["(duplicate id)"] == 1
    assert problems == [f"export.json item 1: duplicate id {twin['id']}"]


@pytest.mark.parametrize("value, stored, problem", [
    ("2026-13-45T00:00:00Z", None, "cannot read \"2026-13-45T00:00:00Z\" as a date"),
    ("next tuesday", None, "cannot read"),
    ("9999-12-31T23:59:59Z", pd.Timestamp.max.floor("us").tz_localize("UTC"), "is after 2262"),
    ("0001-01-01T00:00:00Z", pd.Timestamp.min.ceil("us").tz_localize("UTC"), "is before 1678"),
    ("2031-01-01T00:00:00.1234567+00:00", pd.Timestamp("2031-01-01T00:00:00.123456Z"), None),
    ("2500-01-01", pd.Timestamp.max.floor("us").tz_localize("UTC"), "is after 2262"),
])
def test_dates_far_future_far_past_unparseable(value, stored, problem):
    bad = version(end_of_life=value)
    result, problems = _problems(bad)
    eol = result.tables["image_versions"].to_pandas()["end_of_life_date"].iloc[0]
    assert (pd.isna(eol) if stored is None else eol == stored)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]
        assert problems[0].startswith(f"{bad['id']}: end_of_life_date: ")


def test_far_future_end_of_life_is_not_reported_as_expired_or_missing():
    resources = [gallery(), definition(), version(end_of_life="9999-12-31T00:00:00Z")]
    findings = evaluate(Estate(build_snapshot(resources, collected_at=AS_OF)),
                        [r for r in load_rules() if r.enabled])
    assert not findings["rule_id"].str.startswith("STL").any(), findings[["rule_id", "message"]]


def test_unknown_enum_values_pass_through_and_audit():
    """A storage account type or OS state Azure adds tomorrow is stored as given; rules that
    compare against known values treat it as not matching, and nothing raises."""
    new = version(storageAccountType="Ultra_ZRS_Plus",
                  regions=(("West Europe", 1, "Premium_V9"),))
    image = managed_image(os_state="Hibernated")
    resources = [gallery(), definition(os_state="Frozen"), new, image,
                 vm(image=marketplace())]
    snap = build_snapshot(resources, collected_at=AS_OF)
    assert snap.tables["image_versions"]["storage_account_type"].tolist() == ["Ultra_ZRS_Plus"]
    assert snap.tables["version_regions"]["storage_account_type"].tolist() == ["Premium_V9"]
    assert snap.tables["managed_images"]["os_state"].tolist() == ["Hibernated"]
    assert snap.manifest["problem_count"] == 0
    evaluate(Estate(snap), [r for r in load_rules() if r.enabled])


def test_problem_list_is_capped_but_counted():
    bad = [vm(f"vm{i}") | {"properties": [i]} for i in range(1500)]
    snap = build_snapshot(bad, collected_at=AS_OF)
    assert snap.manifest["problem_count"] == 1500
    assert len(snap.manifest["problems"]) == 1000


def test_import_warns_once_with_count_and_where(tmp_path, capsys):
    resources = compliant_estate_resources() + [
        vm("a") | {"properties": "x"}, version("2.0.0", replicaCount="two"), 7]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(resources))
    code, out, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 0 and "snapshot" in out
    assert err.strip() == (f"image-audit: warning: 3 input problems (values of the wrong type, "
                           f"items skipped); they are listed under 'problems' in "
                           f"{tmp_path / 'snap' / 'manifest.json'}")
    manifest = Snapshot.read(tmp_path / "snap").manifest
    assert manifest["problem_count"] == 3
    assert any(p.startswith("export.json item ") and "properties: expected an object" in p
               for p in manifest["problems"])
    assert f"export.json item {len(resources) - 1}: not a JSON object" in manifest["problems"]


def test_clean_import_prints_no_warning(tmp_path, capsys):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(compliant_estate_resources()))
    code, _, err = run(capsys, "import", str(path), "-o", str(tmp_path / "snap"))
    assert code == 0 and err == ""


# --- names and tag values from Azure: non-ASCII, very long, formulas ---------------------------

def test_non_ascii_long_and_formula_text_survives_to_reports(tmp_path, capsys):
    long_name = "vm-" + "\u00e9\u4e2d\U0001f600" * 300
    formula = "=HYPERLINK(\"http://evil\",\"x\")"
    resources = [vm(long_name, image=marketplace("latest"),
                    tags={"team": formula, "\u00fcber": "\u0000\u202e" + "x" * 10_000}),
                 vm("+cmd", image=marketplace("latest"), tags={"owner": "@SUM(A1)"})]
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(resources, ensure_ascii=False), encoding="utf-8")
    assert run(capsys, "import", str(raw), "-o", str(tmp_path / "snap"))[0] == 0
    code, _, err = run(capsys, "audit", str(tmp_path / "snap"), "-o", str(tmp_path / "out"))
    assert code == 0, err
    findings = json.loads((tmp_path / "out" / "findings.json").read_text(encoding="utf-8"))
    assert any(f["resource_name"] == long_name for f in findings["findings"])
    csv_text = (tmp_path / "out" / "findings.csv").read_text(encoding="utf-8-sig")
    assert long_name in csv_text
    for cell in csv_text.replace("\n", ",").split(","):
        assert not cell.strip('"').startswith(("=", "+", "@")), cell
    from openpyxl import load_workbook
    book = load_workbook(tmp_path / "out" / "image-audit.xlsx")
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)


# --- rule YAML and config files with mistakes --------------------------------------------------

@pytest.mark.parametrize("content, message", [
    ("rules: {PIN001: {enabled: [unclosed\n", "invalid YAML at line"),
    ("- just\n- a list\n", "image-audit.yaml"),
    ("rulez: {}\n", "rulez: unknown key (known: include_platform_managed, rules)"),
    ("rules: {NOPE999: {}}\n", "rules.NOPE999: unknown rule id"),
    ("rules: {PIN001: {severity: 7}}\n", "rules.PIN001.severity"),
    ("\tbad: indentation\n", "image-audit.yaml"),
    ("rules: !!python/object/apply:os.system ['echo pwned']\n", "image-audit.yaml"),
    # values that passed validation and crashed later: now named by key path
    ("rules: {RET001: {params: {keep_versions: .inf}}}\n",
     "image-audit.yaml: rules.RET001.params.keep_versions: expected a whole number, got inf"),
    ("rules: {RET001: {params: {min_age_days: .nan}}}\n",
     "image-audit.yaml: rules.RET001.params.min_age_days: expected a whole number, got nan"),
    ("rules: {TAG001: {params: {required_tags: [1, null]}}}\n",
     "image-audit.yaml: rules.TAG001.params.required_tags[0]: expected text, got 1"),
    ("rules: {TAG002: {params: {allowed_values: {environment: " + "[" * 5000 + "]" * 5000 + "}}}}\n",
     "image-audit.yaml: invalid YAML at line 1, column 116: nested deeper than 64 levels"),
    ("rules: {TAG002: {params: {allowed_values: {environment: " + "[" * 40 + "]" * 40 + "}}}}\n",
     "rules.TAG002.params.allowed_values.environment[0]: expected text, got [[[[...]]]]"),
    ("rules: {VER001: {params: {version_pattern: '(('}}}\n",
     "rules.VER001.params.version_pattern: expected a regular expression, got '(('"),
    # an alias bomb: 9^8 strings from a few hundred bytes
    ("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
     + "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n"
               for p, n in zip("abcdefgh", "bcdefghi", strict=True))
     + "rules: {PIN001: {severity: *i}}\n", "aliases expand to more than 10,000 nodes"),
    ("rules: &r {PIN001: {severity: [*r]}}\n", "alias *r refers to a node that contains it"),
    ('rules: {PIN001: {severity: "' + "\\e[2J" * 10**5 + '"}}\n',
     "rules.PIN001.severity: bad value '\\x1b[2J"),
])
def test_bad_config_file_one_line(tmp_path, capsys, content, message):
    config = tmp_path / "image-audit.yaml"
    config.write_text(content)
    code, _, err = run(capsys, "audit", "--sample", "--config", str(config),
                       "-o", str(tmp_path / "out"))
    assert code == 2
    assert_one_line_error(err, message)
    assert len(err) < 300 + len(str(config))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"\n# only a comment\n"])
def test_empty_config_means_defaults(tmp_path, capsys, content):
    config = tmp_path / "image-audit.yaml"
    config.write_bytes(content)
    code, _, _ = run(capsys, "audit", "--sample", "--config", str(config),
                     "-o", str(tmp_path / "out"))
    assert code == 0


def test_config_not_utf8_or_missing(tmp_path, capsys):
    config = tmp_path / "image-audit.yaml"
    config.write_bytes(b"rules:\n  PIN001: {title: \xff\xfe}\n")
    code, _, err = run(capsys, "audit", "--sample", "--config", str(config),
                       "-o", str(tmp_path / "out"))
    assert code == 2
    assert_one_line_error(err, "image-audit.yaml")
    code, _, err = run(capsys, "audit", "--sample", "--config", str(tmp_path / "nope.yaml"),
                       "-o", str(tmp_path / "out"))
    assert code == 2
    assert_one_line_error(err, "nope.yaml")


@pytest.mark.parametrize("edit, message", [
    ("[", "invalid YAML at line"),
    ("rules: 5\n", "x.yaml"),
    ("rules:\n  - 5\n", "x.yaml"),
    ("rules:\n  - {id: ABC001}\n", "ABC001"),
    ("", "x.yaml"),
])
def test_bad_rule_pack_files_named(tmp_path, edit, message):
    from auditor.errors import AuditError

    (tmp_path / "x.yaml").write_text(edit)
    with pytest.raises(AuditError) as info:
        load_rules(tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


# --- exemptions and baseline files -------------------------------------------------------------

@pytest.mark.parametrize("option, content, message", [
    ("--exemptions", b"\xff\xfe\x00not utf-8", "exemptions.yaml"),
    ("--exemptions", b"exemptions: 5\n", "exemptions.yaml"),
    ("--exemptions", b"exemptions:\n  - rule: PIN001\n    resource: x\n", "exemptions.yaml"),
    ("--exemptions", b"exemptions: [\n", "exemptions.yaml"),
    ("--exemptions", None, "exemptions.yaml"),
    ("--baseline", b"{", "baseline.json: not a findings.json"),
    ("--baseline", b"[]", "baseline.json: not a findings.json"),
    ("--baseline", b"{\"findings\": [{}]}", "baseline.json: findings[0] has no 'fingerprint'"),
    ("--baseline", None, "baseline.json"),
])
def test_bad_exemptions_or_baseline_file_one_line(tmp_path, capsys, option, content, message):
    name = "exemptions.yaml" if option == "--exemptions" else "baseline.json"
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, _, err = run(capsys, "audit", "--sample", option, str(path), "-o", str(tmp_path / "out"))
    assert code == 2
    assert_one_line_error(err, message)
    assert not (tmp_path / "out").exists()


def _every_path_nulled_or_dropped():
    from tests.test_properties import SHAPES, _paths

    for shape_index, shape in enumerate(SHAPES):
        for path in _paths(shape):
            if path in (("id",),):
                continue
            for action in ("null", "drop"):
                yield pytest.param(shape_index, path, action,
                                   id=f"{shape['type'].rsplit('/', 1)[-1]}-{action}-"
                                      + ".".join(map(str, path)))


@pytest.mark.parametrize("shape_index, path, action", list(_every_path_nulled_or_dropped()))
def test_null_or_missing_at_every_level_reads_without_problems(shape_index, path, action):
    """Each property the real shapes carry, set to null or removed: the resource is still
    read (or, for its type, skipped as that type), and a null is never called a problem."""
    import copy

    from tests.test_properties import SHAPES

    resource = copy.deepcopy(SHAPES[shape_index])
    parent = resource
    for step in path[:-1]:
        parent = parent[step]
    if action == "null":
        parent[path[-1]] = None
    else:
        del parent[path[-1]]
    result = normalize([resource])
    assert sum(result.read_types.values()) + sum(result.skipped_types.values()) == 1
    expected = []  # the absences that lose a row (a target region) are named
    if "targetRegions" in path and path[-1] in (0, "name"):
        expected = ["targetRegions[]: region without a name"]
    if str(resource.get("type") or "").lower().endswith("/versions") and (
            path[-1] in ("properties", "publishingProfile", "targetRegions")):
        expected = ["targetRegions: no target region"]
    assert len(result.problems) == len(expected), result.problems
    assert all(e in p for e, p in zip(expected, result.problems, strict=True))


def test_problems_counted_the_same_in_blocks_of_lines(tmp_path, monkeypatch):
    from auditor.synth import COLLECTED_AT, write_estate

    path = tmp_path / "estate.jsonl"
    write_estate(path, 200)
    lines = path.read_bytes().splitlines(keepends=True)
    for index in range(3, len(lines), 40):  # wrong-typed values spread over every block
        item = json.loads(lines[index])
        item["properties"] = ["not", "an", "object"]
        lines[index] = json.dumps(item).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    whole = import_files([path], collected_at=COLLECTED_AT)
    monkeypatch.setattr("auditor.importer.BLOCK_BYTES", 20_000)
    blocks = import_files([path], collected_at=COLLECTED_AT)
    assert whole.manifest["problem_count"] == len(range(3, len(lines), 40))
    assert blocks.manifest["problems"] == whole.manifest["problems"]
    assert blocks.table_hashes == whole.table_hashes


def test_random_yaml_with_anchors_never_crashes_config_loading(tmp_path_factory):
    """Random config documents whose parts are shared, so YAML writes them with anchors and
    aliases (sometimes exponentially many): loading and applying them is a run or one short
    line naming the file, never a traceback, a MemoryError or a flood."""
    import yaml
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from auditor.engine import apply_config, load_config
    from auditor.errors import AuditError

    pack = load_rules()
    folder = tmp_path_factory.mktemp("random-yaml")
    leaves = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(),
                       st.sampled_from(["team", "high", "prod", "TAG001", "\x1b[2J", "(("]))

    @st.composite
    def shared_documents(draw):
        parts = [draw(leaves)]
        for _ in range(draw(st.integers(1, 12))):
            picked = draw(st.lists(st.sampled_from(parts), min_size=1, max_size=9))
            parts.append(picked if draw(st.booleans()) else dict(zip(
                draw(st.lists(st.sampled_from(["required_tags", "severity", "params", "x",
                                               "keep_versions"]), min_size=len(picked),
                              max_size=len(picked), unique=True) if len(picked) <= 5 else
                     st.just([f"k{i}" for i in range(len(picked))])), picked, strict=True)))
        rule = draw(st.sampled_from(["TAG001", "RET001", "PIN001"]))
        return {"rules": {rule: {draw(st.sampled_from(["params", "severity"])): parts[-1]}}}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(shared_documents())
    def check(document):
        path = folder / "image-audit.yaml"
        path.write_text(yaml.safe_dump(document))
        try:
            apply_config(pack, load_config(path), where=str(path))
        except AuditError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            assert len(str(exc)) < 400 + len(str(path))

    check()
