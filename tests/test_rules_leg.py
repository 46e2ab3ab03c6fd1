"""LEG: unmanaged VHDs."""

from tests.builders import managed_image, rid, vm

BLOB = "https://legacy.blob.core.windows.net/vhds/gold.vhd"


def test_leg001_triggers_on_vhd_machine(run_rule):
    machine = vm("old", image={}, os_disk={"osType": "Linux", "image": {"uri": BLOB + "?sig=x"}})
    findings = run_rule("LEG001", machine)
    assert f"an unmanaged VHD {BLOB};" in findings.iloc[0]["message"]
    assert "sig=" not in findings.iloc[0]["evidence"]


def test_leg001_triggers_on_image_captured_from_blob(run_rule):
    findings = run_rule("LEG001", managed_image("cap-1.0.0", blob_uri=BLOB),
                        vm("a", image={"id": rid("images", "cap-1.0.0")}))
    assert "managed image cap-1.0.0 captured from blob" in findings.iloc[0]["message"]


def test_leg001_pass_managed(run_rule):
    assert run_rule("LEG001", managed_image("cap-1.0.0"), managed_image("unused", blob_uri=BLOB),
                    vm("a", image={"id": rid("images", "cap-1.0.0")}), vm("b")).empty
