"""The collector against a fake Resource Graph on loopback, through the real SDK."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from auditor.cli import main
from auditor.collect import (
    Scope,
    check_endpoint,
    collect,
    collect_resources,
    parse_timespan,
)
from auditor.engine import evaluate, load_rules
from auditor.errors import AuditError
from auditor.estate import Estate
from auditor.snapshot import Snapshot, build_snapshot
from tests.fake_arg import FakeArg, estate, subscription_id

SUB1, SUB2, SUB3 = (subscription_id(i) for i in (1, 2, 3))
VMS = "microsoft.compute/virtualmachines"
VMQ = f"'{VMS}'"  # as the query text quotes it


class FakeCredential:
    """A TokenCredential that always signs in."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("fake", int(time.time()) + 24 * 3600)


class NoCredential:
    def get_token(self, *scopes, **kwargs):
        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token.\nmore")


def make_fake(subscriptions=3, vms=20, **kwargs) -> FakeArg:
    rows, names = estate(subscriptions=subscriptions, vms=vms)
    kwargs.setdefault("window", 0.25)
    return FakeArg(rows, subscriptions=names, **kwargs)


def run(fake, scope=None, **kwargs):
    kwargs.setdefault("page_size", 5)
    kwargs.setdefault("backoff", 0.01)
    return collect_resources(scope or Scope(), credential=FakeCredential(), endpoint=fake.endpoint, **kwargs)


def ids(rows, kind=None):
    return sorted(r["id"].lower() for r in rows if kind is None or r["type"].lower() == kind)


def expected(fake):
    """The ids the collector should bring back: all but OS disks not made from a gallery."""
    wanted = [
        r
        for r in fake.resources
        if r["type"] != "microsoft.compute/disks"
        or "galleryImageReference" in r["properties"]["creationData"]
    ]
    return ids(wanted)


def of_query(fragment):
    return lambda body, path: fragment in body.get("query", "")


def paging(fragment):
    return lambda body, path: (
        fragment in body.get("query", "") and bool(body.get("options", {}).get("$skipToken"))
    )


def test_every_row_once_over_many_pages_with_the_real_protocol():
    with make_fake() as fake:
        got = run(fake)
    assert ids(got.rows) == expected(fake)
    assert got.stats["rows"]["virtual_machines"] == 60  # 12 pages of 5 rows
    assert got.stats["requests"] == got.stats["pages"] == len(fake.log)
    posts = [r for r in fake.log if r.method == "POST"]
    assert all(r.params["api-version"] == ["2024-04-01"] for r in posts)
    vm_pages = [r.body for r in posts if VMQ in r.body["query"] and "| project" in r.body["query"]]
    assert len(vm_pages) == 12
    firsts = [p for p in vm_pages if "$skipToken" not in p["options"]]
    rest = [p["options"] for p in vm_pages if "$skipToken" in p["options"]]
    # machines run as two chains, [sub1, sub2] and [sub3], of at most chain_pages (10) pages
    assert sorted(len(p["subscriptions"]) for p in firsts) == [1, 2]
    assert all(p["options"]["$top"] == 5 for p in firsts)
    assert all("$top" not in o for o in rest)
    assert all("| project id," in p["query"] for p in vm_pages)
    assert [s["status"] for s in got.scope] == ["ok"] * 3
    assert {s["display_name"] for s in got.scope} == {"sub-0001", "sub-0002", "sub-0003"}
    assert got.gaps == []


def test_rows_keep_the_arm_shape_and_disks_are_trimmed():
    with make_fake(subscriptions=1, vms=2) as fake:
        got = run(fake)
    vm = next(r for r in got.rows if r["type"] == VMS)
    assert {"id", "name", "type", "location", "subscriptionId", "resourceGroup", "tags"} <= set(vm)
    assert vm["properties"]["storageProfile"]["imageReference"]["id"].endswith("/versions/1.0.0")
    disk = next(r for r in got.rows if r["type"] == "microsoft.compute/disks")
    assert set(disk) == {"id", "type", "managedBy", "location", "properties"}
    assert set(disk["properties"]) == {"creationData"}
    assert "galleryImageReference" in disk["properties"]["creationData"]
    assert set(got.queries) >= {"subscriptions", "virtual_machines", "os_disks"}


def test_autoscale_settings_are_collected_trimmed_and_normalised():
    from tests.builders import azure_fixture

    rows, names = estate(subscriptions=1, vms=2)
    setting = azure_fixture("autoscale_setting_get")
    sub = next(iter(names))
    setting["id"] = setting["id"].replace("11111111-2222-3333-4444-555555555555", sub)
    setting.update(type="microsoft.insights/autoscalesettings", subscriptionId=sub,
                   resourceGroup="rg-img")  # as Resource Graph gives them
    with FakeArg(rows + [setting], subscriptions=names, window=0.25) as fake:
        got = run(fake)
    row = next(r for r in got.rows if r["type"] == "microsoft.insights/autoscalesettings")
    assert set(row["properties"]) == {"targetResourceUri", "enabled", "profiles"}
    assert row["properties"]["profiles"][1]["rules"][0]["scaleAction"]["type"] == \
        "PercentChangeCount"
    assert "autoscale_settings" in got.queries and got.stats["rows"]["autoscale_settings"] == 1
    table = build_snapshot(got.rows).tables["autoscale_settings"]
    record = table.iloc[0]
    assert record["target_id"] == setting["properties"]["targetResourceUri"].lower()
    assert (record["enabled"], record["min_capacity"], record["max_capacity"],
            record["default_capacity"], record["max_scale_out_step"], record["profiles"]) == \
        (True, 10, 200, 10, 40, 2)


def test_paces_by_the_quota_headers_and_never_meets_a_429():
    with make_fake(quota=5, window=0.3) as fake:
        started = time.monotonic()
        got = run(fake, page_size=10)
        elapsed = time.monotonic() - started
    assert fake.throttled == 0
    assert got.stats["throttled"] == 0 and got.stats["quota_waits"] > 0
    assert got.stats["requests"] == got.stats["pages"] == len(fake.log)
    windows = -(-len(fake.log) // 5)
    assert elapsed >= (windows - 1) * 0.3 * 0.9


def test_a_429_storm_is_survived_with_every_row_collected_once():
    with make_fake() as fake:
        fake.add_fault("429", times=4, retry_after="0.05")
        fake.add_fault("429-bare", times=3)
        fake.add_fault("429-bare", times=4, when=paging(VMQ))
        got = run(fake)
    assert ids(got.rows) == expected(fake)
    assert got.stats["throttled"] == 11
    assert got.stats["requests"] == got.stats["pages"] + 11 == len(fake.log)
    assert got.gaps == [] and {s["status"] for s in got.scope} == {"ok"}


def test_retry_after_is_honoured():
    with make_fake(subscriptions=1, vms=1) as fake:
        fake.add_fault("429", retry_after="1")
        started = time.monotonic()
        got = run(fake)
    assert time.monotonic() - started >= 1.0
    assert got.stats["throttled"] == 1


def test_faults_in_the_middle_of_paging_resume_from_the_same_page():
    with make_fake() as fake:
        fake.add_fault("500", times=2, when=paging(VMQ))
        fake.add_fault("drop", when=paging(VMQ))
        fake.add_fault("malformed", when=paging("microsoft.compute/disks"))
        got = run(fake)
        tokens = [
            r.body["options"]["$skipToken"]
            for r in fake.log
            if r.body and VMQ in r.body["query"] and r.body["options"].get("$skipToken")
        ]
    assert ids(got.rows) == expected(fake)
    assert got.stats["retries"] == {"server_error": 2, "connection": 1, "malformed": 1}
    assert got.stats["requests"] == got.stats["pages"] + 4 == len(fake.log)
    assert len(tokens) == len(set(tokens)) + 3  # the failed pages were asked for again
    assert got.gaps == []


def test_a_table_that_keeps_failing_is_a_gap_not_a_silent_skip():
    with make_fake() as fake:
        fake.add_fault("500", times=1000, when=of_query(VMQ))
        got = run(fake, max_retries=2)
    assert ids(got.rows, VMS) == []
    assert ids(got.rows, "microsoft.compute/galleries") != []
    assert {s["status"] for s in got.scope} == {"failed"}
    assert all("virtual_machines: 500" in s["detail"] for s in got.scope)
    assert [g["table"] for g in got.gaps] == ["virtual_machines"]
    assert got.gaps[0]["ids"] == [SUB1, SUB2, SUB3]


def test_a_truncated_result_is_a_gap():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("truncated", when=of_query("microsoft.compute/images'"))
        got = run(fake)
    assert got.gaps[0]["table"] == "managed_images"
    assert "truncated" in got.gaps[0]["detail"]
    assert got.scope[0]["status"] == "failed"


def test_a_forbidden_subscription_is_isolated_and_reported_denied():
    with make_fake(forbidden={SUB2}) as fake:
        got = run(fake, Scope(subscriptions=[SUB1, SUB2, SUB3.upper()]))
    status = {s["subscription_id"]: s["status"] for s in got.scope}
    assert status == {SUB1: "ok", SUB2: "denied", SUB3: "ok"}
    assert "403" in next(s["detail"] for s in got.scope if s["status"] == "denied")
    assert {r["subscriptionId"] for r in got.rows if "subscriptionId" in r} == {SUB1, SUB3}
    assert any(g["status"] == "denied" and g["ids"] == [SUB2] for g in got.gaps)


def test_an_invisible_subscription_is_reported_denied():
    with make_fake(hidden={SUB3}) as fake:
        got = run(fake, Scope(subscriptions=[SUB1, SUB3, "not-a-subscription"]))
    status = {s["subscription_id"]: s["status"] for s in got.scope}
    assert status == {SUB1: "ok", SUB3: "denied", "not-a-subscription": "denied"}
    assert {len(g["ids"]) for g in got.gaps} == {1} and len(got.gaps) == 2


def test_a_batch_denied_for_one_table_is_split_to_the_denied_subscription():
    denied = lambda body, path: VMQ in body["query"] and SUB2 in body.get("subscriptions", [])  # noqa: E731
    with make_fake() as fake:
        fake.add_fault("403", times=1000, when=denied)
        got = run(fake)
    status = {s["subscription_id"]: (s["status"], s["detail"]) for s in got.scope}
    assert status[SUB1] == status[SUB3] == ("ok", "")
    assert status[SUB2][0] == "denied" and status[SUB2][1].startswith("virtual_machines: 403")
    assert sorted({r["id"].split("/")[2] for r in got.rows if r["type"] == VMS}) == [SUB1, SUB3]


def test_batches_of_subscriptions():
    with make_fake(subscriptions=5, vms=2) as fake:
        got = run(fake, batch_size=2)
    galleries = "'microsoft.compute/galleries'"
    sizes = sorted(len(r.body["subscriptions"]) for r in fake.log if galleries in r.body["query"])
    assert sizes == [1, 2, 2]
    assert len(got.scope) == 5


def test_machines_run_as_several_chains_to_hide_latency():
    with make_fake(subscriptions=4, vms=20) as fake:
        got = run(fake, chain_pages=4)
        bodies = [r.body for r in fake.log]
    first_pages = [
        b["subscriptions"] for b in bodies if "$skipToken" not in b["options"] and VMQ in b["query"]
    ]
    plan, machines = first_pages[0], first_pages[1:]
    assert "summarize" in got.queries["plan"] and len(plan) == 4
    assert sorted(machines) == [[sub] for sub in sorted(plan)]
    assert got.stats["requests"] == got.stats["pages"]
    assert ids(got.rows) == expected(fake)


def test_management_group_scope():
    with make_fake(management_groups={"mg-prod": [SUB1, SUB3]}) as fake:
        got = run(fake, Scope(management_groups=["mg-prod"]))
        bodies = [r.body for r in fake.log]
    assert all(b["managementGroups"] == ["mg-prod"] for b in bodies)
    assert all("subscriptions" not in b for b in bodies)
    assert sorted(s["subscription_id"] for s in got.scope) == [SUB1, SUB3]
    assert {r["id"].split("/")[2] for r in got.rows} == {SUB1, SUB3}


def test_a_denied_management_group_beside_a_good_one():
    groups = {"mg-prod": [SUB1], "mg-secret": [SUB2]}
    with make_fake(management_groups=groups, forbidden_groups={"mg-secret"}) as fake:
        got = run(fake, Scope(management_groups=["mg-prod", "mg-secret"]))
    status = {s["subscription_id"]: s["status"] for s in got.scope}
    secret = "/providers/Microsoft.Management/managementGroups/mg-secret"
    assert status == {SUB1: "ok", secret: "denied"}


def test_nothing_collected_is_an_error():
    with make_fake(management_groups={"mg": [SUB1]}, forbidden_groups={"mg"}) as fake:
        with pytest.raises(AuditError, match="nothing could be collected: 403"):
            run(fake, Scope(management_groups=["mg"]))
    with make_fake() as fake:
        fake.add_fault("401", times=1000)
        with pytest.raises(AuditError, match="nothing could be collected: 401"):
            run(fake)


def test_the_same_estate_gives_the_same_rows_twice():
    with make_fake() as fake:
        first = run(fake, max_workers=1)
        fake.add_fault("500", times=3)
        second = run(fake, max_workers=8, page_size=3)
    assert json.dumps(first.rows) == json.dumps(second.rows)
    assert first.scope == second.scope


def test_credential_failure_is_one_line():
    with make_fake() as fake:
        with pytest.raises(AuditError) as error:
            collect_resources(Scope(), credential=NoCredential(), endpoint=fake.endpoint)
        assert fake.log == []
    message = str(error.value)
    assert "\n" not in message and "az login" in message and "managed identity" in message


def test_plain_http_only_to_loopback():
    assert check_endpoint("http://127.0.0.1:8080/") == ("http://127.0.0.1:8080", True)
    assert check_endpoint("https://management.azure.com") == ("https://management.azure.com", False)
    for bad in ("http://management.azure.com", "http://10.0.0.1:80", "ftp://x"):
        with pytest.raises(AuditError):
            check_endpoint(bad)


def test_only_posts_to_resource_graph_and_gets_to_arm():
    """Fails if the collector ever sends anything but a query POST or an ARM GET."""
    import re

    with make_fake() as fake:
        run(fake, deep=True)
        fake.add_fault("403", times=1000, when=of_query(VMQ))
        run(fake, deep=True)
        log = list(fake.log)
    shared, _ = sharing_fake()
    with shared:
        run(shared, deep=True)
        log += shared.log
    assert {r.method for r in log} == {"POST", "GET"}
    gets = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/"
                      r"galleries/[^/]+(/images/[^/]+/versions/[^/]+)?$"
                      r"|^/subscriptions/[^/]+/providers/Microsoft\.Compute/locations/[^/]+/"
                      r"publishers/[^/]+/artifacttypes/vmimage/offers/[^/]+/skus/[^/]+/versions/"
                      r"[^/]+$|^/subscriptions/[^/]+/providers/Microsoft\.Authorization/locks$")
    for r in log:
        if r.method == "POST":
            assert r.path == "/providers/Microsoft.ResourceGraph/resources"
        else:
            assert gets.match(r.path), r.path
    assert any(r.params.get("$expand") == ["sharingProfile/Groups"] for r in log)


def test_the_pipeline_refuses_writes():
    from azure.core.rest import HttpRequest

    from auditor.collect import _Collector, _Progress, _Settings

    with make_fake() as fake:
        collector = _Collector(FakeCredential(), fake.endpoint, True, _Settings(), _Progress(False))
        try:
            for method in ("PUT", "PATCH", "DELETE", "POST"):
                with pytest.raises(AuditError, match="read-only"):
                    collector.graph._send_request(
                        HttpRequest(method, f"{fake.endpoint}/subscriptions/x?api-version=1"),
                        enforce_https=False,
                    )
        finally:
            collector.close()
        assert fake.log == []


def test_deep_reads_replication_status():
    with make_fake(subscriptions=1, vms=1) as fake:
        version = next(r["id"] for r in fake.resources if r["type"].endswith("/versions"))
        fake.replication[version.lower()] = {
            "aggregatedState": "Failed",
            "summary": [
                {"region": "East US", "state": "Completed", "details": "", "progress": 100},
                {"region": "West Europe", "state": "Failed", "details": "disk", "progress": 40},
            ],
        }
        fake.add_fault("500", when=lambda body, path: path.endswith("/versions/1.0.1"))
        got = run(fake, deep=True)
        gets = [r for r in fake.log if r.method == "GET" and "/galleries/" in r.path]
    assert len(gets) == 6 + 1
    assert all(r.params["$expand"] == ["ReplicationStatus"] for r in gets)
    # --deep also lists the subscription's locks (its one Marketplace image, `latest` with no
    # exactVersion, is not read: its version is unknown)
    assert got.stats["arm_requests"] == 7 + 1 and got.replicated == 6
    replicated = next(r for r in got.rows if r["id"] == version)
    assert replicated["properties"]["replicationStatus"] == fake.replication[version.lower()]
    table = build_snapshot(got.rows).tables["version_replication"]
    assert len(table) == 12
    failed = table[table["state"] == "Failed"]
    assert failed.to_dict("records") == [
        {
            "version_id": version.lower(),
            "region": "westeurope",
            "state": "Failed",
            "progress": 40,
            "details": "disk",
        }
    ]


def test_timespans():
    assert parse_timespan("00:00:05") == 5
    assert parse_timespan("00:01:02.5000000") == 62.5
    assert parse_timespan("1.00:00:00") == 86400
    assert parse_timespan("soon") is None


# --- snapshots and the command line -----------------------------------------------------------


def test_collect_gives_a_snapshot_with_the_same_table_hashes_twice(tmp_path):
    with make_fake(forbidden={SUB2}) as fake:
        scope = Scope(subscriptions=[SUB1, SUB2, SUB3])
        first = collect(scope, credential=FakeCredential(), endpoint=fake.endpoint, page_size=5)
        fake.add_fault("500", times=2)
        fake.add_fault("429-bare", times=2)
        second = collect(
            scope, credential=FakeCredential(), endpoint=fake.endpoint, page_size=7, backoff=0.01
        )
    assert first.table_hashes == second.table_hashes
    machines = first.tables["machines"]
    assert len(machines) == 2 * 21
    gallery_vms = machines[(machines["image_kind"] == "gallery") & (machines["kind"] == "vm")]
    assert gallery_vms["running_version_id"].notna().all()
    path = first.write(tmp_path / "snap")
    loaded = Snapshot.read(path)
    scope_table = loaded.tables["scope"].set_index("subscription_id")
    assert scope_table.loc[SUB2, "status"] == "denied"
    manifest = loaded.manifest
    assert [g["ids"] for g in manifest["gaps"]] == [[SUB2]]
    assert manifest["queries"]["virtual_machines"].startswith("resources | where type =~")
    assert manifest["scope_requested"]["subscriptions"] == [SUB1, SUB2, SUB3]
    # 403s while the denied subscription was split out: [1,2,3], [2,3], [2]
    assert manifest["collection"]["requests"] == manifest["collection"]["pages"] + 3
    assert manifest["endpoint"] == fake.endpoint


def test_the_snapshot_is_built_while_later_pages_are_still_awaited(monkeypatch):
    """Blocks of committed machine rows are normalised while the collector still pages, so
    the build's CPU overlaps the waits for quota instead of following the last page."""
    import auditor.snapshot

    monkeypatch.setattr("auditor.spill.BLOCK_BYTES", 1)
    normalise = auditor.snapshot.normalize_lines
    seen_at = []  # requests the server had answered when each block was normalised

    with make_fake(subscriptions=4, vms=20, latency=0.02) as fake:
        def normalize_lines(data):
            seen_at.append(len(fake.log))
            return normalise(data)

        monkeypatch.setattr(auditor.snapshot, "normalize_lines", normalize_lines)
        snapshot = collect(Scope(), credential=FakeCredential(), endpoint=fake.endpoint,
                           page_size=5, batch_size=1, max_workers=2)
        total = len(fake.log)
    assert seen_at and min(seen_at) < total  # the first blocks came before the last page
    streamed = build_snapshot(list(run_again(fake.resources)))
    assert snapshot.tables["machines"]["id"].tolist() == streamed.tables["machines"]["id"].tolist()
    assert snapshot.tables["machines"]["running_version_id"].notna().sum() == 4 * 10


def run_again(rows):
    """The fake's rows as the collector keeps them (OS disks only where made from a gallery
    version)."""
    for row in rows:
        creation = (row.get("properties") or {}).get("creationData") or {}
        if row["type"] != "microsoft.compute/disks" or "galleryImageReference" in creation:
            yield row


def test_a_builder_that_fails_ends_the_collection_with_its_error(monkeypatch):
    def broken(data):
        raise MemoryError("no room for the block")

    monkeypatch.setattr("auditor.spill.BLOCK_BYTES", 1)
    monkeypatch.setattr("auditor.snapshot.normalize_lines", broken)
    with make_fake(subscriptions=3, vms=20) as fake:
        started = time.monotonic()
        with pytest.raises(MemoryError, match="no room"):
            collect(Scope(), credential=FakeCredential(), endpoint=fake.endpoint, page_size=5,
                    batch_size=1)
    assert time.monotonic() - started < 30  # the pages were never held back by the stream


def test_a_collection_that_fails_leaves_no_builder_waiting():
    with make_fake(subscriptions=2, vms=5) as fake:
        fake.add_fault("403", times=10**6)
        with pytest.raises(AuditError, match="nothing could be collected"):
            collect(Scope(), credential=FakeCredential(), endpoint=fake.endpoint, page_size=5)


def test_deep_collection_adds_version_replication(tmp_path):
    with make_fake(subscriptions=1, vms=2) as fake:
        snapshot = collect(Scope(), credential=FakeCredential(), endpoint=fake.endpoint, deep=True)
    loaded = Snapshot.read(snapshot.write(tmp_path / "snap"))
    table = loaded.tables["version_replication"]
    assert len(table) == 12 and set(table["region"]) == {"eastus", "westeurope"}
    assert loaded.manifest["deep"] is True


def test_a_denied_subscription_is_a_cov001_finding_when_the_rule_exists(rules):
    if "COV001" not in rules:
        pytest.skip("COV001 is not in the rule pack yet")
    with make_fake(forbidden={SUB2}) as fake:
        scope = Scope(subscriptions=[SUB1, SUB2])
        snapshot = collect(scope, credential=FakeCredential(), endpoint=fake.endpoint)
    findings = evaluate(Estate(snapshot), [rules["COV001"]])
    assert SUB2 in " ".join(findings["resource_id"].astype(str))


@pytest.fixture
def signed_in(monkeypatch):
    monkeypatch.setattr("auditor.collect._default_credential", lambda cloud: FakeCredential())


def cli(*args):
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code


def test_cli_collect_writes_a_snapshot(tmp_path, signed_in, capsys):
    with make_fake(subscriptions=2, vms=3) as fake:
        code = cli("collect", "--endpoint", fake.endpoint, "-o", str(tmp_path / "s"))
    err = capsys.readouterr().err
    assert code == 0
    assert err.startswith("collected ") and "machines 8" in err and " s\n" in err
    assert len(Snapshot.read(tmp_path / "s").tables["machines"]) == 8


def test_cli_audit_collect_fails_on_high(tmp_path, signed_in, capsys):
    with make_fake(subscriptions=1, vms=3) as fake:
        code = cli(
            "audit", "--collect", "--endpoint", fake.endpoint, "--subscription", SUB1,
            "--quiet", "-o", str(tmp_path / "reports"), "--format", "json", "--fail-on", "low",
        )  # fmt: skip
    out = capsys.readouterr()
    assert code == 1 and "PIN001" in out.out and not out.err.startswith("collected")
    assert len(list((tmp_path / "reports").glob("snapshot-*/manifest.json"))) == 1


def test_cli_credential_failure_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("auditor.collect._default_credential", lambda cloud: NoCredential())
    code = cli("collect", "--endpoint", "http://127.0.0.1:9", "-o", str(tmp_path / "s"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("image-audit: error: no Azure credential")
    assert not (tmp_path / "s").exists()


def test_cli_refuses_plain_http_to_a_remote_host(tmp_path, signed_in, capsys):
    code = cli("collect", "--endpoint", "http://example.com", "-o", str(tmp_path / "s"))
    assert code == 2 and "loopback" in capsys.readouterr().err


# --- who else may deploy a gallery's versions: direct-share groups and role assignments -----


def sharing_fake(**kwargs):
    """One subscription whose gallery is shared directly, with role assignments at its
    gallery and subscription scope and one elsewhere (a storage account: not collected)."""
    rows, names = estate(subscriptions=1, vms=2)
    gallery = next(r for r in rows if r["type"] == "microsoft.compute/galleries")
    gallery["properties"] = dict(gallery["properties"], sharingProfile={"permissions": "Groups"})
    sub = gallery["subscriptionId"]
    reader = (f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
              "acdd72a7-3385-48ef-bd42-f606fba81ae7")

    def assignment(scope, name):
        return {"id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}", "name": name,
                "type": "microsoft.authorization/roleassignments", "subscriptionId": sub,
                "resourceGroup": "rg-images",
                "properties": {"scope": scope, "principalId": f"p-{name}", "principalType": "Group",
                               "roleDefinitionId": reader, "createdOn": "2025-01-01T00:00:00Z"}}

    rows += [assignment(gallery["id"], "on-gallery"), assignment(f"/subscriptions/{sub}", "on-sub")]
    fake = FakeArg(rows, subscriptions=names, window=0.25, **kwargs)
    fake.sharing_groups[gallery["id"].lower()] = [
        {"type": "Subscriptions", "ids": ["99999999-0000-4000-8000-000000000099"]}]
    return fake, gallery["id"]


def test_role_assignments_are_collected_from_authorizationresources():
    fake, gallery = sharing_fake()
    with fake:
        got = run(fake)
    queries = [r.body["query"] for r in fake.log if r.method == "POST"]
    assert any(q.startswith("authorizationresources | where type =~ "
                            "'microsoft.authorization/roleassignments'") for q in queries)
    assert got.queries["role_assignments"].startswith("authorizationresources")
    table = build_snapshot(got.rows).tables["role_assignments"]
    assert sorted(table["principal_id"]) == ["p-on-gallery", "p-on-sub"]
    assert set(table["principal_type"]) == {"Group"}
    assert gallery.lower() in set(table["scope"])
    assert got.stats["rows"]["role_assignments"] == 2


def test_direct_share_groups_are_read_with_one_get_per_shared_gallery():
    fake, gallery = sharing_fake()
    with fake:
        got = run(fake)
        gets = [r for r in fake.log if r.method == "GET"]
    assert [r.path for r in gets] == [gallery]
    assert gets[0].params["$expand"] == ["sharingProfile/Groups"]
    assert got.stats["arm_requests"] == 1 and got.gaps == []
    snapshot = build_snapshot(got.rows, scope=got.scope)
    shares = snapshot.tables["gallery_shares"]
    assert list(shares["target"]) == ["99999999-0000-4000-8000-000000000099"]
    assert bool(snapshot.tables["galleries"]["sharing_groups_read"].iloc[0])


def test_a_refused_sharing_get_is_a_gap_and_the_gallery_is_held(rules):
    fake, gallery = sharing_fake()
    fake.add_fault("403", times=10, when=lambda body, path: path.lower() == gallery.lower())
    with fake:
        got = run(fake)
    assert [(g["table"], g["ids"], g["status"]) for g in got.gaps] == [
        ("gallery_sharing", [gallery], "denied")]
    assert got.scope[0]["status"] == "denied" and "gallery_sharing: 403" in got.scope[0]["detail"]
    snapshot = build_snapshot(got.rows, scope=got.scope)
    assert not snapshot.tables["galleries"]["sharing_groups_read"].iloc[0]
    estate_ = Estate(snapshot)
    assert len(evaluate(estate_, [rules["COV001"]])) == 1
    from auditor.checks.ret import shared_beyond_audit

    held = shared_beyond_audit(estate_, rules["RET001"].params)
    assert held[gallery.lower()] == (
        "shared directly to groups this audit could not read; readable through RBAC by Reader "
        "to Group p-on-gallery; its subscription was not fully read (COV001): who it is "
        "shared with is unknown")


def test_the_pipeline_gets_only_galleries_and_versions():
    from azure.core.rest import HttpRequest

    from auditor.collect import _Collector, _Progress, _Settings

    with make_fake() as fake:
        collector = _Collector(FakeCredential(), fake.endpoint, True, _Settings(), _Progress(False))
        try:
            for path in ("/subscriptions/x", "/subscriptions/x/resourceGroups/g/providers/"
                         "Microsoft.Compute/galleries/gal/images/i"):
                with pytest.raises(AuditError, match="read-only"):
                    collector.graph._send_request(
                        HttpRequest("GET", f"{fake.endpoint}{path}?api-version=1"),
                        enforce_https=False)
        finally:
            collector.close()
        assert fake.log == []


# --- sharing and purchase plans as the rules read them (SHR002, LIC002) ----------------------

def test_collected_share_groups_and_purchase_plans_reach_the_rules(rules):
    fake, gallery = sharing_fake()
    definition = next(r for r in fake.resources if r["type"].lower() == "microsoft.compute/galleries/images")
    definition["properties"] = dict(definition["properties"], purchasePlan={
        "name": "fg-vm-payg", "publisher": "fortinet", "product": "fortinet_fortigate-vm"})
    with fake:
        got = run(fake)
    snapshot = build_snapshot(got.rows, scope=got.scope)
    plans = snapshot.tables["image_definitions"].set_index("id")
    assert plans.loc[definition["id"].lower(), "purchase_plan_product"] == "fortinet_fortigate-vm"
    findings = evaluate(Estate(snapshot), [rules["SHR002"]])
    assert list(findings["message"]) == [
        f"Gallery {gallery.rsplit('/', 1)[1]} is shared directly to subscription "
        "99999999-0000-4000-8000-000000000099, outside the allow list."]


def test_a_refused_sharing_get_is_unknown_to_shr002(rules):
    fake, gallery = sharing_fake()
    fake.add_fault("403", times=10, when=lambda body, path: path.lower() == gallery.lower())
    with fake:
        got = run(fake)
    findings = evaluate(Estate(build_snapshot(got.rows, scope=got.scope)), [rules["SHR002"]])
    assert "its groups could not be read" in findings.iloc[0]["message"]


# --- --marketplace and --locks: the ARM GET phase ---------------------------------------------

MARKET_STATE = {"imageState": "ScheduledForDeprecation",
                "scheduledDeprecationTime": "2027-01-15T00:00:00+00:00",
                "alternativeOption": {"type": "Offer", "value": "Canonical:ubuntu-26_04-lts:server"}}


def market_path(sub, version, location="eastus"):
    return (f"/subscriptions/{sub}/providers/Microsoft.Compute/locations/{location}/publishers/"
            f"Canonical/artifacttypes/vmimage/offers/ubuntu-24_04-lts/skus/server/versions/{version}")


def marketplace_fake(subscriptions=2, **kwargs) -> FakeArg:
    """Marketplace VMs on two versions in every subscription: `latest` recording exactVersion
    24.04.1 (odd VMs) and 24.04.2 pinned (every third); the fake holds 24.04.1 only."""
    rows, names = estate(subscriptions=subscriptions, vms=6)
    for row in rows:
        ref = (row.get("properties") or {}).get("storageProfile", {}).get("imageReference", {})
        if ref.get("publisher"):
            number = int(row["name"][-2:])
            ref.update({"version": "24.04.2"} if number % 3 == 0 else {"exactVersion": "24.04.1"})
    kwargs.setdefault("window", 0.25)
    fake = FakeArg(rows, subscriptions=names, **kwargs)
    fake.marketplace[market_path(SUB1, "24.04.1").lower()] = MARKET_STATE
    return fake


def test_marketplace_reads_one_get_per_image_in_use_and_a_404_is_a_row(rules):
    with marketplace_fake() as fake:
        got = run(fake, marketplace=True)
        gets = sorted(r.path for r in fake.log if r.method == "GET")
    # Two distinct images in one location, asked through the first subscription using each.
    assert gets == [market_path(SUB1, "24.04.1"), market_path(SUB1, "24.04.2")]
    assert got.gaps == [] and got.stats["arm_requests"] == 2
    snapshot = build_snapshot(got.rows, scope=got.scope, collected_at=None)
    table = snapshot.tables["marketplace_versions"].set_index("version")
    assert table.loc["24.04.1", "image_state"] == "ScheduledForDeprecation"
    assert not table.loc["24.04.2", "found"]
    findings = evaluate(Estate(snapshot, as_of="2026-11-15"), [rules["DEP001"]])
    assert len(findings) == 4 + 2  # 4 latest VMs on 24.04.1, 2 pinned to the deleted 24.04.2
    assert set(findings["severity"]) == {"medium", "high"}


def test_marketplace_gets_are_paced_and_survive_429_and_5xx():
    with marketplace_fake(quota=3, window=0.3) as fake:
        fake.add_fault("429", when=lambda body, path: "/publishers/" in path, retry_after="0")
        fake.add_fault("500", when=lambda body, path: "/publishers/" in path)
        got = run(fake, marketplace=True)
        answered = [r for r in fake.log if r.method == "GET" and r.status == 200]
    assert got.gaps == [] and len(answered) == 1  # 24.04.2 is a 404, a row not a retry
    assert got.stats["throttled"] == 1 and got.stats["retries"].get("server_error") == 1
    assert got.stats["arm_requests"] == 4  # two images, one 429 and one 500 retried
    assert fake.throttled == 0  # paced by the quota headers: the quota itself never ran out


def test_a_denied_marketplace_get_is_a_gap_and_the_image_unknown():
    with marketplace_fake() as fake:
        fake.add_fault("403", times=10, when=lambda body, path: path.endswith("/24.04.1"))
        got = run(fake, marketplace=True)
    assert [(g["table"], g["status"]) for g in got.gaps] == [("marketplace_versions", "denied")]
    assert got.gaps[0]["ids"] == [market_path(SUB1, "24.04.1")]
    assert "marketplace_versions: 403" in next(r for r in got.scope
                                               if r["subscription_id"] == SUB1)["detail"]
    table = build_snapshot(got.rows).tables["marketplace_versions"]
    assert list(table["version"]) == ["24.04.2"]


def lock(sub, path, name, level="CanNotDelete"):
    return {"id": f"/subscriptions/{sub}{path}/providers/Microsoft.Authorization/locks/{name}",
            "type": "Microsoft.Authorization/locks", "name": name,
            "properties": {"level": level}}


def test_locks_are_read_per_subscription_across_pages_and_judged(rules):
    gallery1 = "/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/gal1"
    with make_fake(subscriptions=3, vms=1) as fake:
        fake.locks[SUB1] = [lock(SUB1, "/resourceGroups/rg-apps", "apps"),
                            lock(SUB1, "/resourceGroups/rg-x", "x", "ReadOnly"),
                            lock(SUB1, gallery1, "keep")]
        fake.locks[SUB2] = [lock(SUB2, "/resourceGroups/rg-apps", "apps")]
        fake.add_fault("403", times=10, when=lambda body, path: path.lower().startswith(
            f"/subscriptions/{SUB3}/providers/microsoft.authorization"))
        got = run(fake, locks=True)
        gets = [r for r in fake.log if r.method == "GET"]
    assert [r.params.get("$skiptoken") for r in gets if SUB1 in r.path] == [None, ["2"]]
    assert [(g["table"], g["ids"], g["status"]) for g in got.gaps] == [
        ("locks", [SUB3], "denied")]
    snapshot = build_snapshot(got.rows, scope=got.scope)
    assert sorted(snapshot.tables["lock_reads"]["subscription_id"]) == [SUB1, SUB2]
    assert len(snapshot.tables["locks"]) == 4
    findings = evaluate(Estate(snapshot), [rules["REP009"]])
    # gal1 locked; gal2 unlocked: a finding; gal3's locks unknown (denied): none.
    assert [name for name in findings["resource_name"]] == ["gal2"]


def test_without_the_options_no_marketplace_or_lock_get_is_sent():
    with marketplace_fake() as fake:
        run(fake)
        assert [r for r in fake.log if r.method == "GET"] == []


def test_uniform_instances_come_from_computeresources_and_stl007_judges_them():
    rows, names = estate(subscriptions=2, vms=4, instances=6)
    with FakeArg(rows, subscriptions=names, window=0.25) as fake:
        snapshot = collect(Scope(), credential=FakeCredential(), endpoint=fake.endpoint,
                           page_size=5, backoff=0.01)
        queries = [r.body["query"] for r in fake.log if r.body]
    instances = snapshot.tables["instances"]
    assert len(instances) == 12 and set(instances["scale_set_id"].str.endswith("/ss")) == {True}
    assert instances["latest_model_applied"].value_counts().to_dict() == {True: 8, False: 4}
    assert sum(q.startswith("computeresources") for q in queries) == 3  # pages of 5 rows
    assert snapshot.manifest["collection"]["rows"]["instances"] == 12
    assert snapshot.manifest["instances_collected"] is True
    findings = evaluate(Estate(snapshot), [r for r in load_rules() if r.id == "STL007"])
    assert len(findings) == 2
    assert findings.iloc[0]["message"].endswith("instances per version: 1.0.0: 4, 1.0.1: 2.")


def test_no_instances_leaves_the_instances_query_out_and_says_so():
    rows, names = estate(subscriptions=1, vms=2, instances=3)
    with FakeArg(rows, subscriptions=names, window=0.25) as fake:
        snapshot = collect(Scope(), credential=FakeCredential(), endpoint=fake.endpoint,
                           page_size=5, backoff=0.01, instances=False)
        queries = [r.body["query"] for r in fake.log if r.body]
    assert snapshot.tables["instances"].empty
    assert not any(q.startswith("computeresources") for q in queries)
    assert snapshot.manifest["instances_collected"] is False
    assert "instances" not in snapshot.manifest["queries"]


def test_instance_pages_are_not_in_resources_and_a_failed_chain_keeps_none(monkeypatch):
    rows, names = estate(subscriptions=1, vms=2, instances=7)
    with FakeArg(rows, subscriptions=names, window=0.25) as fake:
        fake.add_fault("500", times=50, when=lambda body, path: "computeresources" in str(body)
                       and "$skipToken" in str(body))
        got = run(fake, max_retries=1)
    assert [g["table"] for g in got.gaps] == ["instances"]
    assert ids(got.rows, "microsoft.compute/virtualmachinescalesets/virtualmachines") == []
    assert len(ids(got.rows, VMS)) == 2


def test_import_accepts_the_instance_rows_the_collector_reads(tmp_path):
    from auditor.importer import import_files

    source = json.loads((Path(__file__).parent / "fixtures" / "azure"
                         / "resource_graph_vmss_instances_model_view.json").read_text())
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"count": 4, "data": source["resources"], "skip_token": None,
                                "total_records": 4}))
    snapshot = import_files([path])
    instances = snapshot.tables["instances"]
    assert list(instances["exact_version"]) == ["1.10.0", "1.10.0", "1.9.0"]
    assert list(instances["power_state"]) == ["running", "running", "deallocated"]
