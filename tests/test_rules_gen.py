"""GEN: generalisation."""

from tests.builders import definition, gallery, gallery_ref, managed_image, rid, version, vm, vmss


def test_gen001_triggers_on_specialized_definition(run_rule):
    findings = run_rule("GEN001", definition(os_state="Specialized"))
    assert list(findings["resource_name"]) == ["base"]
    assert "OS state Specialized" in findings.iloc[0]["message"]


def test_gen001_pass_generalized(run_rule):
    assert run_rule("GEN001", definition(), managed_image(os_state="Specialized")).empty


def test_gen002_triggers_on_definition_used_by_two_machines(run_rule):
    findings = run_rule("GEN002", gallery(), definition(os_state="Specialized"), version(),
                        vm("a", image=gallery_ref()), vm("b", image=gallery_ref("base", None)))
    assert list(findings["resource_type"]) == ["Microsoft.Compute/galleries/images"]
    assert "used by 2 machines (a, b)" in findings.iloc[0]["message"]


def test_gen002_counts_scale_set_capacity(run_rule):
    image = managed_image("snap-1.0.0", os_state="Specialized")
    findings = run_rule("GEN002", image, vmss("s", image={"id": rid("images", "snap-1.0.0")},
                                              capacity=4))
    assert findings.iloc[0]["resource_type"] == "Microsoft.Compute/images"
    assert "used by 4 machines" in findings.iloc[0]["message"]


def test_gen002_pass_one_machine_or_generalized(run_rule):
    assert run_rule("GEN002", gallery(), definition(os_state="Specialized"), version(),
                    vm("a", image=gallery_ref()),
                    managed_image("gen-1.0.0"), vm("b", image={"id": rid("images", "gen-1.0.0")}),
                    vm("c", image={"id": rid("images", "gen-1.0.0")})).empty


def test_gen002_pass_scale_set_of_one(run_rule):
    image = managed_image("snap-1.0.0", os_state="Specialized")
    assert run_rule("GEN002", image, vmss("s", image={"id": rid("images", "snap-1.0.0")},
                                          capacity=1)).empty


def test_gen001_is_an_inventory_note(run_rule):
    findings = run_rule("GEN001", definition(os_state="Specialized"))
    assert findings.iloc[0]["severity"] == "info"


def test_gen003_triggers_on_specialized_managed_image(run_rule):
    findings = run_rule("GEN003", managed_image(os_state="specialized"))
    row = findings.iloc[0]
    assert row["severity"] == "info"
    assert row["message"] == ("Managed image img-1.0.0 records OS state specialized, which a "
                              "managed image cannot have; its metadata is inconsistent.")


def test_gen003_pass_generalized(run_rule):
    assert run_rule("GEN003", managed_image(), definition(os_state="Specialized")).empty
