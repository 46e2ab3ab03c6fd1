"""Finding messages read as sentences: no doubled words from a template ("gallery gallery
image"), no placeholder for a missing value inside a parenthesis ("(currently (none))")."""

import re

import pandas as pd

from auditor.engine import apply_config, evaluate, render
from auditor.estate import Estate
from auditor.importer import sample_config, sample_snapshot
from tests.builders import gallery_ref, marketplace, vm


def test_optional_field_shows_its_text_only_with_a_value():
    frame = pd.DataFrame({"name": ["a", "b", "c"], "exact": ["1.2.3", None, ""]})
    got = render("{name}{exact: (currently {})}.", frame, {})
    assert list(got) == ["a (currently 1.2.3).", "b.", "c."]


def test_pin_messages_without_placeholders(run_rule):
    pin001 = run_rule("PIN001", vm("a", image=marketplace("latest")),
                      vm("b", image=marketplace("latest", exactVersion="22.04.202410020")))
    messages = dict(zip(pin001["resource_name"], pin001["message"], strict=True))
    assert messages["a"].startswith(
        "a (stand-alone VM) deploys Marketplace image Canonical:0001-com-ubuntu-server-jammy:"
        "22_04-lts-gen2:latest; the version it got is not recorded")
    assert "22.04.202410020" in messages["b"]
    assert not any("(none)" in m or "(currently" in m for m in messages.values())
    pin002 = run_rule("PIN002", vm("g", image=gallery_ref("base", None)))
    assert pin002.iloc[0]["message"].startswith(
        "g (stand-alone VM) references gallery image /subscriptions/")


def test_no_sample_message_doubles_a_word_or_shows_none_in_parentheses(rules):
    ruleset = apply_config(list(rules.values()), sample_config())
    findings = evaluate(Estate(sample_snapshot()), [r for r in ruleset if r.enabled])
    messages = findings["message"].astype(str)
    assert not messages.str.contains("gallery gallery").any()
    assert not messages.str.contains(r"\(currently \(none\)\)").any()
    doubled = re.compile(r"\b(\w+) \1 image\b")
    assert not [m for m in messages if doubled.search(m)]


def test_version_names_keep_their_casing(run_rule):
    """Ids are lower-cased for joins; names shown are spelled as Azure spells them."""
    from tests.builders import definition, gallery, version

    resources = [gallery(), definition("Win2022-Base"),
                 version("1.0.0", definition_name="Win2022-Base", tags={},
                         end_of_life="2026-01-01T00:00:00Z"),
                 version("1.1.0", definition_name="Win2022-Base"),
                 vm("old", image=gallery_ref("Win2022-Base", "1.0.0"))]
    tag001 = run_rule("TAG001", *resources)
    assert "Win2022-Base/1.0.0" in set(tag001["resource_name"])
    stl001 = run_rule("STL001", *resources)
    assert "version Win2022-Base/1.0.0 (2026-01-01)" in stl001.iloc[0]["message"]
    stl003 = run_rule("STL003", *resources, params={"max_versions_behind": 1})
    assert "Win2022-Base/1.0.0" in stl003.iloc[0]["message"]
    rep001 = run_rule("REP001", *resources[:-1],
                      vm("far", image=gallery_ref("Win2022-Base", "1.0.0"), location="eastus"))
    assert "Win2022-Base/1.0.0" in rep001.iloc[0]["message"]
