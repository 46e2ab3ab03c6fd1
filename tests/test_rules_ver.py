"""VER: version markers in managed image names."""

import pytest

from tests.builders import managed_image


@pytest.mark.parametrize("name", ["app-server-image-final-v2-really-final", "golden", "img-2024",
                                  "img-v"])
def test_ver001_triggers_without_version(run_rule, name):
    findings = run_rule("VER001", managed_image(name))
    assert list(findings["resource_name"]) == [name]


@pytest.mark.parametrize("name", ["img-web-v1", "img-web-1.2", "img-web-1.2.3", "img_web.V12",
                                  "3.2"])
def test_ver001_pass_versioned(run_rule, name):
    assert run_rule("VER001", managed_image(name)).empty


def test_ver001_configured_pattern(run_rule):
    assert run_rule("VER001", managed_image("web-2024-05-01"),
                    params={"version_pattern": r"\d{4}-\d{2}-\d{2}$"}).empty
    assert len(run_rule("VER001", managed_image("web-v1"),
                        params={"version_pattern": r"\d{4}-\d{2}-\d{2}$"})) == 1
