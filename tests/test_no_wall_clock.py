"""The default run asserts no wall-clock bound.

A timing that holds on a quiet machine fails on a loaded one (2 cores shared by many), and a loose
one catches nothing. Tests check a limit through its own mechanism instead (the error it raises, an
event, the server's log, CPU time); timings belong in ``benchmarks/``. This test reads every test
module (AST, no import) and fails on an ``assert`` in a test not marked ``slow`` that compares a
clock reading (``time.monotonic()``, ``time.perf_counter()``, ``time.time()``, or a variable holding
a difference of them) with a number. Waiting for an event until a deadline (``assert
time.monotonic() < deadline``, a liveness bound) is not a timing assertion and is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns", "time_ns"}


def _is_clock_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCKS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "time"
    )


def _has_clock(node: ast.AST, timed: set[str]) -> bool:
    return any(_is_clock_call(n) or (isinstance(n, ast.Name) and n.id in timed) for n in ast.walk(node))


def _has_number(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)
        for n in ast.walk(node)
    )


def _is_slow(decorators: list[ast.expr]) -> bool:
    return any("slow" in ast.unparse(d) for d in decorators)


def wall_clock_asserts(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_slow = any(
        isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
        and "slow" in ast.unparse(n.value)
        for n in tree.body
    )
    if module_slow:
        return []
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or _is_slow(fn.decorator_list):
            continue
        # names holding a clock reading or anything computed from one (``t0``, ``elapsed = end - t0``)
        timed: set[str] = set()
        while True:
            more = {
                t.id
                for n in ast.walk(fn)
                if isinstance(n, ast.Assign) and _has_clock(n.value, timed)
                for t in n.targets
                if isinstance(t, ast.Name)
            } - timed
            if not more:
                break
            timed |= more
        for n in ast.walk(fn):
            if not isinstance(n, ast.Assert):
                continue
            for cmp in (c for c in ast.walk(n.test) if isinstance(c, ast.Compare)):
                sides = [cmp.left, *cmp.comparators]
                clocked = [_has_clock(side, timed) for side in sides]
                against_number = any(clocked) and any(
                    _has_number(side) and not c for side, c in zip(sides, clocked)
                )
                # a bound computed from a reading (``now < t0 + 5``, ``now - t0 < limit``)
                computed = any(isinstance(side, ast.BinOp) and c for side, c in zip(sides, clocked))
                if against_number or computed:
                    found.append(f"{path.relative_to(TESTS.parent)}:{n.lineno}: {ast.unparse(n.test)[:120]}")
    return found


def test_the_scan_finds_a_wall_clock_assert(tmp_path: Path) -> None:
    sample = TESTS / "_wall_clock_sample.py"
    code = (
        "import time\n"
        "def test_a():\n    t = time.monotonic()\n    assert time.monotonic() - t < 5\n"
        "def test_b():\n    t0 = time.perf_counter()\n    elapsed = time.perf_counter() - t0\n    assert elapsed < 900\n"
        "def test_c():\n    deadline = time.monotonic() + 10\n    assert time.monotonic() < deadline\n"
        "@pytest.mark.slow\ndef test_d():\n    t = time.monotonic()\n    assert time.monotonic() - t < 5\n"
    )
    try:
        sample.write_text(code, encoding="utf-8")
        found = wall_clock_asserts(sample)
    finally:
        sample.unlink()
    assert [f.split(":")[1] for f in found] == ["4", "8"], found  # test_c waits for an event: allowed


def test_the_default_run_has_no_wall_clock_assertion() -> None:
    found = [f for p in sorted(TESTS.rglob("*.py")) for f in wall_clock_asserts(p)]
    assert not found, "wall-clock assertions in the default run:\n" + "\n".join(found)
