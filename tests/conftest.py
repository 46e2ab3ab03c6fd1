import pytest

from auditor.engine import evaluate, load_rules
from tests.builders import estate_of


@pytest.fixture(scope="session")
def rules():
    return {rule.id: rule for rule in load_rules()}


@pytest.fixture
def run_rule(rules):
    """Evaluate one rule (optionally with params overridden) over a tiny estate."""
    def run(rule_id, *resources, params=None, as_of=None, scope=None):
        rule = rules[rule_id]
        if params:
            rule = type(rule)(**{**rule.__dict__, "params": {**rule.params, **params},
                                 "enabled": True})
        else:
            rule = type(rule)(**{**rule.__dict__, "enabled": True})
        return evaluate(estate_of(*resources, as_of=as_of, scope=scope), [rule])
    return run
