"""A few examples of tools/fuzz_outputs.py on every run: hostile estates in real export shapes
(noncharacters, lone surrogates, CR inside values, NUL, dot names, bidi controls, escape
sequences, formula prefixes, very long strings) imported, audited and written in every
format, each output read back and checked (the long pass is manual: see SECURITY.md)."""

from hypothesis import HealthCheck, given, settings

from tools.fuzz_outputs import case, run_one


def test_hostile_estates_give_valid_safe_outputs(tmp_path):
    outcomes = []

    @settings(max_examples=6, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case())
    def check(item):
        outcomes.append(run_one(item, tmp_path))
    check()
    assert len(outcomes) >= 6
