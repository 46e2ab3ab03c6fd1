"""REP009-REP011: delete locks on galleries, and the storage idle versions keep (kept apart
from test_rules_rep.py, which holds the replication-for-load rules)."""

from tests.builders import (
    SUB,
    azure_fixture,
    definition,
    gallery,
    gallery_ref,
    version,
    vm,
    vmss,
)

LOCKS = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/locks"


def lock_list(*locks):
    return {"id": LOCKS, "value": list(locks)}


def lock(scope, name="keep", level="CanNotDelete"):
    return {"id": f"{scope}/providers/Microsoft.Authorization/locks/{name}",
            "type": "Microsoft.Authorization/locks", "name": name,
            "properties": {"level": level}}


def test_rep009_triggers_on_a_gallery_without_a_delete_lock(run_rule):
    findings = run_rule("REP009", gallery(), gallery("other"),
                        azure_fixture("lock_list_subscription"))
    assert list(findings["resource_name"]) == ["other"]
    assert findings.iloc[0]["message"] == (
        "Gallery other has no CanNotDelete lock on itself, its resource group or its "
        "subscription (delete locks in the subscription: freeze, keep-gallery); one mistaken "
        "delete removes every image version in it.")


def test_rep009_an_empty_lock_list_read_is_a_finding(run_rule):
    assert len(run_rule("REP009", gallery(), lock_list())) == 1


def test_rep009_pass_with_locks_above_or_unknown_without_the_list(run_rule):
    group = f"/subscriptions/{SUB}/resourceGroups/rg-img"
    assert run_rule("REP009", gallery(), lock_list(lock(group))).empty
    assert run_rule("REP009", gallery(), lock_list(lock(f"/subscriptions/{SUB}",
                                                        level="ReadOnly"))).empty
    # No lock list read for the subscription: unknown, not a finding; a lone lock says
    # nothing of the others.
    assert run_rule("REP009", gallery()).empty
    assert run_rule("REP009", gallery(), lock(group, level="CanNotDelete") | {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg-x/providers/Microsoft.Authorization/"
              "locks/x"}).empty


THREE = (("West Europe", 2, "Standard_LRS"), ("East US", 1, "Standard_LRS"),
         ("North Europe", 1, "Standard_LRS"))
NEWER = version("1.1.0", regions=THREE)  # latest in every region 1.0.0 is in


def test_rep010_triggers_on_an_idle_old_version_in_three_regions(run_rule):
    findings = run_rule("REP010", gallery(), definition(), version("1.0.0", regions=THREE),
                        NEWER)
    assert findings.iloc[0]["message"] == (
        "base/1.0.0 is neither latest nor used by any machine but keeps 4 replica(s) in 3 "
        "region(s) (eastus, northeurope, westeurope); keeping one replica in westeurope is "
        "enough.")


def test_rep010_pass_when_latest_used_single_or_shared(run_rule):
    base = [gallery(), definition()]
    assert run_rule("REP010", *base, version("1.0.0", regions=THREE)).empty  # latest
    assert run_rule("REP010", *base, version("1.0.0", regions=THREE), NEWER,
                    vm("a", image=gallery_ref("base", "1.0.0"))).empty  # used
    # latest in East US, where 1.1.0 is not replicated
    assert run_rule("REP010", *base, version("1.0.0", regions=THREE), version("1.1.0")).empty
    assert run_rule("REP010", *base, version("1.0.0"), version("1.1.0")).empty  # one replica
    community = gallery(properties={"sharingProfile": {"permissions": "Community"}})
    assert run_rule("REP010", community, definition(), version("1.0.0", regions=THREE),
                    NEWER).empty  # others may deploy it


PREMIUM = (("West Europe", 2, "Premium_LRS"),)


def test_rep011_triggers_on_premium_replicas_of_an_old_version(run_rule):
    findings = run_rule("REP011", gallery(), definition(), version("1.0.0", regions=PREMIUM),
                        version("1.1.0"))
    assert findings.iloc[0]["message"] == (
        "base/1.0.0 keeps 2 Premium_LRS replica(s) in westeurope: not what `latest` gives "
        "there; Standard storage costs less.")
    assert findings.iloc[0]["region"] == "westeurope"


def test_rep011_pass_on_latest_premium_that_a_scale_set_scales_out_from(run_rule):
    scaler = vmss("s", image=gallery_ref("base", None), capacity=10)
    autoscale = azure_fixture("autoscale_setting_get")
    autoscale["properties"]["targetResourceUri"] = scaler["id"]
    assert run_rule("REP011", gallery(), definition(), version("1.0.0", regions=PREMIUM),
                    scaler, autoscale).empty
    assert len(run_rule("REP011", gallery(), definition(), version("1.0.0", regions=PREMIUM),
                        scaler)) == 1  # latest, but nothing scales out from it


def test_rep010_and_rep011_findings_carry_the_saving_of_their_fix(rules):
    from auditor.cost import estimate
    from auditor.engine import evaluate
    from auditor.prices import load_prices
    from tests.builders import estate_of

    estate = estate_of(gallery(), definition(), version("1.0.0", regions=THREE), NEWER,
                       definition("other"),
                       version("2.0.0", definition_name="other", regions=PREMIUM),
                       version("2.1.0", definition_name="other"))
    cost = estimate(estate, load_prices())
    findings = cost.with_finding_costs(evaluate(estate, [rules["REP010"], rules["REP011"]]))
    saved = dict(zip(findings["rule_id"] + " " + findings["message"].str.split(" ").str[0],
                     findings["monthly_cost"], strict=True))
    prices = cost.lines.groupby(["region", "storage_type"])["price_per_gb_month"].first()
    standard = prices[("westeurope", "Standard_LRS")]
    # REP010: 4 replicas of 30 GB, keeping one in West Europe saves the other three.
    one = {region: prices[(region, "Standard_LRS")] * 30 for region in
           ("westeurope", "eastus", "northeurope")}
    assert saved["REP010 base/1.0.0"] == round(one["eastus"] + one["northeurope"]
                                               + one["westeurope"], 6) > 0
    # REP011: 2 Premium replicas of 30 GB priced at Standard instead.
    premium = prices[("westeurope", "Premium_LRS")]
    assert saved["REP011 other/2.0.0"] == round(60 * (premium - standard), 6) > 0
    # The idle Premium version is also over-replicated: one saving per version, the larger.
    assert saved["REP010 other/2.0.0"] == round(30 * premium, 6)
    totals = cost.savings(findings).set_index("key")["monthly_cost"]
    # by rule: each rule's own fixes (fixes are no deletion: no `deletable now` share)
    assert totals["REP010"] == round(saved["REP010 base/1.0.0"] + saved["REP010 other/2.0.0"], 4)
    assert totals["REP011"] == round(saved["REP011 other/2.0.0"], 4)


def test_rep009_from_a_saved_lock_list_through_import(tmp_path, rules):
    """A saved lock list named by its request path says the subscription's locks were read;
    the same locks as a plain ARM list (no `id`) say nothing of the locks beside them."""
    import json

    from auditor.engine import evaluate
    from auditor.estate import Estate
    from auditor.importer import import_files

    galleries = tmp_path / "galleries.json"
    galleries.write_text(json.dumps({"value": [gallery(), gallery("other")]}))
    named = tmp_path / "locks.json"
    named.write_text(json.dumps(azure_fixture("lock_list_subscription")))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"value": azure_fixture("lock_list_subscription")["value"]}))
    found = evaluate(Estate(import_files([galleries, named])), [rules["REP009"]])
    assert list(found["resource_name"]) == ["other"]
    assert evaluate(Estate(import_files([galleries, plain])), [rules["REP009"]]).empty
