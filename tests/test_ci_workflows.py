"""The ready CI files in docs/ci: linted offline with check-jsonschema's vendored schemas,
checked for what they promise (workload identity federation without a secret, nightly
schedule, baseline from the last successful run, SARIF to code scanning, JUnit to test
results, snapshot and reports kept), and their image-audit command lines run against the
sample estate, the collect step answered by the sample snapshot, with their exit codes."""

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from auditor.importer import sample_exemptions_path

CI = Path(__file__).parent.parent / "docs" / "ci"
GITHUB = CI / "github-workflow.yml"
PIPELINES = CI / "azure-pipelines.yml"
BIN = Path(sys.executable).parent

# `image-audit collect` answered by the sample estate, written where -o says; every other
# image-audit command runs as it is.
COLLECT_FROM_SAMPLE = f"""
image-audit() {{
  if [ "$1" = collect ]; then
    shift; out=""
    while [ $# -gt 0 ]; do case "$1" in -o|--output) out="$2"; shift;; esac; shift; done
    "{sys.executable}" -c "$WRITE_SAMPLE" "$out"
  else
    command image-audit "$@"
  fi
}}
"""
WRITE_SAMPLE = ("import sys; from auditor.importer import sample_snapshot; "
                "sample_snapshot().write(sys.argv[1])")


def _lint(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", *arguments],
                          capture_output=True, text=True, timeout=300)


def test_github_workflow_passes_the_vendored_schema():
    linted = _lint("--builtin-schema", "vendor.github-workflows", str(GITHUB))
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_azure_pipeline_passes_the_vendored_schema():
    # The vendored Azure Pipelines schema holds patterns the default ECMAScript engine rejects.
    linted = _lint("--builtin-schema", "vendor.azure-pipelines", "--data-transform",
                   "azure-pipelines", "--regex-variant", "python", str(PIPELINES))
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_lint_fails_a_broken_workflow(tmp_path):
    broken = yaml.safe_load(GITHUB.read_text())
    broken["jobs"]["audit"]["steps"][0]["uses"] = 42
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert _lint("--builtin-schema", "vendor.github-workflows",
                 str(tmp_path / "broken.yml")).returncode == 1


def _github():
    workflow = yaml.safe_load(GITHUB.read_text())
    return workflow, workflow["jobs"]["audit"]["steps"]


def _pipeline():
    pipeline = yaml.safe_load(PIPELINES.read_text())
    return pipeline, pipeline["steps"]


def test_github_workflow_signs_in_without_a_secret_and_publishes_every_output():
    workflow, steps = _github()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    assert workflow["permissions"]["id-token"] == "write"
    assert workflow["permissions"]["security-events"] == "write"
    assert workflow["permissions"]["actions"] == "read"
    login = next(s for s in steps if s.get("uses", "").startswith("azure/login@"))
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert "secrets." not in GITHUB.read_text()
    baseline = next(s for s in steps if "gh run download" in s.get("run", ""))
    assert "--status success" in baseline["run"]
    sarif = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert sarif["with"]["sarif_file"].endswith("findings.sarif") and "always()" in sarif["if"]
    junit = next(s for s in steps if s.get("uses", "").startswith("dorny/test-reporter@"))
    assert junit["with"]["path"].endswith("findings.junit.xml") and "always()" in junit["if"]
    kept = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert kept["with"]["name"] == "image-audit" and "always()" in kept["if"]
    assert "gh run download \"$run_id\" --name image-audit --dir baseline" in baseline["run"]


def test_azure_pipeline_signs_in_with_a_federated_service_connection_and_publishes():
    pipeline, steps = _pipeline()
    assert pipeline["schedules"][0]["cron"] and pipeline["trigger"] == "none"
    tasks = {s["task"].split("@")[0]: s for s in steps if "task" in s}
    assert tasks["AzureCLI"]["task"] == "AzureCLI@2"
    assert "image-audit collect" in tasks["AzureCLI"]["inputs"]["inlineScript"]
    assert "secret" not in PIPELINES.read_text().lower().replace("no secret", "")
    download = tasks["DownloadPipelineArtifact"]["inputs"]
    assert download["buildType"] == "specific"
    assert download["buildVersionToDownload"] == "latestFromBranch"
    assert download["definition"] == "$(System.DefinitionId)"
    assert "allowPartiallySucceededBuilds" not in download  # successful runs only
    published = tasks["PublishTestResults"]
    assert published["inputs"]["testResultsFormat"] == "JUnit"
    assert published["condition"] == "succeededOrFailed()"
    artifacts = {s["inputs"]["artifact"] for s in steps
                 if s.get("task", "").startswith("PublishPipelineArtifact")}
    assert artifacts == {"image-audit", "CodeAnalysisLogs"}


def _run(script: str, cwd: Path, env: dict, strict: bool) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env, "WRITE_SAMPLE": WRITE_SAMPLE,
                   "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    shell = ["bash", "--noprofile", "--norc"] + (["-eo", "pipefail"] if strict else [])
    return subprocess.run(shell + ["-c", COLLECT_FROM_SAMPLE + script], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=600)


def _audit_steps(steps, script_of):
    """The steps that run an image-audit command, in order."""
    found = [(step, script_of(step)) for step in steps]
    found = [(step, script) for step, script in found
             if script and re.search(r"^\s*image-audit \w", script, re.M)]
    commands = [re.search(r"^\s*image-audit (\w+)", s, re.M).group(1) for _, s in found]
    assert commands == ["collect", "audit"]
    return found


def run_github(checkout: Path, accept_current: bool) -> int:
    """The workflow's image-audit steps in a checkout; the last exit code."""
    _, steps = _github()
    values = {"MANAGEMENT_GROUP": "", "ACCEPT_CURRENT": "true" if accept_current else "false"}
    for step, script in _audit_steps(steps, lambda s: s.get("run")):
        env = step.get("env", {})
        assert set(env) <= set(values), f"no test value for {set(env) - set(values)}"
        done = _run(script, checkout, {k: values[k] for k in env}, strict=True)
        if done.returncode:
            return done.returncode
    return done.returncode


def _macros(text: str, variables: dict) -> str:
    """$(name) macros and ${{ parameters.x }} as Azure Pipelines expands them."""
    text = re.sub(r"\$\{\{\s*parameters\.(\w+)\s*\}\}", lambda m: variables[m.group(1)], text)
    for _ in range(5):
        text = re.sub(r"\$\(([\w.]+)\)", lambda m: variables[m.group(1)], text)
    return text


def run_pipelines(checkout: Path, accept_current: bool) -> int:
    """The pipeline's image-audit steps in a checkout; the last exit code."""
    pipeline, steps = _pipeline()
    variables = {**pipeline["variables"], "managementGroup": "",
                 "Build.ArtifactStagingDirectory": str(checkout / "staging"),
                 "Pipeline.Workspace": str(checkout / "workspace"),
                 # a boolean parameter is rendered as True or False
                 "acceptCurrentFindings": "True" if accept_current else "False"}
    script_of = lambda s: s.get("bash") or s.get("inputs", {}).get("inlineScript")  # noqa: E731
    for step, script in _audit_steps(steps, script_of):
        env = {k: _macros(str(v), variables) for k, v in step.get("env", {}).items()}
        done = _run(script, checkout, env, strict=False)
        if done.returncode:
            return done.returncode
    return done.returncode


SYSTEMS = {
    # name: (run the steps, the audit folder in the checkout, the baseline folder the
    # download step fills with the artifact that keeps the audit folder)
    "github": (run_github, Path("audit"), Path("baseline")),
    "pipelines": (run_pipelines, Path("staging/audit"), Path("workspace/baseline")),
}


@pytest.fixture(scope="module", params=sorted(SYSTEMS))
def system(request, tmp_path_factory):
    run, audit_dir, baseline_dir = SYSTEMS[request.param]
    tmp_path = tmp_path_factory.mktemp(request.param)
    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(sample_exemptions_path(), first / "exemptions.yaml")
    assert run(first, accept_current=True) == 0  # the run that records the baseline
    assert (first / audit_dir / "snapshot" / "manifest.json").is_file()

    def nightly(new_severity: str) -> tuple[int, Path, str]:
        """A night on which one open finding of `new_severity` is new (the baseline lacks
        it): the exit code, the reports and the new finding's fingerprint."""
        checkout = tmp_path / f"night{len(list(tmp_path.iterdir()))}"
        checkout.mkdir()
        shutil.copy(first / "exemptions.yaml", checkout / "exemptions.yaml")
        shutil.copytree(first / audit_dir, checkout / baseline_dir)
        path = checkout / baseline_dir / "reports" / "findings.json"
        document = json.loads(path.read_text())
        new = next(f for f in document["findings"]
                   if f["severity"] == new_severity and not f["exempted"])
        document["findings"].remove(new)
        path.write_text(json.dumps(document))
        return run(checkout, accept_current=False), checkout / audit_dir / "reports", \
            new["fingerprint"]
    return first / audit_dir / "reports", nightly


def test_the_first_run_records_every_report(system):
    reports, _ = system
    for name in ("findings.json", "findings.sarif", "findings.junit.xml", "summary.md",
                 "image-audit.xlsx"):
        assert (reports / name).is_file(), name
    findings = json.loads((reports / "findings.json").read_text())["findings"]
    assert any(f["severity"] == "high" and not f["exempted"] for f in findings)
    assert any(f["exempted"] for f in findings)  # the checkout's exemptions.yaml was read


def _testcase_of(junit: ET.Element, fingerprint: str) -> ET.Element:
    return next(case for case in junit.iter("testcase")
                if any(p.get("value") == fingerprint for p in case.iter("property")))


def test_a_new_high_finding_fails_the_nightly_run(system):
    _, nightly = system
    code, reports, new = nightly("high")
    assert code == 1
    junit = ET.parse(reports / "findings.junit.xml").getroot()
    failed = [case for case in junit.iter("testcase") if case.find("failure") is not None]
    assert failed == [_testcase_of(junit, new)]
    sarif = json.loads((reports / "findings.sarif").read_text())
    assert all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("azure/")
               for r in sarif["runs"][0]["results"])


def test_a_nightly_run_without_a_new_high_finding_passes(system):
    _, nightly = system
    code, reports, new = nightly("medium")
    assert code == 0  # existing high findings and a new medium one do not fail it
    document = json.loads((reports / "findings.json").read_text())
    assert document["baseline"]["new"] == 1
    junit = ET.parse(reports / "findings.junit.xml").getroot()
    assert junit.get("failures") == "0"
    assert _testcase_of(junit, new).find("skipped").get("message") == "below --fail-on high: medium"
