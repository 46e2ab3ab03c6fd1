"""Every query the collector sends uses only the tables, operators and functions Resource
Graph documents (auditor/data/resource_graph_language.yaml, with its sources), and the README
lists each query as it is sent, for an admin to paste into Resource Graph Explorer."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from auditor.collect import PLAN_QUERY, QUERIES, SUBSCRIPTIONS_QUERY

LANGUAGE = yaml.safe_load(files("auditor.data").joinpath("resource_graph_language.yaml")
                          .read_text(encoding="utf-8"))
SENT = {**QUERIES, "subscriptions": SUBSCRIPTIONS_QUERY, "plan": PLAN_QUERY}
_STRING = re.compile(r"'[^']*'")


def parts(query: str) -> tuple[str, list[str], str]:
    """The table, the tabular operators, and the text of the stages without string literals."""
    stages = [stage.strip() for stage in _STRING.sub("''", query).split("|")]
    return stages[0], [stage.split()[0] for stage in stages[1:]], " | ".join(stages[1:])


@pytest.mark.parametrize("name", sorted(SENT))
def test_query_uses_only_documented_language(name):
    table, operators, text = parts(SENT[name])
    assert table in LANGUAGE["tables"], table
    assert set(operators) <= set(LANGUAGE["tabular_operators"]), operators
    kinds = re.findall(r"type\s*=~\s*'([^']+)'", SENT[name])
    assert kinds and set(kinds) <= set(LANGUAGE["tables"][table]), kinds
    functions = set(re.findall(r"([A-Za-z_][\w-]*)\s*\(", text))
    assert functions <= set(LANGUAGE["functions"]), functions
    symbols = set(re.findall(r"!?contains|=~|==|!=|(?<![=!<>])=(?!=)|\band\b|\bor\b", text))
    assert symbols <= set(LANGUAGE["scalar_operators"]), symbols
    words = set(re.findall(r"\b[a-z][\w-]*\b", text)) - set(operators)
    words -= set(LANGUAGE["functions"]) | set(LANGUAGE["scalar_operators"])
    words -= set(LANGUAGE["keywords"])
    # what is left are column and property names, and names the query gives its columns
    assert not words & {"let", "invoke", "evaluate", "externaldata", "render", "serialize"}


def test_a_query_with_an_undocumented_operator_is_caught():
    _, operators, _ = parts("resources | where type =~ 'x' | serialize | project id")
    assert not set(operators) <= set(LANGUAGE["tabular_operators"])


def test_allow_list_names_its_sources_and_date():
    assert all(url.startswith("https://learn.microsoft.com/") for url in LANGUAGE["sources"].values())
    assert str(LANGUAGE["read"]) == "2026-12-06"


def test_readme_lists_every_query_as_sent():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for name, query in SENT.items():
        assert query in readme, name
