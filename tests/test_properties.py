"""Property-based tests: any resource built from the real shapes, with fields dropped,
re-cased or mistyped, either normalises or is reported as skipped with a reason; the engine
never raises on a valid snapshot, and its findings are deterministic."""

import copy

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.engine import evaluate, load_rules
from auditor.estate import Estate
from auditor.normalize import normalize
from auditor.snapshot import build_snapshot
from tests.builders import (
    AS_OF,
    azure_fixture,
    definition,
    disk,
    gallery,
    gallery_ref,
    managed_image,
    marketplace,
    version,
    vm,
    vmss,
)

SHAPES = [gallery(), definition(), version(), managed_image(), vm(),
          vm("g", image=gallery_ref("base", None)), vmss(image=marketplace("latest")),
          disk(vm(), gallery_ref()["id"])]
# Unmanaged OS disks (a VM's vhd and image URIs, a scale set's vhdContainers) and licenseType.
SHAPES += [vm("unmanaged-os", os_disk={"vhd": {"uri": "https://a.blob/v.vhd"}, "image": {"uri": "u"}})
           | {"properties": {"licenseType": "Windows_Server", "storageProfile": {
               "imageReference": marketplace(), "osDisk": {"vhd": {"uri": "https://a.blob/v.vhd"},
                                                           "image": {"uri": "https://a.blob/i.vhd"}}}}},
           vmss("vhds") | {"properties": {"virtualMachineProfile": {
               "licenseType": "RHEL_BYOS", "storageProfile": {
                   "imageReference": marketplace(), "osDisk": {"vhdContainers": ["https://a.blob/c"]}}}}}]
ODD_VALUES = st.one_of(st.none(), st.integers(-5, 10**12), st.floats(allow_nan=True),
                       st.text(max_size=30), st.booleans(), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
                       st.sampled_from(["=1+1", "latest", "East US", "Specialized",
                                        "9999-99-99T00:00:00Z", "1.2.3.4", "\u00e9\u00e8" * 300,
                                        "9999-12-31T00:00:00Z", "0001-01-01T00:00:00+05:00",
                                        "a\x00b\x1b", "../../x", "$(touch x)", "Premium_V9"]))
# Autoscale settings and replica sets beside a region's (API 2022-10-01, 2024-03-03 shapes).
SHAPES += [azure_fixture("autoscale_setting_get"),
           azure_fixture("gallery_image_version_2024_03_03_additional_replica_sets")]


def _paths(item, prefix=()):
    """Every key path of a nested resource (the places a mutation can hit)."""
    if isinstance(item, dict):
        for key, value in item.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(item, list):
        for index, value in enumerate(item):
            yield from _paths(value, prefix + (index,))


@st.composite
def mutated_resource(draw):
    resource = copy.deepcopy(draw(st.sampled_from(SHAPES)))
    paths = list(_paths(resource))
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(paths))
        parent = resource
        try:
            for step in path[:-1]:
                parent = parent[step]
            action = draw(st.sampled_from(["drop", "recase", "mistype"]))
            if action == "drop" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif action == "recase" and isinstance(parent.get(path[-1]) if isinstance(parent, dict)
                                                   else None, str):
                value = parent[path[-1]]
                parent[path[-1]] = draw(st.sampled_from([value.upper(), value.lower(),
                                                         value.swapcase()]))
            else:
                parent[path[-1]] = draw(ODD_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return resource


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_resource(), min_size=1, max_size=6))
def test_normaliser_never_raises_and_accounts_for_every_item(resources):
    result = normalize(resources)
    read, skipped = result.read_types, result.skipped_types
    assert sum(read.values()) + sum(skipped.values()) == len(resources)
    rows = sum(result.tables[t].num_rows for t in
               ("galleries", "image_definitions", "image_versions", "managed_images", "machines",
                "autoscale_settings"))
    assert rows == sum(n for t, n in read.items() if t != "microsoft.compute/disks")
    reported = {"(not an object)", "(no id)", "(duplicate id)"}
    assert sum(skipped[k] for k in reported) <= len(result.problems)


RULES = [r for r in load_rules() if r.enabled]


def _unique_ids(resources):
    """Input order must not matter when ids are unique (with duplicates, the first wins)."""
    seen, out = set(), []
    for item in resources:
        key = str(item.get("id")).lower() if isinstance(item, dict) else repr(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_resource(), min_size=1, max_size=8).map(_unique_ids))
def test_engine_never_raises_and_is_deterministic(resources):
    first = evaluate(Estate(build_snapshot(resources, collected_at=AS_OF)), RULES)
    same = evaluate(Estate(build_snapshot(resources, collected_at=AS_OF)), RULES)
    pd.testing.assert_frame_equal(first, same)
    reordered = evaluate(Estate(build_snapshot(resources[::-1], collected_at=AS_OF)), RULES)
    pd.testing.assert_frame_equal(first.reset_index(drop=True), reordered.reset_index(drop=True))
