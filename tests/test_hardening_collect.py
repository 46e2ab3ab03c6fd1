"""Collector faults beyond throttling and server errors: a token that expires mid-run, a page
of the wrong shape, a rejected $skipToken, missing or malformed quota headers, a slow server,
a management group that does not exist. Nothing lost, nothing duplicated, every gap reported."""

from __future__ import annotations

import time

import pytest
from azure.core.credentials import AccessToken

from auditor.collect import Scope, collect_resources
from tests.fake_arg import subscription_id
from tests.test_collect import VMQ, expected, ids, make_fake, of_query, paging, run

SUB1 = subscription_id(1)


class CountingCredential:
    """Signs in every time, counting how often it was asked (each ask is a new token)."""

    def __init__(self):
        self.calls = 0

    def get_token(self, *scopes, **kwargs):
        self.calls += 1
        return AccessToken(f"token-{self.calls}", int(time.time()) + 3600)


def no_duplicates(rows):
    keys = [r["id"].lower() for r in rows]
    return len(keys) == len(set(keys))


def test_a_401_after_some_pages_refreshes_the_token_once_and_goes_on():
    credential = CountingCredential()
    with make_fake() as fake:
        fake.add_fault("401", when=paging(VMQ))
        got = collect_resources(Scope(), credential=credential, endpoint=fake.endpoint,
                                page_size=5, backoff=0.01)
    assert ids(got.rows) == expected(fake) and no_duplicates(got.rows)
    assert got.gaps == []
    assert got.stats["token_refreshes"] == 1
    assert credential.calls >= 3  # the sign-in check, the first token, the refreshed one


def test_a_401_that_persists_after_the_refresh_is_a_reported_denial():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("401", times=1000, when=paging(VMQ))
        got = run(fake)
    assert [g["table"] for g in got.gaps] == ["virtual_machines"]
    gap = got.gaps[0]
    assert gap["status"] == "denied"
    assert "401" in gap["detail"] and "again after a token refresh" in gap["detail"]
    assert got.scope[0]["status"] == "denied"
    assert ids(got.rows, "microsoft.compute/virtualmachines") == []  # no partial table
    assert ids(got.rows, "microsoft.compute/galleries") != []


def test_a_page_of_the_wrong_shape_is_retried_then_a_gap():
    with make_fake() as fake:
        fake.add_fault("wrong-shape", when=paging(VMQ))
        got = run(fake)
    assert ids(got.rows) == expected(fake) and no_duplicates(got.rows)
    assert got.stats["retries"] == {"malformed": 1}
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("wrong-shape", times=1000, when=of_query("microsoft.compute/images'"))
        got = run(fake, max_retries=2)
    assert [g["table"] for g in got.gaps] == ["managed_images"]
    assert "not a list of rows" in got.gaps[0]["detail"]


def test_a_rejected_skiptoken_restarts_the_query_once_without_duplicates():
    with make_fake() as fake:
        fake.add_fault("400", when=paging(VMQ))
        got = run(fake)
    assert ids(got.rows) == expected(fake) and no_duplicates(got.rows)
    assert got.stats["restarted_queries"] == 1
    assert got.stats["rows"]["virtual_machines"] > len(ids(got.rows,
                                                          "microsoft.compute/virtualmachines"))
    assert got.gaps == []


def test_a_skiptoken_rejected_again_after_the_restart_is_a_gap():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("400", times=1000, when=paging(VMQ))
        got = run(fake)
    assert [g["table"] for g in got.gaps] == ["virtual_machines"]
    assert "400 BadRequest" in got.gaps[0]["detail"]
    assert "after restarting the query from its first page" in got.gaps[0]["detail"]
    assert got.stats["restarted_queries"] == 1
    assert ids(got.rows, "microsoft.compute/virtualmachines") == []


def test_a_400_on_a_first_page_is_not_restarted():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("400", times=1000, when=of_query("microsoft.compute/images'"))
        got = run(fake)
    assert [g["table"] for g in got.gaps] == ["managed_images"]
    assert got.stats["restarted_queries"] == 0


@pytest.mark.parametrize("values", [
    ("abc", "00:00:01"), ("5", "soon"), ("", ""), ("-3", "-00:00:01"), ("1e9", "99:99:99"),
    ("5", "00:00:00.5.5"),
])
def test_malformed_quota_headers_are_ignored_not_fatal(values):
    with make_fake(quota_values=values, quota=1000) as fake:
        got = run(fake)
    assert ids(got.rows) == expected(fake) and no_duplicates(got.rows)
    assert got.gaps == []


def test_missing_quota_headers_still_collect_everything():
    with make_fake(quota_headers=False, quota=1000) as fake:
        got = run(fake)
    assert ids(got.rows) == expected(fake) and got.gaps == []


def test_a_slow_answer_times_out_and_is_retried():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("slow", when=paging(VMQ), delay=5)
        started = time.monotonic()
        got = run(fake, timeout=1.0)
    assert ids(got.rows) == expected(fake) and no_duplicates(got.rows)
    # The slow answer is retried; on a loaded machine an ordinary answer may time out too.
    assert set(got.stats["retries"]) == {"connection"} and got.stats["retries"]["connection"] >= 1
    assert time.monotonic() - started < 5  # the 5 s answer was not waited for


def test_a_server_that_stays_slow_is_a_bounded_gap():
    with make_fake(subscriptions=1) as fake:
        fake.add_fault("slow", times=1000, when=of_query("microsoft.compute/images'"), delay=2)
        started = time.monotonic()
        got = run(fake, timeout=0.3, max_retries=2)
        elapsed = time.monotonic() - started
    assert [g["table"] for g in got.gaps] == ["managed_images"]
    assert "gave up after 3 attempts" in got.gaps[0]["detail"]
    assert elapsed < 10


def test_a_management_group_that_does_not_exist_is_reported():
    with make_fake(management_groups={"mg-prod": [SUB1]}) as fake:
        got = run(fake, Scope(management_groups=["mg-prod", "mg-typo"]))
    status = {s["subscription_id"]: (s["status"], s["detail"]) for s in got.scope}
    typo = "/providers/Microsoft.Management/managementGroups/mg-typo"
    assert status[SUB1][0] == "ok"
    assert status[typo][0] == "denied" and "no such group" in status[typo][1]
    assert any(g["scope"] == "managementGroups" and g["ids"] == ["mg-typo"] for g in got.gaps)
    assert {r["id"].split("/")[2] for r in got.rows} == {SUB1}


def test_only_a_management_group_that_does_not_exist_is_nothing_collected():
    from auditor.errors import AuditError

    with make_fake(management_groups={"mg-prod": [SUB1]}) as fake:
        with pytest.raises(AuditError, match="nothing could be collected: no subscription"):
            run(fake, Scope(management_groups=["mg-typo"]))
