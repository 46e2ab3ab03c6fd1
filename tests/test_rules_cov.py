"""COV: coverage of the scope."""

SUB = "99999999-0000-0000-0000-000000000001"


def test_cov001_triggers_on_denied_and_failed(run_rule):
    scope = [{"subscription_id": SUB, "display_name": "Contractors", "status": "denied",
              "detail": "AuthorizationFailed"},
             {"subscription_id": "/providers/Microsoft.Management/managementGroups/mg1",
              "display_name": "management group mg1", "status": "failed", "detail": "HTTP 500"},
             {"subscription_id": "11111111-0000-0000-0000-000000000002", "display_name": "Fine",
              "status": "ok", "detail": ""}]
    findings = run_rule("COV001", scope=scope)
    assert len(findings) == 2
    denied = findings[findings["resource_name"] == "Contractors"].iloc[0]
    assert denied["resource_type"] == "Microsoft.Resources/subscriptions"
    assert denied["fingerprint"] == f"COV001:/subscriptions/{SUB}"
    assert "denied (AuthorizationFailed)" in denied["message"]
    assert "managementgroups/mg1" in " ".join(findings["fingerprint"])


def test_cov001_pass_all_read(run_rule):
    assert run_rule("COV001", scope=[{"subscription_id": SUB, "display_name": "x",
                                      "status": "ok", "detail": ""}]).empty
